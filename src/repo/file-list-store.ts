import { RepositoryError, VerificationError } from '../errors.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { sha256Hex } from '../stream/checksum.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { parseFileList, type FileListEntry } from './file-list.js';
import type { RepositoryLayout } from './layout.js';
import type { BackupManifest } from './manifest.js';

/** A files-engine backup's file list, read from the repository with its size and sha256 checked against the manifest. */
export async function readFileList(store: ObjectStore, layout: RepositoryLayout, manifest: BackupManifest): Promise<FileListEntry[]> {
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
  return parseFileList((await zstdDecompressBuffer(stored)).toString('utf8'), `backup ${manifest.backupId} file list`);
}
