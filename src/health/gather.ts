import { errorMessage, PgdrError } from '../errors.js';
import type { BackupCatalog } from '../repo/catalog.js';
import { missingChainMembers } from '../retention/chains.js';
import {
  failed,
  known,
  notConfigured,
  type BackupFacts,
  type DrillFacts,
  type EtcdSnapshotFacts,
  type Fact,
  type HealthFacts,
  type ServerWalFacts,
  type WalArchiveFacts,
} from './facts.js';

/**
 * Reads the facts `pgdr health` judges, each through a small source so tests can hand in a real repository and a
 * real server, or plain data. Every read is caught here and becomes a `failed` fact: one broken input makes one
 * check UNKNOWN instead of aborting the whole report.
 */
export interface HealthSources {
  cluster: string;
  repositoryLocation: string;
  /** Lists the backups; its failure means the repository is unreachable. */
  readBackupCatalog(): Promise<BackupCatalog>;
  /** Where the archive stands against the server: its newest segment before the server's, and WAL it cannot have written. */
  archivedWalPosition(server: ServerWalFacts): Promise<{ newest: WalArchiveFacts['newestArchived']; ahead: WalArchiveFacts['aheadOfServer'] }>;
  /** The server's archiving state; null when no PostgreSQL is configured (the WAL check is then SKIPPED). */
  serverWal: (() => Promise<ServerWalFacts>) | null;
  /** Why serverWal is null, for the SKIPPED line. */
  serverNotConfiguredReason?: string;
  newestEtcdSnapshot(): Promise<EtcdSnapshotFacts['newest']>;
  /** Whether etcd endpoints are configured: with none and no snapshot stored, the etcd check is SKIPPED. */
  etcdConfigured: boolean;
  lastDrill(): Promise<DrillFacts['last']>;
}

export async function gatherHealthFacts(sources: HealthSources): Promise<HealthFacts> {
  let catalog: BackupCatalog;
  try {
    catalog = await sources.readBackupCatalog();
  } catch (err) {
    const reason = describe(err);
    const down = failed<never>(`repository ${sources.repositoryLocation} did not answer`, 'fix the repository check first');
    // The server side of the WAL check does not need the repository, but its verdict does.
    return {
      cluster: sources.cluster,
      repository: failed(reason.message, reason.hint),
      backups: down,
      wal: sources.serverWal === null ? notConfigured(sources.serverNotConfiguredReason ?? 'no PostgreSQL configured') : down,
      etcd: down,
      drill: down,
    };
  }

  const [wal, etcd, drill] = await Promise.all([readWal(sources), readEtcd(sources), readDrill(sources)]);
  return {
    cluster: sources.cluster,
    repository: known({ location: sources.repositoryLocation }),
    backups: known(backupFacts(catalog)),
    wal,
    etcd,
    drill,
  };
}

/**
 * The catalog reduced to what the checks and metrics use; exported for the report. A diff or incr whose chain lacks
 * a member is complete but cannot be restored: it is never the newest backup the age check counts on.
 */
export function backupFacts(catalog: BackupCatalog): BackupFacts {
  let newest: BackupFacts['newest'] = null;
  let oldestStart: Date | null = null;
  const present = new Set(catalog.complete.map((m) => m.backupId));
  const unrestorableIds: string[] = [];
  for (const m of catalog.complete) {
    const stopTime = new Date(m.stopTime);
    const startTime = new Date(m.startTime);
    if (missingChainMembers(m, present).length > 0) {
      unrestorableIds.push(m.backupId);
      continue;
    }
    if (newest === null || stopTime > newest.stopTime) {
      newest = { backupId: m.backupId, startTime, stopTime, bytes: m.bytes, storedBytes: m.storedBytes };
    }
    if (oldestStart === null || startTime < oldestStart) oldestStart = startTime;
  }
  return {
    newest,
    oldestStart,
    completeCount: catalog.complete.length,
    incompleteCount: catalog.incomplete.length,
    invalidIds: catalog.invalid.map((i) => i.backupId),
    unrestorableIds,
  };
}

async function readWal(sources: HealthSources): Promise<Fact<WalArchiveFacts>> {
  if (sources.serverWal === null) return notConfigured(sources.serverNotConfiguredReason ?? 'no PostgreSQL configured');
  let server: ServerWalFacts;
  try {
    server = await sources.serverWal();
  } catch (err) {
    const reason = describe(err);
    return failed(reason.message, reason.hint);
  }
  try {
    const position = await sources.archivedWalPosition(server);
    return known({ server, newestArchived: position.newest, aheadOfServer: position.ahead });
  } catch (err) {
    const reason = describe(err);
    return failed(`listing the WAL archive failed: ${reason.message}`, reason.hint);
  }
}

async function readEtcd(sources: HealthSources): Promise<Fact<EtcdSnapshotFacts>> {
  try {
    const newest = await sources.newestEtcdSnapshot();
    if (newest === null && !sources.etcdConfigured) {
      return notConfigured('no etcd endpoints configured (--etcd, PGDR_ETCD) and no etcd snapshot in the repository');
    }
    return known({ newest });
  } catch (err) {
    const reason = describe(err);
    return failed(reason.message, reason.hint);
  }
}

async function readDrill(sources: HealthSources): Promise<Fact<DrillFacts>> {
  try {
    return known({ last: await sources.lastDrill() });
  } catch (err) {
    const reason = describe(err);
    return failed(reason.message, reason.hint);
  }
}

function describe(err: unknown): { message: string; hint?: string } {
  if (err instanceof PgdrError) return { message: err.message, hint: err.hint };
  return { message: errorMessage(err) };
}
