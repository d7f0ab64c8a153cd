import { createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { NotFoundError, UsageError, VerificationError } from '../errors.js';
import { formatWalSegmentName, nextWalSegment, parseWalFileName, DEFAULT_WAL_SEGMENT_SIZE } from '../postgres/wal-file-name.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { AGE_MAGIC, decryptStage, isAgeEncrypted, missingIdentityError, peekHead } from '../stream/age.js';
import { zstdDecompressStage } from '../stream/zstd.js';
import { readWalSegmentHeader } from '../postgres/wal-header.js';
import { prefetchDir, prefetchTempPath, publishPrefetched, resetPrefetchDir, type PrefetchSource } from './prefetch-spool.js';

/** One repository `wal fetch` may find WAL in. */
export interface WalSource {
  store: ObjectStore;
  /** How messages name it: the repository's name, or its URL. */
  label: string;
}

export interface WalFetchOptions {
  /**
   * Where to look, in order (src/config/repositories.ts): a file one lacks, or cannot give because it fails, is
   * asked of the next. Only when none has it is the file "not in the archive".
   */
  sources: readonly WalSource[];
  layout: RepositoryLayout;
  /** Segments to download ahead, in parallel, for PostgreSQL's next requests (0: none). */
  lookahead: number;
  spoolDir: string;
  /** The repositories' URLs as configured: prefetched files are served only to requests for the same repositories. */
  repoUrl: string;
  log?: (message: string) => void;
  /** The restoring data directory (restore_command's working directory). */
  dataDirectory: string;
  /** age identity file for WAL stored encrypted (told by its first bytes, whatever the configured recipients). */
  identityFile?: string;
}

/**
 * restore_command. Exit 1 (NotFoundError) means "not in the archive", which PostgreSQL treats as the end of the
 * archive; every other failure must be a different code so recovery stops instead of ending early on a network
 * blip. The file appears at DEST only complete: written beside it, fsynced, then renamed. After a segment, the
 * next few are downloaded in parallel into the prefetch spool, which the entry's fast path serves without
 * loading pgdr or touching the repository (see src/wal/prefetch-spool.ts).
 */
export async function fetchWal(name: string, destination: string, options: WalFetchOptions): Promise<void> {
  const parsed = parseWalFileName(name);
  const final = resolve(destination);
  const found = await downloadFromSources(options, name, final, options.log);
  if (!found) {
    const where = options.sources.map((s) => s.store.location).join(', ');
    throw new NotFoundError(`${name} is not in ${where}`, 'normal at the end of the archive; otherwise check --repo and --cluster');
  }
  if (parsed.kind !== 'segment' || options.lookahead <= 0) return;

  const source: PrefetchSource = { repo: options.repoUrl, cluster: options.layout.cluster };
  const dir = prefetchDir(options.spoolDir, options.layout.cluster, options.dataDirectory);
  resetPrefetchDir(dir, source);
  const segmentSize = await segmentSizeOf(final);
  const upcoming: string[] = [];
  let next = parsed.segmentName;
  for (let i = 0; i < options.lookahead; i++) {
    next = nextWalSegment(next, segmentSize);
    upcoming.push(formatWalSegmentName(next));
  }
  // In order, a few at a time; the first missing one is the end of the archive, so nothing after it is fetched.
  let ended = false;
  const workers = Array.from({ length: Math.min(4, upcoming.length) }, async () => {
    while (!ended && upcoming.length > 0) {
      const file = upcoming.shift()!;
      const temp = prefetchTempPath(dir, file);
      try {
        if (await downloadFromSources(options, file, temp)) publishPrefetched(temp, file);
        else ended = true;
      } catch {
        // A failed look-ahead costs nothing: PostgreSQL asks for the file and the normal path reports the error.
        await unlink(temp).catch(() => undefined);
        ended = true;
      }
    }
  });
  await Promise.all(workers);
}

async function segmentSizeOf(path: string): Promise<number> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.alloc(40);
    await handle.read(header, 0, 40, 0);
    return readWalSegmentHeader(header)?.segmentSize || DEFAULT_WAL_SEGMENT_SIZE;
  } finally {
    await handle.close();
  }
}

/**
 * The first source that has the file gives it. A source that fails (down, refusing, a damaged copy) is named and the
 * next is asked; if none has the file and one failed, that failure is the answer, never "not in the archive": the
 * failing one may hold it, and recovery must not end early on a storage error.
 */
async function downloadFromSources(options: WalFetchOptions, name: string, final: string, log?: (message: string) => void): Promise<boolean> {
  let failure: unknown;
  for (const source of options.sources) {
    try {
      if (await downloadWalFile({ store: source.store, layout: options.layout, ...(options.identityFile === undefined ? {} : { identityFile: options.identityFile }) }, name, final)) return true;
    } catch (err) {
      failure ??= err;
      if (options.sources.length > 1) log?.(`${name}: repository ${source.label} failed (${(err as Error).message}); asking the next`);
    }
  }
  if (failure !== undefined) throw failure;
  return false;
}

/**
 * Downloads, decrypts when it is an age file, and decompresses one WAL file to `final` (via a temp file, fsynced);
 * false when it is not stored. Whether it is encrypted is read from its first bytes, so a repository where
 * encryption was turned on (or its keys rotated) part way serves every segment under its one key.
 */
async function downloadWalFile(options: { store: ObjectStore; layout: RepositoryLayout; identityFile?: string }, name: string, final: string): Promise<boolean> {
  const { store, layout } = options;
  let source: Readable;
  try {
    source = await store.get(layout.walObject(name));
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return false;
    throw err;
  }
  const temp = `${final}.pgdr-${process.pid}`;
  try {
    const { head, stream } = await peekHead(source, AGE_MAGIC.length);
    if (isAgeEncrypted(head)) {
      if (options.identityFile === undefined) {
        stream.destroy();
        throw missingIdentityError(`WAL file ${name}`);
      }
      await pipeline(stream, decryptStage(options.identityFile, `WAL file ${name}`), zstdDecompressStage(), createWriteStream(temp, { mode: 0o600 }));
    } else {
      await pipeline(stream, zstdDecompressStage(), createWriteStream(temp, { mode: 0o600 }));
    }
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, final);
    return true;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    if (err instanceof UsageError) throw err;
    if (err instanceof Error && /zstd|age -d/.test(err.message)) {
      throw new VerificationError(`stored WAL file ${name} does not decompress: ${err.message}`, 'the archive copy is damaged; run pgdr verify', err);
    }
    throw err;
  }
}
