import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RepositoryError, UsageError, VerificationError } from '../errors.js';
import { startZstdTarUnpack } from '../process/unpack.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { BackupObject } from '../repo/manifest.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ChecksumStage } from '../stream/checksum.js';

export interface UnpackRequest {
  store: ObjectStore;
  layout: RepositoryLayout;
  backupId: string;
  object: BackupObject;
  directory: string;
  /** Only these members (a file-list restore takes some of an older backup's bundle); every member when absent. */
  members?: readonly string[];
  /** Appended to every error: what the failure left as it was. */
  untouched: string;
  /** Called with the stored bytes read so far. */
  onBytes?: (bytes: number) => void;
  /** The object is encrypted (its backup's manifest says so): decrypt with this age identity file. */
  identityFile?: string;
}

/**
 * Repository → sha256 (Node) → zstd -d → tar -x into `directory` (joined by a kernel pipe), overlapping in one
 * pipeline. The whole object passes the hash even when only some members are taken, so a damaged object fails here
 * whatever part of it the restore needed.
 */
export async function unpackObject(request: UnpackRequest): Promise<void> {
  const { store, backupId, object, untouched } = request;
  const key = await checkObjectSize(request);
  const checksum = new ChecksumStage();
  if (request.onBytes) checksum.on('data', () => request.onBytes!(checksum.bytes));
  const unpack = startZstdTarUnpack(request.directory, {
    ...(request.members === undefined ? {} : { members: request.members }),
    ...(request.identityFile === undefined ? {} : { identityFile: request.identityFile, what: `backup ${backupId} object ${object.name}` }),
  });
  const source = await store.get(key);
  let streamError: unknown;
  try {
    await pipeline(source, checksum, unpack.stdin);
  } catch (err) {
    streamError = err;
    unpack.kill();
  }
  const exit = await unpack.wait().then(
    () => undefined,
    (err: unknown) => err,
  );
  // zstd failing (a damaged frame) makes tar fail too, or closes the pipe under us: either way it is the stream
  // error that counts, so a failed exit is treated as one.
  streamError ??= exit;
  // age refusing the identity is the cause, whatever the pipe said when age stopped reading.
  if (exit instanceof UsageError) streamError = exit;
  const digestReady = streamError === undefined || checksum.writableFinished;
  if (digestReady && checksum.bytes === object.storedBytes && checksum.sha256 !== object.sha256) {
    throw checksumFailure(backupId, object, checksum.sha256, untouched);
  }
  const unsafe = unpack.unsafeMembers();
  if (unsafe.length > 0) {
    throw new VerificationError(
      `backup ${backupId} object ${object.name} holds ${unsafe.length} member name${unsafe.length === 1 ? '' : 's'} that could write outside the data directory: ` +
        `${unsafe.slice(0, 5).join(', ')}${unsafe.length > 5 ? `, and ${unsafe.length - 5} more` : ''}; nothing was written outside the staging directory and ${untouched}`,
      'PostgreSQL never writes such names: the object or its manifest was tampered with; restore another backup with --backup-id and investigate the repository',
      streamError,
    );
  }
  if (streamError instanceof UsageError) throw streamError;
  if (streamError !== undefined) {
    // A damaged object usually breaks zstd before the whole object went through the hash: hash it again on its
    // own to tell a damaged copy (checksum) from a transport or disk failure.
    await explainStreamFailure(request, key, streamError);
  }
}

/** The object's key, once the store has it at the size its manifest gives (a cheap check before any download). */
export async function checkObjectSize(request: Pick<UnpackRequest, 'store' | 'layout' | 'backupId' | 'object' | 'untouched'>): Promise<string> {
  const { store, layout, backupId, object, untouched } = request;
  const key = layout.backupObject(backupId, object.name);
  const head = await store.head(key);
  if (head === null) {
    throw new RepositoryError(`backup ${backupId} is missing its object ${object.name}; ${untouched}`, 'restore another backup with --backup-id, and run pgdr verify');
  }
  if (head.size !== object.storedBytes) {
    throw new VerificationError(
      `backup ${backupId} object ${object.name} has ${head.size} bytes, the manifest says ${object.storedBytes}; ${untouched}`,
      'the stored copy is damaged: restore another backup with --backup-id, and run pgdr verify',
    );
  }
  return key;
}

/**
 * After a stream failed part way: hash the object again on its own, so a damaged copy is reported as a checksum
 * failure (exit 5) rather than as whatever broke first (zstd, tar).
 */
export async function explainStreamFailure(request: Pick<UnpackRequest, 'store' | 'backupId' | 'object' | 'untouched'>, key: string, streamError: unknown): Promise<never> {
  const actual = await sha256OfObject(request.store, key).catch(() => undefined);
  if (actual !== undefined && actual !== request.object.sha256) throw checksumFailure(request.backupId, request.object, actual, request.untouched, streamError);
  throw streamError;
}

async function sha256OfObject(store: ObjectStore, key: string): Promise<string> {
  const checksum = new ChecksumStage();
  await pipeline(await store.get(key), checksum, new Writable({ write: (_chunk, _enc, done) => done() }));
  return checksum.sha256;
}

export function checksumFailure(backupId: string, object: BackupObject, actual: string, untouched: string, cause?: unknown): VerificationError {
  return new VerificationError(
    `backup ${backupId} object ${object.name} failed its checksum (sha256 ${actual.slice(0, 16)}…, manifest ${object.sha256.slice(0, 16)}…); ${untouched}`,
    'the stored copy is damaged: restore another backup with --backup-id, and run pgdr verify',
    cause,
  );
}
