import { RepositoryError, VerificationError } from '../errors.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { sha256Hex } from '../stream/checksum.js';
import { ageDecryptBuffer, missingIdentityError } from '../stream/age.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { parseFileList, type FileListEntry } from './file-list.js';
import type { RepositoryLayout } from './layout.js';
import type { BackupManifest } from './manifest.js';

/**
 * A files-engine backup's file list, read from the repository with its size and sha256 checked against the manifest,
 * and decrypted with `identityFile` when the backup is encrypted.
 */
export async function readFileList(store: ObjectStore, layout: RepositoryLayout, manifest: BackupManifest, identityFile?: string): Promise<FileListEntry[]> {
  const object = manifest.objects.find((o) => o.content === 'file-list');
  if (object === undefined) {
    throw new RepositoryError(`backup ${manifest.backupId} has no file list`, 'it is not a files-engine backup: restore it whole, or run pgdr verify');
  }
  const key = layout.backupObject(manifest.backupId, object.name);
  const stored = await store.getBuffer(key).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError) {
      throw new RepositoryError(`backup ${manifest.backupId} is missing its file list ${object.name}`, 'run pgdr verify; restore another backup with --backup-id');
    }
    throw err;
  });
  const actual = sha256Hex(stored);
  if (stored.length !== object.storedBytes || actual !== object.sha256) {
    throw new VerificationError(
      `backup ${manifest.backupId} file list ${object.name} failed its checksum (sha256 ${actual.slice(0, 16)}…, manifest ${object.sha256.slice(0, 16)}…)`,
      'the stored copy is damaged: run pgdr verify; restore another backup with --backup-id',
    );
  }
  return parseFileList((await zstdDecompressBuffer(await decodeStored(stored, manifest, identityFile, `backup ${manifest.backupId} file list`))).toString('utf8'), `backup ${manifest.backupId} file list`);
}

/** The zstd frames inside a backup's stored object: decrypted first when the manifest says it is encrypted. */
export async function decodeStored(stored: Buffer, manifest: Pick<BackupManifest, 'encryption'>, identityFile: string | undefined, what: string): Promise<Buffer> {
  if (manifest.encryption === undefined) return stored;
  if (identityFile === undefined) throw missingIdentityError(what);
  return ageDecryptBuffer(stored, identityFile, what);
}
