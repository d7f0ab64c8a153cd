import { ServiceError } from '../../../errors.js';
import { BLOCK_SIZE, pageIsNew, pageLsnAtLeast, splitLsn } from '../../../postgres/page.js';
import type { Bundle } from './bundle.js';
import { ReaderError, VANISHED_FILE, type PageReaderPool } from '../../../postgres/page-reader.js';
import { unlimited, type RateLimiter } from './rate-limit.js';
import { relationFileInfo } from './data-directory.js';
import type { FoundEntry } from './walk.js';

/** A run of changed blocks is stored as one tar member of at most this many blocks. */
const MAX_RUN_BLOCKS = 512;

export interface PageChecks {
  /** The cluster has data checksums. */
  enabled: boolean;
  /** Pages with an LSN at or after the backup's start are being written meanwhile: WAL replay rewrites them. */
  backupStartLsn: bigint;
  /** --max-rate, shared by every worker. */
  limiter: RateLimiter;
  /** The threads that read, check and hash the files. */
  readers: PageReaderPool;
}

export interface CopiedFile {
  /** Bytes read (the size the walk saw: a file that shrank meanwhile is padded with zeros, as PostgreSQL does). */
  size: number;
  sha256: string;
  /** Blocks whose checksum failed twice. */
  badBlocks: number[];
  /** For a blocks copy: the runs stored, [first block, count]. */
  runs?: [number, number][];
}

/** The file vanished before it could be opened (a dropped relation): it is left out of the backup. */
export const VANISHED = Symbol('vanished');

function memberMtime(entry: FoundEntry): number {
  return Number(entry.mtimeNs / 1_000_000_000n);
}

/** The whole file as one tar member. */
export async function copyWholeFile(entry: FoundEntry, bundle: Bundle, checks: PageChecks, uid: number, gid: number): Promise<CopiedFile | typeof VANISHED> {
  // The header goes first only once the file is open: a file that vanished leaves no member behind.
  let started = false;
  const result = await readPages(entry, checks, async (chunk, release) => {
    if (!started) {
      started = true;
      await bundle.member({ name: entry.path, type: 'file', mode: entry.mode, size: entry.size, mtime: memberMtime(entry), uid, gid });
    }
    await bundle.write(chunk, release);
  });
  if (result === VANISHED) return VANISHED;
  if (!started) await bundle.member({ name: entry.path, type: 'file', mode: entry.mode, size: entry.size, mtime: memberMtime(entry), uid, gid });
  await bundle.endMember(entry.size);
  return result;
}

/**
 * Only the blocks changed since the reference: those with an LSN at or after `sinceLsn`, new (never written) pages,
 * and blocks past the reference's end. Each run of them is a tar member `<path>@<first block>`.
 */
export async function copyChangedBlocks(
  entry: FoundEntry,
  bundle: () => Bundle,
  checks: PageChecks,
  sinceLsn: bigint,
  referenceBlocks: number,
  uid: number,
  gid: number,
): Promise<CopiedFile | typeof VANISHED> {
  const runs: [number, number][] = [];
  let run: { first: number; pages: Buffer[] } | undefined;
  const flush = async (): Promise<void> => {
    if (run === undefined) return;
    const { first, pages } = run;
    run = undefined;
    const size = pages.length * BLOCK_SIZE;
    const target = bundle();
    await target.member({ name: `${entry.path}@${first}`, type: 'file', mode: entry.mode, size, mtime: memberMtime(entry), uid, gid });
    for (const page of pages) await target.write(page);
    await target.endMember(size);
    runs.push([first, pages.length]);
  };
  let block = 0;
  const since = splitLsn(sinceLsn);
  const result = await readPages(entry, checks, async (chunk, release) => {
    for (let offset = 0; offset < chunk.length; offset += BLOCK_SIZE, block++) {
      const page = chunk.subarray(offset, offset + BLOCK_SIZE);
      const changed = block >= referenceBlocks || pageIsNew(page) || pageLsnAtLeast(page, since);
      if (!changed) {
        await flush();
        continue;
      }
      if (run !== undefined && run.pages.length >= MAX_RUN_BLOCKS) await flush();
      run ??= { first: block, pages: [] };
      // A copy: the chunk goes back to its reader thread below (most pages of an incremental's read are not kept, and
      // a fresh 1 MiB buffer per chunk read made V8 collect garbage for a fifth of the main thread's time).
      run.pages.push(Buffer.from(page));
    }
    release();
  });
  if (result === VANISHED) return VANISHED;
  await flush();
  return { ...result, runs };
}

/**
 * Reads `entry.size` bytes in whole pages on a reader thread (page-reader.ts), which hashes them and checks each page
 * of a relation file as pg_basebackup does; `deliver` gets the chunks in order and releases each once nothing refers
 * to it (a blocks copy copies the pages it keeps).
 */
async function readPages(entry: FoundEntry, checks: PageChecks, deliver: (chunk: Buffer, release: () => void) => Promise<void>): Promise<CopiedFile | typeof VANISHED> {
  const relation = checks.enabled ? relationFileInfo(entry.path, entry.tablespace !== undefined) : undefined;
  let outcome;
  try {
    outcome = await checks.readers.read(
      {
        path: entry.absolute,
        size: entry.size,
        ...(relation === undefined ? {} : { firstBlock: relation.firstBlock }),
        startLsn: checks.backupStartLsn.toString(),
        failpointDetail: entry.path,
      },
      checks.limiter === unlimited ? undefined : checks.limiter,
      deliver,
    );
  } catch (err) {
    if (err instanceof ReaderError && err.phase === 'open') {
      throw new ServiceError(
        `cannot read ${entry.absolute}${err.code ? ` (${err.code})` : ''}`,
        err.code === 'EACCES' ? 'run pgdr as the PostgreSQL OS user (postgres), or use --engine basebackup' : 'check the data directory',
        err,
      );
    }
    throw err;
  }
  if (outcome === VANISHED_FILE) return VANISHED;
  return { size: entry.size, sha256: outcome.sha256, badBlocks: outcome.badBlocks };
}
