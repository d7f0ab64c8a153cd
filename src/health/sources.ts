import type pg from 'pg';
import { ServiceError } from '../errors.js';
import { readEtcdSnapshots } from '../etcd/catalog.js';
import { describeEndpoint, withConnection, type PgEndpoint } from '../postgres/connection.js';
import { parseLsn } from '../postgres/lsn.js';
import { formatWalSegmentName, parseWalFileName, walSegmentForLsn } from '../postgres/wal-file-name.js';
import { readBackupCatalog } from '../repo/catalog.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { readDrillReports } from '../verify/drill-report.js';
import type { DrillFacts, EtcdSnapshotFacts, ServerWalFacts } from './facts.js';
import type { HealthSources } from './gather.js';

/**
 * The real sources of `pgdr health` and `pgdr report`: the repository (backups, WAL, etcd snapshots, drill reports)
 * and the PostgreSQL primary (its archiver statistics and current WAL file).
 */

export interface RepositorySourceOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** How to reach the primary; null when none is configured (the WAL check is then SKIPPED). */
  primary: (() => Promise<PgEndpoint>) | null;
  etcdConfigured: boolean;
}

export function healthSources(options: RepositorySourceOptions): HealthSources {
  const { store, layout, primary } = options;
  return {
    cluster: layout.cluster,
    repositoryLocation: store.location,
    readBackupCatalog: () => readBackupCatalog(store, layout),
    newestArchivedWal: (maxTimeline) => newestArchivedWal(store, layout, maxTimeline),
    serverWal: primary === null ? null : async () => readServerWalFacts(await primary()),
    serverNotConfiguredReason: 'no PostgreSQL configured (--pg-host/PGHOST, --patroni/PGDR_PATRONI or --etcd/PGDR_ETCD)',
    newestEtcdSnapshot: () => newestEtcdSnapshot(store, layout),
    etcdConfigured: options.etcdConfigured,
    lastDrill: () => lastDrill(store, layout),
  };
}

/**
 * The newest plain segment under <cluster>/wal/ on a timeline up to `maxTimeline`. Names compare by their last 16
 * hex digits (log id and segment, fixed width), which is WAL position whatever the segment size; the timeline
 * breaks ties.
 */
export async function newestArchivedWal(
  store: ObjectStore,
  layout: RepositoryLayout,
  maxTimeline: number,
): Promise<{ name: string; storedAt: Date } | null> {
  const prefix = layout.walPrefix();
  let best: { name: string; storedAt: Date } | null = null;
  for await (const info of store.list(prefix)) {
    const slash = info.key.lastIndexOf('/');
    const file = info.key.slice(slash + 1);
    if (!file.endsWith('.zst')) continue;
    const name = file.slice(0, -'.zst'.length);
    let timeline: number;
    try {
      const parsed = parseWalFileName(name);
      if (parsed.kind !== 'segment') continue;
      timeline = parsed.segmentName.timeline;
    } catch {
      continue; // not a WAL file: verify reports foreign objects, health does not care
    }
    if (timeline > maxTimeline) continue;
    if (best === null || compareSegmentNames(name, best.name) > 0) best = { name, storedAt: info.lastModified };
  }
  return best;
}

function compareSegmentNames(a: string, b: string): number {
  const position = a.slice(8).localeCompare(b.slice(8));
  return position !== 0 ? position : a.slice(0, 8).localeCompare(b.slice(0, 8));
}

async function newestEtcdSnapshot(store: ObjectStore, layout: RepositoryLayout): Promise<EtcdSnapshotFacts['newest']> {
  const catalog = await readEtcdSnapshots(store, layout);
  let newest: EtcdSnapshotFacts['newest'] = null;
  for (const m of catalog.complete) {
    const takenAt = new Date(m.stopTime);
    if (newest === null || takenAt > newest.takenAt) newest = { snapshotId: m.snapshotId, takenAt };
  }
  return newest;
}

async function lastDrill(store: ObjectStore, layout: RepositoryLayout): Promise<DrillFacts['last']> {
  // Damaged reports are left out here; `pgdr verify` names them.
  const reports = await readDrillReports(store, layout);
  const last = reports[reports.length - 1];
  if (last === undefined) return null;
  return {
    drillId: last.drillId,
    at: new Date(last.finishedAt),
    passed: last.result === 'passed',
    ...(last.error === undefined ? {} : { failure: last.error }),
  };
}

/** pg_stat_archiver, the current WAL file and pg_wal's modification times, from a primary. */
export async function readServerWalFacts(endpoint: PgEndpoint): Promise<ServerWalFacts> {
  const source = describeEndpoint(endpoint);
  return withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{
      in_recovery: boolean;
      current_wal: string | null;
      current_lsn: string | null;
      archive_mode: string;
      wal_segment_size: string;
      server_time: Date;
      archived_count: string;
      last_archived_wal: string | null;
      last_archived_time: Date | null;
      failed_count: string;
      last_failed_wal: string | null;
      last_failed_time: Date | null;
    }>(`
      SELECT pg_is_in_recovery() AS in_recovery,
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal,
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
             current_setting('archive_mode') AS archive_mode,
             (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
             clock_timestamp() AS server_time,
             a.archived_count::text AS archived_count, a.last_archived_wal, a.last_archived_time,
             a.failed_count::text AS failed_count, a.last_failed_wal, a.last_failed_time
        FROM pg_stat_archiver a`);
    const row = rows[0];
    if (!row) throw new ServiceError(`PostgreSQL at ${source} returned no pg_stat_archiver row`, 'check that the server is PostgreSQL 15');
    if (row.in_recovery || row.current_wal === null || row.current_lsn === null) {
      throw new ServiceError(
        `PostgreSQL at ${source} is a standby: WAL archiving is judged on the primary`,
        'point --pg-host at the primary, or give --patroni so that pgdr finds the leader',
      );
    }
    const walSegmentSize = Number(row.wal_segment_size);
    return {
      source,
      currentWalFile: currentSegment(row.current_wal, row.current_lsn, walSegmentSize),
      walSegmentSize,
      archiveMode: row.archive_mode,
      serverTime: row.server_time,
      archiver: {
        archivedCount: Number(row.archived_count),
        lastArchivedWal: row.last_archived_wal,
        lastArchivedTime: row.last_archived_time,
        failedCount: Number(row.failed_count),
        lastFailedWal: row.last_failed_wal,
        lastFailedTime: row.last_failed_time,
      },
      walFiles: await readWalDir(client),
    };
  });
}

/**
 * The segment the server writes now. pg_walfile_name() names the segment *before* an LSN that sits exactly on a
 * segment boundary (it is meant for "the file holding the last byte written"), which is where the insert position
 * is right after a segment switch: that would count the just-completed segment as current and hide it from the
 * lag. So the timeline comes from pg_walfile_name and the segment from the LSN itself.
 */
export function currentSegment(walfileName: string, currentLsn: string, walSegmentSize: number): string {
  const timeline = parseInt(walfileName.slice(0, 8), 16);
  return formatWalSegmentName(walSegmentForLsn(parseLsn(currentLsn, 'pg_current_wal_lsn()'), timeline, walSegmentSize));
}

/** pg_ls_waldir() needs pg_monitor (or superuser); without it the lag is measured from the repository side. */
async function readWalDir(client: pg.Client): Promise<ServerWalFacts['walFiles']> {
  try {
    const { rows } = await client.query<{ name: string; modification: Date }>('SELECT name, modification FROM pg_ls_waldir()');
    return rows.map((r) => ({ name: r.name, modified: r.modification }));
  } catch {
    return null;
  }
}
