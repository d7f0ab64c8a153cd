import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PGDR_PACKAGE } from '../package-root.js';

/** Throttles reads (--max-rate): resolves once `bytes` more may be read. */
export interface RateLimiter {
  take(bytes: number): Promise<void>;
}

/**
 * Reader threads for the files engine, one per worker (--jobs). Reading a file, checking its page checksums and
 * hashing it cost the main thread more CPU than feeding zstd and the store (the JS page checksum and sha256 run at
 * about 1 GB/s each), and one main thread served every worker: the work is now done beside it, one file per thread at
 * a time, and the bytes come back as transferred ArrayBuffers (no copy). The main thread keeps the order of the tar
 * stream, the --max-rate limiter every thread shares, and the upload. Memory stays bounded: a thread runs at most
 * CREDITS chunks ahead of what the main thread has written into zstd.
 *
 * restore --delta hashes the files of an existing data directory on the same threads.
 */
export interface ReadRequest {
  op: 'read';
  id: number;
  path: string;
  /** Bytes to read: the size the walk saw (a file that shrank meanwhile is padded with zeros). */
  size: number;
  /** Check page checksums, numbering blocks from this one (a relation file of a cluster with data checksums). */
  firstBlock?: number;
  /** Pages with an LSN at or after this one (decimal) are being written meanwhile and are not checked. */
  startLsn: string;
  /** Ask the main thread before each read (--max-rate). */
  limited: boolean;
  credits: number;
  /** The detail the files:after-first-chunk failpoint is matched against. */
  failpointDetail: string;
}

export type ReaderRequest =
  | ReadRequest
  | { op: 'credit'; id: number; credits: number }
  | { op: 'grant'; id: number }
  | { op: 'recycle'; buffer: ArrayBuffer }
  | { op: 'hash'; id: number; path: string };

export type ReaderReply =
  | { id: number; kind: 'vanished' }
  | { id: number; kind: 'error'; phase: 'open' | 'read'; message: string; code?: string }
  | { id: number; kind: 'take'; bytes: number }
  | { id: number; kind: 'chunk'; chunk: ArrayBuffer; length: number }
  | { id: number; kind: 'done'; sha256: string; badBlocks: number[] }
  | { id: number; kind: 'hashed'; sha256: string };

/** Chunks a thread may read ahead of the main thread. */
const CREDITS = 4;

export interface ReadOutcome {
  sha256: string;
  badBlocks: number[];
}

/** A file system error from a reader thread, with its errno code, as fs would have thrown it. */
export class ReaderError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly phase: 'open' | 'read',
  ) {
    super(message);
  }
}

export const VANISHED_FILE = Symbol('vanished');

export class PageReaderPool {
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private readonly waiting: ((worker: Worker) => void)[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly size: number) {}

  /**
   * Reads `request.size` bytes of a file in whole pages, checking and hashing them on a reader thread; `deliver`
   * gets the chunks in order, one at a time, and may call `release` once nothing refers to a chunk any more (its
   * buffer then goes back to the thread for a later read). VANISHED_FILE: the file was gone before it could be opened.
   */
  async read(
    request: Omit<ReadRequest, 'op' | 'id' | 'credits' | 'limited'>,
    limiter: RateLimiter | undefined,
    deliver: (chunk: Buffer, release: () => void) => Promise<void>,
  ): Promise<ReadOutcome | typeof VANISHED_FILE> {
    const worker = await this.acquire();
    const id = ++this.nextId;
    let healthy = true;
    try {
      return await new Promise<ReadOutcome | typeof VANISHED_FILE>((resolve, reject) => {
        let chain = Promise.resolve();
        let failed = false;
        const fail = (err: unknown): void => {
          if (failed) return;
          failed = true;
          healthy = false;
          cleanup();
          reject(err);
        };
        const onMessage = (message: ReaderReply): void => {
          if (message.id !== id || failed) return;
          switch (message.kind) {
            case 'take':
              limiter!.take(message.bytes).then(() => worker.postMessage({ op: 'grant', id } satisfies ReaderRequest), fail);
              return;
            case 'chunk': {
              const buffer = message.chunk;
              const chunk = Buffer.from(buffer, 0, message.length);
              const release = (): void => {
                try {
                  worker.postMessage({ op: 'recycle', buffer } satisfies ReaderRequest, [buffer]);
                } catch {
                  // the thread has stopped: the buffer is simply collected
                }
              };
              chain = chain.then(async () => {
                if (failed) return;
                await deliver(chunk, release);
                worker.postMessage({ op: 'credit', id, credits: 1 } satisfies ReaderRequest);
              });
              chain.catch(fail);
              return;
            }
            case 'done':
            case 'vanished':
            case 'error':
              chain.then(() => {
                if (failed) return;
                cleanup();
                if (message.kind === 'done') resolve({ sha256: message.sha256, badBlocks: message.badBlocks });
                else if (message.kind === 'vanished') resolve(VANISHED_FILE);
                else reject(new ReaderError(message.message, message.code, message.phase));
              }, fail);
              return;
            default:
              return;
          }
        };
        const cleanup = listen(worker, onMessage, fail);
        worker.postMessage({ op: 'read', id, ...request, limited: limiter !== undefined, credits: CREDITS } satisfies ReaderRequest);
      });
    } finally {
      this.release(worker, healthy);
    }
  }

  /** The sha256 of a whole file. */
  async hash(path: string): Promise<string> {
    const worker = await this.acquire();
    const id = ++this.nextId;
    let healthy = true;
    try {
      return await new Promise<string>((resolve, reject) => {
        const onMessage = (message: ReaderReply): void => {
          if (message.id !== id) return;
          cleanup();
          if (message.kind === 'hashed') resolve(message.sha256);
          else if (message.kind === 'error') reject(new ReaderError(message.message, message.code, message.phase));
        };
        const cleanup = listen(worker, onMessage, (err) => {
          healthy = false;
          cleanup();
          reject(err);
        });
        worker.postMessage({ op: 'hash', id, path } satisfies ReaderRequest);
      });
    } finally {
      this.release(worker, healthy);
    }
  }

  /** Stops every thread (a read still running is abandoned). */
  async close(): Promise<void> {
    this.closed = true;
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private async acquire(): Promise<Worker> {
    if (this.closed) throw new Error('the reader threads were stopped');
    const idle = this.idle.pop();
    if (idle !== undefined) {
      idle.ref();
      return idle;
    }
    if (this.all.size < this.size) {
      const worker = startWorker();
      this.all.add(worker);
      return worker;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(worker: Worker, healthy: boolean): void {
    if (!healthy || this.closed) {
      // A thread whose read failed half way may still be reading: it is not reused.
      this.all.delete(worker);
      void worker.terminate();
      if (this.closed) return;
      const next = this.waiting.shift();
      if (next !== undefined) {
        const fresh = startWorker();
        this.all.add(fresh);
        next(fresh);
      }
      return;
    }
    const next = this.waiting.shift();
    if (next !== undefined) {
      next(worker);
      return;
    }
    // An idle thread does not keep the process alive.
    worker.unref();
    this.idle.push(worker);
  }
}

/** One request's listeners on a thread: its replies, and its failure (an error, or the thread's exit). Returns their removal. */
function listen(worker: Worker, onMessage: (message: ReaderReply) => void, onFailure: (err: Error) => void): () => void {
  const onExit = (code: number): void => onFailure(new Error(`a files-engine reader thread exited (code ${code})`));
  worker.on('message', onMessage);
  worker.on('error', onFailure);
  worker.on('exit', onExit);
  return () => {
    worker.off('message', onMessage);
    worker.off('error', onFailure);
    worker.off('exit', onExit);
  };
}

/**
 * The thread runs tsc's compiled module under dist/ (this module may itself be a chunk of the bundled CLI in
 * dist/bundle/, scripts/bundle-cli.mjs, where no worker file sits beside it); under the tests (TypeScript sources run
 * by tsx or vitest) the .ts file, loaded through tsx.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) {
    const compiled =
      PGDR_PACKAGE === undefined
        ? new URL('./page-reader-worker.js', import.meta.url)
        : pathToFileURL(join(PGDR_PACKAGE.root, 'dist', 'postgres', 'page-reader-worker.js'));
    return new Worker(compiled);
  }
  const source = new URL('./page-reader-worker.ts', import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`, { eval: true });
}
