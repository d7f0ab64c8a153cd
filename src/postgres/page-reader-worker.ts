import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { failpoint } from '../process/failpoint.js';
import { BLOCK_SIZE, pageChecksum, pageIsNew, pageLsnAtLeast, splitLsn, storedChecksum, type SplitLsn } from './page.js';
import type { ReaderReply, ReaderRequest, ReadRequest } from './page-reader.js';

/**
 * One files-engine reader thread (see page-reader.ts): it opens, reads, page-checks and hashes one file at a time and
 * hands the bytes to the main thread as transferred chunks, so that the main thread only moves them into zstd.
 */

/** Read size: a whole number of pages, so that a page never straddles two reads. */
export const CHUNK = 128 * BLOCK_SIZE;

const port = parentPort!;
/** Chunk buffers the main thread gave back once zstd's pipe had their bytes: reused, so reading allocates nothing. */
const free: ArrayBuffer[] = [];
const MAX_FREE = 8;
let current: { id: number; credits: number; wake: (() => void) | undefined; granted: (() => void) | undefined } | undefined;

const reply = (message: ReaderReply, transfer?: ArrayBuffer[]): void => port.postMessage(message, transfer);

port.on('message', (message: ReaderRequest) => {
  if (message.op === 'read') {
    current = { id: message.id, credits: message.credits, wake: undefined, granted: undefined };
    void readFile(message).catch((err: NodeJS.ErrnoException) => {
      reply({ id: message.id, kind: 'error', phase: 'read', message: err?.message ?? String(err), ...(err?.code ? { code: err.code } : {}) });
    });
  } else if (message.op === 'credit' && current?.id === message.id) {
    current.credits += message.credits;
    current.wake?.();
  } else if (message.op === 'grant' && current?.id === message.id) {
    current.granted?.();
  } else if (message.op === 'recycle') {
    if (free.length < MAX_FREE && message.buffer.byteLength === CHUNK) free.push(message.buffer);
  } else if (message.op === 'hash') {
    void hashFile(message.id, message.path);
  }
});

async function readFile(request: ReadRequest): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(request.path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') reply({ id: request.id, kind: 'vanished' });
    else reply({ id: request.id, kind: 'error', phase: 'open', message: (err as Error).message, ...(code ? { code } : {}) });
    return;
  }
  try {
    const state = current!;
    const hash = createHash('sha256');
    const badBlocks: number[] = [];
    const startLsn = splitLsn(BigInt(request.startLsn));
    let position = 0;
    while (position < request.size) {
      const length = Math.min(CHUNK, request.size - position);
      if (request.limited) {
        // --max-rate is shared by every worker: the main thread hands out the time slots.
        await new Promise<void>((resolve) => {
          state.granted = resolve;
          reply({ id: request.id, kind: 'take', bytes: length });
        });
      }
      const recycled = free.pop();
      const chunk = (recycled === undefined ? Buffer.allocUnsafeSlow(CHUNK) : Buffer.from(recycled)).subarray(0, length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(chunk, filled, length - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      // The file shrank while it was read (a relation truncated by VACUUM): zeros stand in, and replay truncates it.
      if (filled < length) chunk.fill(0, filled);
      if (request.firstBlock !== undefined && length % BLOCK_SIZE === 0) await checkPages(handle, chunk, position, request.firstBlock, startLsn, badBlocks);
      hash.update(chunk);
      while (state.credits === 0) await new Promise<void>((resolve) => (state.wake = resolve));
      state.credits--;
      reply({ id: request.id, kind: 'chunk', chunk: chunk.buffer as ArrayBuffer, length }, [chunk.buffer as ArrayBuffer]);
      position += length;
      if (position === CHUNK) await failpoint('files:after-first-chunk', request.failpointDetail);
    }
    reply({ id: request.id, kind: 'done', sha256: hash.digest('hex'), badBlocks });
  } finally {
    await handle.close();
  }
}

/**
 * pg_basebackup's rule: only pages older than the backup's start are checked (a newer one is being written, and WAL
 * replay rewrites it), and a page that fails is read once more before it counts as damaged (the first read may have
 * caught a write half done).
 */
async function checkPages(handle: FileHandle, chunk: Buffer, position: number, firstBlock: number, startLsn: SplitLsn, bad: number[]): Promise<void> {
  for (let offset = 0; offset < chunk.length; offset += BLOCK_SIZE) {
    const page = chunk.subarray(offset, offset + BLOCK_SIZE);
    const blockInFile = (position + offset) / BLOCK_SIZE;
    if (pageVerifies(page, firstBlock + blockInFile, startLsn)) continue;
    const again = Buffer.allocUnsafe(BLOCK_SIZE);
    const { bytesRead } = await handle.read(again, 0, BLOCK_SIZE, position + offset);
    if (bytesRead === BLOCK_SIZE && pageVerifies(again, firstBlock + blockInFile, startLsn)) {
      again.copy(chunk, offset);
      continue;
    }
    bad.push(blockInFile);
  }
}

function pageVerifies(page: Buffer, blockNumber: number, backupStartLsn: SplitLsn): boolean {
  if (pageIsNew(page)) return true;
  if (pageLsnAtLeast(page, backupStartLsn)) return true;
  return pageChecksum(page, blockNumber) === storedChecksum(page);
}

/** sha256 of a whole file (restore --delta's check of what a data directory already holds). */
async function hashFile(id: number, path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    const hash = createHash('sha256');
    // Two buffers: the next read runs while this one is hashed (reading and hashing take about as long each).
    const buffers = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
    const file = handle;
    const readAt = (buffer: Buffer, at: number) => file.read(buffer, 0, CHUNK, at).then(({ bytesRead }) => ({ buffer, at, bytesRead }));
    let pending = readAt(buffers[0]!, 0);
    for (let turn = 1; ; turn++) {
      const { buffer, at, bytesRead } = await pending;
      if (bytesRead === 0) break;
      // The next read starts where this one ended (a short read is not taken for the end: only 0 bytes is).
      pending = readAt(buffers[turn % 2]!, at + bytesRead);
      hash.update(bytesRead === CHUNK ? buffer : buffer.subarray(0, bytesRead));
    }
    reply({ id, kind: 'hashed', sha256: hash.digest('hex') });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply({ id, kind: 'error', phase: 'read', message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}) });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
