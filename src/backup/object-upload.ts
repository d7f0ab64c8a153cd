import type { Readable } from 'node:stream';
import type { ObjectStore } from '../storage/object-store.js';
import { ByteCounterStage, ChecksumStage } from '../stream/checksum.js';
import { composeStreams } from '../stream/compose.js';
import { ageEncryptBuffer, compressEncryptStage } from '../stream/age.js';
import { asZstdFailure, zstdCompressBuffer, zstdCompressStage } from '../stream/zstd.js';

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
    firstError ??= asZstdFailure(err);
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

/** A small object's stored bytes: zstd frames, encrypted to the recipients when there are any. */
export async function encodeSmallObject(data: Buffer, level: number, encryptTo: readonly string[] | undefined): Promise<Buffer> {
  const compressed = await zstdCompressBuffer(data, { level, threads: 1 });
  return encryptTo && encryptTo.length > 0 ? ageEncryptBuffer(compressed, encryptTo) : compressed;
}
