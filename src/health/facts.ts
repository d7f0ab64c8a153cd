/**
 * What `pgdr health` knows before it judges anything: plain data read from the repository, the PostgreSQL server
 * and the etcd snapshot and drill records. The evaluation (evaluate.ts) is a pure function of these facts, the
 * policy's thresholds and a clock, so every age and state boundary is unit-tested without servers.
 */

/**
 * One input of a check. `not-configured` means the check has nothing to look at on this deployment (no PostgreSQL
 * named, no etcd used): the check is SKIPPED. `failed` means it should have been readable and was not (server down,
 * storage error): the check is UNKNOWN, because nobody can tell whether things are fine.
 */
export type Fact<T> =
  | { kind: 'known'; value: T }
  | { kind: 'failed'; error: string; hint?: string }
  | { kind: 'not-configured'; reason: string };

export const known = <T>(value: T): Fact<T> => ({ kind: 'known', value });
export const failed = <T>(error: string, hint?: string): Fact<T> => ({ kind: 'failed', error, ...(hint === undefined ? {} : { hint }) });
export const notConfigured = <T>(reason: string): Fact<T> => ({ kind: 'not-configured', reason });

export interface BackupFacts {
  /** The newest complete base backup that can be restored (by stop time), or null when the repository holds none. */
  newest: { backupId: string; startTime: Date; stopTime: Date; bytes: number; storedBytes: number } | null;
  /** Start of the oldest complete backup: how long this repository has existed as far as restores go. */
  oldestStart: Date | null;
  completeCount: number;
  incompleteCount: number;
  /** Manifests that exist but do not validate. */
  invalidIds: string[];
  /** Complete diff or incr backups whose chain lacks a member: they cannot be restored (pgdr verify: broken-chain). */
  unrestorableIds: string[];
}

/** The server's side of WAL archiving, from pg_stat_archiver, the current WAL position and pg_wal. */
export interface ServerWalFacts {
  /** host:port that answered. */
  source: string;
  /** The segment holding pg_current_wal_lsn(): the one the server writes now (see sources.ts currentSegment). */
  currentWalFile: string;
  walSegmentSize: number;
  archiveMode: string;
  /** The server's clock when it answered: pg_wal modification times are compared with it, not with ours. */
  serverTime: Date;
  archiver: {
    archivedCount: number;
    lastArchivedWal: string | null;
    lastArchivedTime: Date | null;
    failedCount: number;
    lastFailedWal: string | null;
    lastFailedTime: Date | null;
  };
  /**
   * Files in pg_wal with their modification times (pg_ls_waldir), or null when the role may not list them
   * (it needs pg_monitor). A completed segment's mtime is about when it filled up, so the oldest segment the
   * repository lacks tells how long the archive has been behind.
   */
  walFiles: { name: string; modified: Date }[] | null;
}

export interface WalArchiveFacts {
  server: ServerWalFacts;
  /**
   * The newest plain WAL segment in the repository before the one the server writes: on the server's timeline, or
   * when that has none yet, on an older one. null when there is none.
   */
  newestArchived: { name: string; storedAt: Date } | null;
  /**
   * WAL in the repository that this server cannot have written: a segment at or past the one it writes on its own
   * timeline, past it on an older timeline, or any WAL of a newer timeline. Another server archives under this
   * cluster's name. null when there is none.
   */
  aheadOfServer: { name: string; storedAt: Date } | null;
}

export interface EtcdSnapshotFacts {
  /** The newest complete snapshot (one with a manifest), or null. */
  newest: { snapshotId: string; takenAt: Date } | null;
}

export interface DrillSummary {
  drillId: string;
  /** When the drill finished (or started, if the report does not say): its age is measured from here. */
  at: Date;
  passed: boolean;
  /** Why it failed, in one line, when the report says. */
  failure?: string;
}

export interface DrillFacts {
  last: DrillSummary | null;
}

export interface HealthFacts {
  cluster: string;
  /** The repository location (secrets redacted); `failed` when listing or reading it failed. */
  repository: Fact<{ location: string }>;
  backups: Fact<BackupFacts>;
  wal: Fact<WalArchiveFacts>;
  etcd: Fact<EtcdSnapshotFacts>;
  drill: Fact<DrillFacts>;
}
