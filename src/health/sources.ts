import type pg from 'pg';
import { ServiceError } from '../errors.js';
import { readEtcdSnapshots } from '../etcd/catalog.js';
import { describeEndpoint, withConnection, type PgEndpoint } from '../postgres/connection.js';
import { parseLsn } from '../postgres/lsn.js';
import {
  formatWalSegmentName,
  parseWalFileName,
  parseWalSegmentName,
  timelineHex,
  walSegmentForLsn,
  walSegmentFromNumber,
  walSegmentNumber,
} from '../postgres/wal-file-name.js';
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
  /** Why the WAL check is SKIPPED when `primary` is null; by default, that no PostgreSQL is configured. */
  serverNotConfiguredReason?: string;
  etcdConfigured: boolean;
}

export function healthSources(options: RepositorySourceOptions): HealthSources {
  const { store, layout, primary } = options;
  return {
    cluster: layout.cluster,
    repositoryLocation: store.location,
    readBackupCatalog: () => readBackupCatalog(store, layout),
    archivedWalPosition: (server) => archivedWalPosition(store, layout, server),
    serverWal: primary === null ? null : async () => readServerWalFacts(await primary()),
    serverNotConfiguredReason: options.serverNotConfiguredReason ?? 'no PostgreSQL configured (--pg-host/PGHOST, --patroni/PGDR_PATRONI or --etcd/PGDR_ETCD)',
    newestEtcdSnapshot: () => newestEtcdSnapshot(store, layout),
    etcdConfigured: options.etcdConfigured,
    lastDrill: () => lastDrill(store, layout),
  };
}

/** A WAL file in the repository, by its name and when it was stored. */
export interface StoredWalFile {
  name: string;
  storedAt: Date;
}

export interface ArchivedWalPosition {
  /**
   * The newest plain segment on the server's timeline before the one it writes (the lag is counted from it); when
   * that timeline has none, the newest such segment on an older timeline. null when there is none at all.
   */
  newest: StoredWalFile | null;
  /** WAL the server cannot have written (see archivedWalPosition), or null. */
  ahead: StoredWalFile | null;
}

/** How far below the server's segment the first look starts; each further look goes this many times deeper. */
const FIRST_WINDOW = 64;
const WINDOW_GROWTH = 16;

/**
 * Where the archive stands against a server, without listing the whole archive: each timeline directory is listed
 * from a little before the server's current segment (StartAfter), and deeper only while nothing is found below it,
 * so the cost follows the lag, not the archive's size.
 *
 * WAL the server cannot have written counts as `ahead`:
 * - a segment of the server's own timeline at or past the segment it is still writing (it archives only completed
 *   segments: another server with the same timeline archives into this cluster);
 * - a segment of an older timeline past the server's segment: an old primary still writing after a failover (one
 *   at the same position is the expected tail of the old timeline, archived before the switch, and is not flagged);
 * - any WAL of a newer timeline: a copy or a restored server promoted and archiving here, whose timeline a
 *   recovery that follows the latest timeline would take.
 */
export async function archivedWalPosition(
  store: ObjectStore,
  layout: RepositoryLayout,
  server: Pick<ServerWalFacts, 'currentWalFile' | 'walSegmentSize'>,
): Promise<ArchivedWalPosition> {
  const segmentSize = server.walSegmentSize;
  const current = parseWalSegmentName(server.currentWalFile, segmentSize);
  const currentN = walSegmentNumber(current, segmentSize);
  const timelines: number[] = [];
  for await (const dir of store.listPrefixes(layout.walPrefix())) {
    const hex = dir.slice(layout.walPrefix().length, -1);
    if (/^[0-9A-F]{8}$/.test(hex) && parseInt(hex, 16) > 0) timelines.push(parseInt(hex, 16));
  }
  timelines.sort((a, b) => a - b);

  let ahead: StoredWalFile | null = null;
  for (const timeline of timelines.filter((t) => t > current.timeline)) {
    ahead = await firstWalFile(store, layout, timeline);
    if (ahead !== null) break;
  }

  let newest: SegmentAt | null = null;
  let ownHasBelow = false;
  // The server's own timeline first: its newest segment is where the lag counts from whenever it has one. Older
  // timelines are still looked at (from the same place) for an old primary writing past the server.
  for (const timeline of timelines.filter((t) => t <= current.timeline).reverse()) {
    const own = timeline === current.timeline;
    const found = await segmentsAround(store, layout, timeline, currentN, segmentSize, own || !ownHasBelow);
    const past = own ? found.atOrPast : found.past;
    if (ahead === null && past !== null) ahead = past.file;
    if (own) {
      newest = found.below;
      ownHasBelow = newest !== null;
    } else if (!ownHasBelow && found.below !== null && (newest === null || found.below.n > newest.n)) {
      newest = found.below;
    }
  }
  return { newest: newest?.file ?? null, ahead };
}

interface SegmentAt {
  file: StoredWalFile;
  n: bigint;
}

/**
 * One timeline's segments around segment number `currentN`: the newest below it (looking deeper while none is
 * found, when `findBelow`), the newest at or past it, and the newest strictly past it.
 */
async function segmentsAround(
  store: ObjectStore,
  layout: RepositoryLayout,
  timeline: number,
  currentN: bigint,
  segmentSize: number,
  findBelow: boolean,
): Promise<{ below: SegmentAt | null; atOrPast: SegmentAt | null; past: SegmentAt | null }> {
  let window = BigInt(FIRST_WINDOW);
  for (;;) {
    const fromN = currentN > window ? currentN - window : 0n;
    const found = { below: null as SegmentAt | null, atOrPast: null as SegmentAt | null, past: null as SegmentAt | null };
    // Every key of a segment numbered fromN or later sorts after its bare name.
    const startAfter = layout.walObject(formatWalSegmentName(walSegmentFromNumber(timeline, fromN, segmentSize))).slice(0, -'.zst'.length);
    for await (const info of store.list(layout.walTimelinePrefix(timelineHex(timeline)), { startAfter })) {
      const n = segmentNumberOfKey(info.key, timeline, segmentSize);
      if (n === undefined) continue;
      const at: SegmentAt = { file: { name: formatWalSegmentName(walSegmentFromNumber(timeline, n, segmentSize)), storedAt: info.lastModified }, n };
      // Keys come in name order, which is segment order within a timeline: the last seen of each kind is the newest.
      if (n < currentN) found.below = at;
      else found.atOrPast = at;
      if (n > currentN) found.past = at;
    }
    if (found.below !== null || !findBelow || fromN === 0n) return found;
    window *= BigInt(WINDOW_GROWTH);
  }
}

/** The first segment or .history file stored under a timeline, if any. */
async function firstWalFile(store: ObjectStore, layout: RepositoryLayout, timeline: number): Promise<StoredWalFile | null> {
  for await (const info of store.list(layout.walTimelinePrefix(timelineHex(timeline)))) {
    const name = walNameOfKey(info.key, timeline);
    if (name === undefined) continue;
    const kind = parseWalFileName(name).kind;
    if (kind === 'segment' || kind === 'history') return { name, storedAt: info.lastModified };
  }
  return null;
}

/** The file name of a WAL object filed where wal fetch looks for it, or undefined for anything else. */
function walNameOfKey(key: string, timeline: number): string | undefined {
  const file = key.slice(key.lastIndexOf('/') + 1);
  if (!file.endsWith('.zst')) return undefined;
  const name = file.slice(0, -'.zst'.length);
  try {
    parseWalFileName(name);
  } catch {
    return undefined; // not a WAL file: verify reports foreign objects, health does not care
  }
  return name.slice(0, 8) === timelineHex(timeline) ? name : undefined;
}

function segmentNumberOfKey(key: string, timeline: number, segmentSize: number): bigint | undefined {
  const name = walNameOfKey(key, timeline);
  if (name === undefined) return undefined;
  try {
    const parsed = parseWalFileName(name, segmentSize);
    return parsed.kind === 'segment' ? walSegmentNumber(parsed.segmentName, segmentSize) : undefined;
  } catch {
    return undefined; // a segment part that does not exist at this segment size
  }
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
