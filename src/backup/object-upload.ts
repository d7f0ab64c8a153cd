import { spawn } from 'node:child_process';
import type { Readable, TransformCallback, Writable } from 'node:stream';
import { childEnv } from '../process/child-env.js';
import { killOnExit, watchChild } from '../process/child.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ByteCounterStage, ChecksumStage } from '../stream/checksum.js';
import { composeStreams } from '../stream/compose.js';
import { AGE_INSTALL_HINT, ageEncryptBuffer, compressEncryptStage, spawnCompressEncrypt } from '../stream/age.js';
import { compressArgs, ZSTD, ZSTD_HINT, zstdCompressBuffer, zstdCompressStage } from '../stream/zstd.js';

export interface UploadedObject {
  /** Bytes before compression. */
  bytes: number;
  /** Bytes stored, and their sha256. */
  storedBytes: number;
  sha256: string;
}

export interface CompressedUpload {
  store: ObjectStore;
  key: string;
  source: Readable;
  compress: { level: number; threads: number };
  /** age recipients the stored bytes are encrypted to, after zstd; empty or absent: stored as zstd frames. */
  encryptTo?: readonly string[];
  /** An upper estimate of the stored size: it sizes S3 parts for large objects. */
  expectedBytes?: number;
  /** Rejects when the backup must stop. */
  interrupted: Promise<never>;
  /** Told the first failure of any part, so the source can stop producing (a server's stream, a file reader). */
  onFailure?: (err: Error) => void;
}

/**
 * source → byte count → zstd (→ age) → sha256 → store.put, in bounded memory. With recipients, zstd and age are
 * joined by a kernel pipe and the sha256 covers the encrypted bytes as stored, so verify needs no key. Whichever part fails first is the cause:
 * the rest then fail only because the chain was torn down.
 */
export async function uploadCompressed(upload: CompressedUpload): Promise<UploadedObject> {
  const counter = new ByteCounterStage();
  const checksum = new ChecksumStage();
  const encode = upload.encryptTo && upload.encryptTo.length > 0 ? compressEncryptStage(upload.compress, upload.encryptTo) : zstdCompressStage(upload.compress);
  const chain = composeStreams(upload.source, counter, encode, checksum);
  let firstError: unknown;
  const fail = (err: unknown): void => {
    // A zstd or age stage fails in its own words already (src/process/child-chain.ts).
    firstError ??= err;
    upload.onFailure?.(err instanceof Error ? err : new Error(String(err)));
    if (!chain.destroyed) chain.destroy();
  };
  chain.on('error', fail);
  const uploaded = upload.store
    .put(upload.key, { kind: 'stream', open: () => chain, oneShot: true }, upload.expectedBytes === undefined ? {} : { expectedBytes: upload.expectedBytes })
    .catch(fail);
  const interrupted = upload.interrupted.catch(fail);
  await Promise.race([uploaded, interrupted]);
  if (firstError !== undefined) {
    await uploaded;
    throw firstError;
  }
  return { bytes: counter.bytes, storedBytes: checksum.bytes, sha256: checksum.sha256 };
}

/** An upload whose caller writes the raw bytes into zstd's stdin itself (startZstdUpload). */
export interface DirectUpload {
  /**
   * zstd's stdin. A write's callback runs once the pipe has taken the chunk, so its buffer may be reused then; a
   * write after a failure fails, and `result` says why.
   */
  readonly input: Writable;
  /** Settles once the object is stored (bytes: the stored side only; the writer counts what it wrote). */
  readonly result: Promise<Omit<UploadedObject, 'bytes'>>;
  /** Stops zstd and abandons the object: `result` rejects with `err` (ending zstd's stdin would store a short one). */
  abort(err: Error): void;
}

/**
 * zstd (→ age) → sha256 → store.put for a writer that feeds zstd's stdin directly: the files engine's bundles, which
 * write hundreds of MB a second and reuse their read buffers once zstd's pipe has them (a chain of Node streams in
 * front of zstd would hold each chunk for an unknown time, and fresh buffers for every chunk made V8 run a full
 * garbage collection every few tens of MB).
 */
export function startZstdUpload(upload: Omit<CompressedUpload, 'source'>): DirectUpload {
  // Encrypted: `zstd | age -e` joined by a kernel pipe, so the compressed bytes never pass through Node.
  const encryptTo = upload.encryptTo !== undefined && upload.encryptTo.length > 0 ? upload.encryptTo : undefined;
  const { zstd, age } =
    encryptTo === undefined
      ? { zstd: spawn(ZSTD, compressArgs(upload.compress), { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv('tool') }), age: undefined }
      : spawnCompressEncrypt(upload.compress, encryptTo);
  const forget = killOnExit(zstd, ...(age === undefined ? [] : [age]));
  const zstdWatch = watchChild(zstd, 'zstd', ZSTD_HINT);
  const ageWatch = age === undefined ? undefined : watchChild(age, 'age', AGE_INSTALL_HINT);
  // Both must exit 0; an age that died leaves zstd a broken pipe, and age's own word is the one to report.
  const exited = (async () => {
    const [zstdEnd, ageEnd] = await Promise.allSettled([zstdWatch.done, ageWatch?.done ?? Promise.resolve()]);
    if (ageEnd.status === 'rejected') throw ageEnd.reason;
    if (zstdEnd.status === 'rejected') throw zstdEnd.reason;
  })();
  exited.catch(() => undefined);
  // A zstd that exits early closes its stdin: its exit status says why, the writer's EPIPE does not.
  zstd.stdin!.on('error', () => undefined);
  const output = new ExitCheckedChecksum(exited);
  (age ?? zstd).stdout!.pipe(output);
  let firstError: unknown;
  const fail = (err: unknown): void => {
    firstError ??= err;
    upload.onFailure?.(err instanceof Error ? err : new Error(String(err)));
    if (!output.destroyed) output.destroy(err instanceof Error ? err : new Error(String(err)));
    for (const child of [zstd, age]) if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  const result = (async () => {
    ageWatch?.done.catch(fail);
    zstdWatch.done.catch((err: unknown) => {
      if (!(ageWatch !== undefined && zstdWatch.brokenPipe())) fail(err);
    });
    const uploaded = upload.store
      .put(upload.key, { kind: 'stream', open: () => output, oneShot: true }, upload.expectedBytes === undefined ? {} : { expectedBytes: upload.expectedBytes })
      .catch(fail);
    const interrupted = upload.interrupted.catch(fail);
    try {
      await Promise.race([uploaded, interrupted]);
      if (firstError !== undefined) {
        await uploaded;
        throw firstError;
      }
      return { storedBytes: output.bytes, sha256: output.sha256 };
    } finally {
      forget();
    }
  })();
  return { input: zstd.stdin!, result, abort: fail };
}

/** sha256 of zstd's output, whose end waits for zstd's exit status: a zstd that fails at the end stores nothing. */
class ExitCheckedChecksum extends ChecksumStage {
  constructor(private readonly exited: Promise<void>) {
    super();
  }

  override _flush(callback: TransformCallback): void {
    this.exited.then(
      () => super._flush(callback),
      (err: unknown) => callback(err as Error),
    );
  }
}

/** A small object's stored bytes: zstd frames, encrypted to the recipients when there are any. */
export async function encodeSmallObject(data: Buffer, level: number, encryptTo: readonly string[] | undefined): Promise<Buffer> {
  const compressed = await zstdCompressBuffer(data, { level, threads: 1 });
  return encryptTo && encryptTo.length > 0 ? ageEncryptBuffer(compressed, encryptTo) : compressed;
}
