import { RepositoryError } from '../errors.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from './concurrent-reads.js';
import { isBackupId, type RepositoryLayout } from './layout.js';
import { BackupManifestSchema, type BackupManifest } from './manifest.js';

/**
 * What the repository holds, read from the objects themselves. A backup is complete only when its manifest
 * exists and validates; objects under a backup id with no manifest are the remains of an interrupted (or
 * running) backup and are never offered to restore.
 */
export interface BackupCatalog {
  complete: BackupManifest[];
  incomplete: IncompleteBackup[];
  /** Manifests that exist but do not validate: reported, never restored from. */
  invalid: { backupId: string; problem: string }[];
}

export interface IncompleteBackup {
  backupId: string;
  objectCount: number;
  storedBytes: number;
  lastModified: Date;
}

export async function readBackupCatalog(store: ObjectStore, layout: RepositoryLayout): Promise<BackupCatalog> {
  const groups = new Map<string, { keys: string[]; bytes: number; lastModified: Date; hasManifest: boolean }>();
  const prefix = layout.backupsPrefix();
  for await (const info of store.list(prefix)) {
    const rest = info.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const backupId = rest.slice(0, slash);
    if (!isBackupId(backupId)) continue;
    const group = groups.get(backupId) ?? { keys: [], bytes: 0, lastModified: info.lastModified, hasManifest: false };
    group.keys.push(info.key);
    group.bytes += info.size;
    if (info.lastModified > group.lastModified) group.lastModified = info.lastModified;
    if (info.key === layout.backupManifest(backupId)) group.hasManifest = true;
    groups.set(backupId, group);
  }
  const catalog: BackupCatalog = { complete: [], incomplete: [], invalid: [] };
  const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const manifests = await mapConcurrently(
    ordered.filter(([, group]) => group.hasManifest).map(([backupId]) => backupId),
    MANIFEST_READS_IN_FLIGHT,
    async (backupId): Promise<BackupManifest | { backupId: string; problem: string }> => {
      try {
        return await readBackupManifest(store, layout, backupId);
      } catch (err) {
        if (err instanceof RepositoryError) return { backupId, problem: err.message };
        throw err;
      }
    },
  );
  for (const read of manifests) {
    if ('problem' in read) catalog.invalid.push(read);
    else catalog.complete.push(read);
  }
  for (const [backupId, group] of ordered) {
    if (!group.hasManifest) catalog.incomplete.push({ backupId, objectCount: group.keys.length, storedBytes: group.bytes, lastModified: group.lastModified });
  }
  return catalog;
}

export async function readBackupManifest(store: ObjectStore, layout: RepositoryLayout, backupId: string): Promise<BackupManifest> {
  const key = layout.backupManifest(backupId);
  let raw: Buffer;
  try {
    raw = await store.getBuffer(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new RepositoryError(`backup ${backupId} has no manifest in ${store.location}`, 'run `pgdr backup list` to see complete backups');
    }
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RepositoryError(`manifest of backup ${backupId} is not valid JSON`, 'the manifest is damaged; restore from another backup with --backup-id');
  }
  const parsed = BackupManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RepositoryError(
      `manifest of backup ${backupId} is invalid: ${issue?.path.join('.') || '(top)'}: ${issue?.message}`,
      'the manifest is damaged or from a newer pgdr; restore from another backup with --backup-id',
    );
  }
  if (parsed.data.backupId !== backupId || parsed.data.cluster !== layout.cluster) {
    throw new RepositoryError(`manifest under ${key} names backup ${parsed.data.backupId} of cluster ${parsed.data.cluster}`, 'the repository was edited by hand; move the manifest back where it belongs');
  }
  return parsed.data;
}
