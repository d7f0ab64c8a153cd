import { parseWalFileName } from '../postgres/wal-file-name.js';
import { isSnapshotId } from '../etcd/manifest.js';
import { isBackupId, type RepositoryLayout } from '../repo/layout.js';

/**
 * What each object under a cluster's prefix is, decided from its key and from what the manifests name: pure, so
 * the rules for "foreign" are unit-tested. Anything pgdr did not put there (a stray upload, a file copied in by
 * hand, an object a manifest stopped naming) is foreign: it is reported, never deleted by verify.
 */
export type ObjectRole =
  | 'cluster-info'
  | 'backup-manifest'
  | 'backup-object'
  /** Under a backup id whose manifest does not validate: reported as invalid-manifest, not as foreign. */
  | 'invalid-backup-object'
  /** Under a backup id with no manifest: a running or interrupted backup. */
  | 'incomplete-backup-object'
  | 'wal'
  | 'etcd-manifest'
  | 'etcd-object'
  | 'invalid-etcd-object'
  | 'incomplete-etcd-object'
  | 'drill-report'
  | 'lock'
  /** <cluster>/restore-points/<name>.json: a restore point pgdr created. */
  | 'restore-point'
  /** <cluster>/state/store-probe.json: what the store does with conditional writes. */
  | 'store-probe'
  /** The scratch key of a probe that was interrupted before it removed it. */
  | 'probe-scratch'
  | 'foreign';

export type ManifestState = { state: 'complete'; objectNames: ReadonlySet<string> } | { state: 'invalid' } | { state: 'incomplete' };

export interface RepositoryManifests {
  backups: ReadonlyMap<string, ManifestState>;
  etcdSnapshots: ReadonlyMap<string, ManifestState>;
}

const DRILL_REPORT = /^\d{8}T\d{6}Z\.json$/;
const LOCK = /^[A-Za-z0-9._-]+\.json$/;
const PROBE_SCRATCH = /^probe-[0-9a-f-]{36}$/;

export function classifyObject(key: string, layout: RepositoryLayout, manifests: RepositoryManifests): ObjectRole {
  if (!key.startsWith(layout.root)) return 'foreign';
  if (key === layout.clusterInfo()) return 'cluster-info';

  const backup = splitUnder(key, layout.backupsPrefix());
  if (backup) {
    if (!isBackupId(backup.id)) return 'foreign';
    return roleInSet(backup.name, manifests.backups.get(backup.id), 'backup');
  }

  const wal = tail(key, layout.walPrefix());
  if (wal !== undefined) {
    const match = /^([0-9A-F]{8})\/(.+)\.zst$/.exec(wal);
    if (!match) return 'foreign';
    try {
      parseWalFileName(match[2]!);
    } catch {
      return 'foreign';
    }
    // The timeline directory must be the file's own: fetch looks nowhere else, so a misplaced file is useless.
    return match[2]!.slice(0, 8) === match[1] ? 'wal' : 'foreign';
  }

  const etcd = splitUnder(key, layout.etcdPrefix());
  if (etcd) {
    if (!isSnapshotId(etcd.id)) return 'foreign';
    return roleInSet(etcd.name, manifests.etcdSnapshots.get(etcd.id), 'etcd');
  }

  const drill = tail(key, layout.drillsPrefix());
  if (drill !== undefined) return DRILL_REPORT.test(drill) ? 'drill-report' : 'foreign';

  const lock = tail(key, layout.locksPrefix());
  if (lock !== undefined) return LOCK.test(lock) ? 'lock' : 'foreign';

  const point = tail(key, layout.restorePointsPrefix());
  if (point !== undefined) return /^[A-Za-z0-9._-]{1,63}\.json$/.test(point) ? 'restore-point' : 'foreign';

  if (key === layout.storeProbe()) return 'store-probe';
  const state = tail(key, layout.statePrefix());
  if (state !== undefined) return PROBE_SCRATCH.test(state) ? 'probe-scratch' : 'foreign';

  return 'foreign';
}

function roleInSet(name: string, manifest: ManifestState | undefined, kind: 'backup' | 'etcd'): ObjectRole {
  if (name === 'manifest.json') {
    if (manifest?.state === 'complete') return kind === 'backup' ? 'backup-manifest' : 'etcd-manifest';
    return kind === 'backup' ? 'invalid-backup-object' : 'invalid-etcd-object';
  }
  switch (manifest?.state) {
    case 'complete':
      if (manifest.objectNames.has(name)) return kind === 'backup' ? 'backup-object' : 'etcd-object';
      return 'foreign';
    case 'invalid':
      return kind === 'backup' ? 'invalid-backup-object' : 'invalid-etcd-object';
    case 'incomplete':
    case undefined:
      // No manifest was seen when the listing was made: the objects of a backup still running (or interrupted).
      return kind === 'backup' ? 'incomplete-backup-object' : 'incomplete-etcd-object';
  }
}

/** `prefix<id>/<name>` with a non-empty id and a name without further slashes, else undefined. */
function splitUnder(key: string, prefix: string): { id: string; name: string } | undefined {
  const rest = tail(key, prefix);
  if (rest === undefined) return undefined;
  const slash = rest.indexOf('/');
  if (slash <= 0) return { id: '', name: rest };
  const name = rest.slice(slash + 1);
  if (name === '' || name.includes('/')) return { id: '', name };
  return { id: rest.slice(0, slash), name };
}

function tail(key: string, prefix: string): string | undefined {
  return key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
}
