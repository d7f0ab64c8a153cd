import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { ServiceError } from '../../../errors.js';
import { failpoint } from '../../../process/failpoint.js';
import { BLOCK_SIZE, pageChecksum, pageIsNew, pageLsn, storedChecksum } from '../../../postgres/page.js';
import type { Bundle } from './bundle.js';
import type { RateLimiter } from './rate-limit.js';
import { relationFileInfo, type RelationFileInfo } from './data-directory.js';
import type { FoundEntry } from './walk.js';

/** Read size: a whole number of pages, so that a page never straddles two reads. */
const CHUNK = 128 * BLOCK_SIZE;
/** A run of changed blocks is stored as one tar member of at most this many blocks. */
const MAX_RUN_BLOCKS = 512;

export interface PageChecks {
  /** The cluster has data checksums. */
  enabled: boolean;
  /** Pages with an LSN at or after the backup's start are being written meanwhile: WAL replay rewrites them. */
  backupStartLsn: bigint;
  /** --max-rate, shared by every worker. */
  limiter: RateLimiter;
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
  const handle = await openForBackup(entry);
  if (handle === VANISHED) return VANISHED;
  try {
    await bundle.member({ name: entry.path, type: 'file', mode: entry.mode, size: entry.size, mtime: memberMtime(entry), uid, gid });
    const result = await readPages(entry, handle, checks, async (chunk) => bundle.write(chunk));
    await bundle.endMember(entry.size);
    return result;
  } finally {
    await handle.close();
  }
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
  const handle = await openForBackup(entry);
  if (handle === VANISHED) return VANISHED;
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
  try {
    let block = 0;
    const result = await readPages(entry, handle, checks, async (chunk) => {
      for (let offset = 0; offset < chunk.length; offset += BLOCK_SIZE, block++) {
        const page = chunk.subarray(offset, offset + BLOCK_SIZE);
        const changed = block >= referenceBlocks || pageIsNew(page) || pageLsn(page) >= sinceLsn;
        if (!changed) {
          await flush();
          continue;
        }
        if (run !== undefined && run.pages.length >= MAX_RUN_BLOCKS) await flush();
        run ??= { first: block, pages: [] };
        run.pages.push(page);
      }
    });
    await flush();
    return { ...result, runs };
  } finally {
    await handle.close();
  }
}

async function openForBackup(entry: FoundEntry): Promise<FileHandle | typeof VANISHED> {
  try {
    return await open(entry.absolute, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return VANISHED;
    throw new ServiceError(
      `cannot read ${entry.absolute}${code ? ` (${code})` : ''}`,
      code === 'EACCES' ? 'run pgdr as the PostgreSQL OS user (postgres), or use --engine basebackup' : 'check the data directory',
      err,
    );
  }
}

/**
 * Reads `entry.size` bytes in whole pages, hashing them and checking each page of a relation file as pg_basebackup
 * does: only pages older than the backup's start (a newer one is being written, and WAL replay rewrites it), and a
 * page that fails is read once more before it counts as damaged (the first read may have caught a write half done).
 */
async function readPages(entry: FoundEntry, handle: FileHandle, checks: PageChecks, deliver: (chunk: Buffer) => Promise<void>): Promise<CopiedFile> {
  const hash = createHash('sha256');
  const relation = checks.enabled ? relationFileInfo(entry.path, entry.tablespace !== undefined) : undefined;
  const badBlocks: number[] = [];
  let position = 0;
  while (position < entry.size) {
    const length = Math.min(CHUNK, entry.size - position);
    await checks.limiter.take(length);
    const chunk = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await handle.read(chunk, filled, length - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    // The file shrank while it was read (a relation truncated by VACUUM): zeros stand in, and replay truncates it.
    if (filled < length) chunk.fill(0, filled);
    if (relation !== undefined && length % BLOCK_SIZE === 0) await checkPages(entry, handle, chunk, position, relation, checks, badBlocks);
    hash.update(chunk);
    await deliver(chunk);
    position += length;
    if (position === CHUNK) await failpoint('files:after-first-chunk', entry.path);
  }
  return { size: entry.size, sha256: hash.digest('hex'), badBlocks };
}

async function checkPages(entry: FoundEntry, handle: FileHandle, chunk: Buffer, position: number, relation: RelationFileInfo, checks: PageChecks, bad: number[]): Promise<void> {
  for (let offset = 0; offset < chunk.length; offset += BLOCK_SIZE) {
    const page = chunk.subarray(offset, offset + BLOCK_SIZE);
    const blockInFile = (position + offset) / BLOCK_SIZE;
    if (pageVerifies(page, relation.firstBlock + blockInFile, checks.backupStartLsn)) continue;
    const again = Buffer.allocUnsafe(BLOCK_SIZE);
    const { bytesRead } = await handle.read(again, 0, BLOCK_SIZE, position + offset);
    if (bytesRead === BLOCK_SIZE && pageVerifies(again, relation.firstBlock + blockInFile, checks.backupStartLsn)) {
      again.copy(chunk, offset);
      continue;
    }
    bad.push(blockInFile);
  }
}

function pageVerifies(page: Buffer, blockNumber: number, backupStartLsn: bigint): boolean {
  if (pageIsNew(page)) return true;
  if (pageLsn(page) >= backupStartLsn) return true;
  return pageChecksum(page, blockNumber) === storedChecksum(page);
}
