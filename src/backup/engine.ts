import type { PgEndpoint } from '../postgres/connection.js';
import type { ServerInfo } from '../postgres/server-info.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { FileListEntry } from '../repo/file-list.js';
import type { BackupManifest, BackupObject } from '../repo/manifest.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ProgressReporter } from '../stream/progress.js';

/**
 * How a backup's data gets into the repository. An engine stores objects under backups/<id>/ and says where in WAL
 * the backup starts and stops; src/backup/take-backup.ts does everything around it the same way for every engine
 * (the lock, the id, the wait for WAL, the manifest written last, the clean-up of a failed attempt).
 */
export interface BackupEngine {
  readonly name: string;
  run(job: EngineJob): Promise<EngineResult>;
}

export interface EngineJob {
  store: ObjectStore;
  layout: RepositoryLayout;
  backupId: string;
  /** backup_label's LABEL: `pgdr <backupId>`. */
  label: string;
  endpoint: PgEndpoint;
  server: ServerInfo;
  compress: { level: number; threads: number };
  /** age recipients every object is encrypted to (empty: none); the manifest records them. */
  encryptTo: readonly string[];
  /** kB/s, or with a k or M suffix. */
  maxRate?: string;
  /** Rejects when the backup must stop (the lock was lost: the repository stopped answering or someone took over). */
  interrupted: Promise<never>;
  progress: ProgressReporter;
  log: (message: string) => void;
  /**
   * Every object the engine has started to store, so that a failed backup's leftovers can be removed (they would
   * only be an incomplete backup, but they cost space until expire's grace period).
   */
  started: string[];
  /** Files read at once (the files engine). */
  jobs: number;
  /** The data directory on this host, when it is not where the server says (a sidecar's mount). */
  pgdata?: string;
  /** A diff or incr backup: what it builds on (the files engine only). */
  reference?: BackupReference;
}

export interface BackupReference {
  type: 'diff' | 'incr';
  manifest: BackupManifest;
  files: readonly FileListEntry[];
  /** The new backup's chain: the reference's chain and the reference. */
  chain: string[];
}

/** A WAL position, as PostgreSQL reports it. */
export interface WalPosition {
  lsn: string;
  timeline: number;
}

export interface EngineResult {
  objects: BackupObject[];
  start: WalPosition;
  /** Where recovery must replay to, at least, to be consistent; its timeline is the backup's. */
  stop: WalPosition;
  /** The files engine's part of the manifest (format 2). */
  files?: FilesEngineSummary;
}

export interface FilesEngineSummary {
  type: 'full' | 'diff' | 'incr';
  reference?: string;
  chain: string[];
  restoredBytes: number;
  fileCount: number;
  pageChecksumFailures: { path: string; tablespace?: number; blocks: number[] }[];
}
