/**
 * Where everything lives inside one cluster's namespace of the repository. This module is the only place that
 * builds keys; docs/repository-format.md describes the same layout for people restoring by hand.
 *
 *   <cluster>/cluster.json                       identity, written once
 *   <cluster>/backups/<backupId>/base.tar.zst    data objects first ...
 *   <cluster>/backups/<backupId>/manifest.json   ... the manifest last (the commit)
 *   <cluster>/wal/<timeline>/<walFileName>.zst   WAL segments, .history and .backup files
 *   <cluster>/etcd/<snapshotId>/snapshot.db.zst  etcd snapshot, then its manifest.json last
 *   <cluster>/drills/<drillId>.json              restore drill reports
 *   <cluster>/locks/<name>.json                  lock objects
 *   <cluster>/restore-points/<name>.json         restore points pgdr created, with their LSN
 *   <cluster>/state/store-probe.json             what the store does with conditional writes, and when it was asked
 */
export class RepositoryLayout {
  constructor(readonly cluster: string) {
    if (!isClusterName(cluster)) {
      throw new Error(`invalid cluster name ${JSON.stringify(cluster)}`);
    }
  }

  get root(): string {
    return `${this.cluster}/`;
  }

  clusterInfo(): string {
    return `${this.cluster}/cluster.json`;
  }

  backupsPrefix(): string {
    return `${this.cluster}/backups/`;
  }

  backupPrefix(backupId: string): string {
    return `${this.cluster}/backups/${backupId}/`;
  }

  backupObject(backupId: string, name: string): string {
    return `${this.backupPrefix(backupId)}${name}`;
  }

  backupManifest(backupId: string): string {
    return `${this.backupPrefix(backupId)}manifest.json`;
  }

  walPrefix(): string {
    return `${this.cluster}/wal/`;
  }

  walTimelinePrefix(timelineHex: string): string {
    return `${this.cluster}/wal/${timelineHex}/`;
  }

  /** `fileName` is a WAL segment, .history, .partial or .backup file name; its first 8 hex digits are the timeline. */
  walObject(fileName: string): string {
    return `${this.cluster}/wal/${fileName.slice(0, 8)}/${fileName}.zst`;
  }

  etcdPrefix(): string {
    return `${this.cluster}/etcd/`;
  }

  etcdSnapshotPrefix(snapshotId: string): string {
    return `${this.cluster}/etcd/${snapshotId}/`;
  }

  etcdSnapshotObject(snapshotId: string, name: string): string {
    return `${this.etcdSnapshotPrefix(snapshotId)}${name}`;
  }

  etcdSnapshotManifest(snapshotId: string): string {
    return `${this.etcdSnapshotPrefix(snapshotId)}manifest.json`;
  }

  drillsPrefix(): string {
    return `${this.cluster}/drills/`;
  }

  drillReport(drillId: string): string {
    return `${this.cluster}/drills/${drillId}.json`;
  }

  locksPrefix(): string {
    return `${this.cluster}/locks/`;
  }

  lock(name: string): string {
    return `${this.cluster}/locks/${name}.json`;
  }

  restorePointsPrefix(): string {
    return `${this.cluster}/restore-points/`;
  }

  restorePoint(name: string): string {
    return `${this.cluster}/restore-points/${name}.json`;
  }

  /** Mutable state pgdr keeps about the repository itself (never under retention). */
  statePrefix(): string {
    return `${this.cluster}/state/`;
  }

  storeProbe(): string {
    return `${this.cluster}/state/store-probe.json`;
  }

  /** The scratch key of one conditional-write probe, removed when the probe ends. */
  probeScratch(id: string): string {
    return `${this.cluster}/state/probe-${id}`;
  }
}

/** Letters, digits, '.', '_', '-', at most 63 characters, starting with a letter or digit. */
export function isClusterName(value: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(value);
}

/** Backup ids sort by time: 20261123T125304Z. */
export function newBackupId(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

export function isBackupId(value: string): boolean {
  return /^\d{8}T\d{6}Z$/.test(value);
}
