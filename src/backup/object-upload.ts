import type { Readable } from 'node:stream';
import type { ObjectStore } from '../storage/object-store.js';
import { ByteCounterStage, ChecksumStage } from '../stream/checksum.js';
import { composeStreams } from '../stream/compose.js';
import { asZstdFailure, zstdCompressStage } from '../stream/zstd.js';

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
  /** An upper estimate of the stored size: it sizes S3 parts for large objects. */
  expectedBytes?: number;
  /** Rejects when the backup must stop. */
  interrupted: Promise<never>;
  /** Told the first failure of any part, so the source can stop producing (a server's stream, a file reader). */
  onFailure?: (err: Error) => void;
}

/**
 * source → byte count → zstd → sha256 → store.put, in bounded memory. Whichever part fails first is the cause:
 * the rest then fail only because the chain was torn down.
 */
export async function uploadCompressed(upload: CompressedUpload): Promise<UploadedObject> {
  const counter = new ByteCounterStage();
  const checksum = new ChecksumStage();
  const chain = composeStreams(upload.source, counter, zstdCompressStage(upload.compress), checksum);
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
