import { RepositoryError, ServiceError } from '../errors.js';
import { withConnection, describeEndpoint, type PgEndpoint } from '../postgres/connection.js';
import { readServerInfo, type ServerInfo } from '../postgres/server-info.js';
import { parseLsn } from '../postgres/lsn.js';
import { parseTimelineHistory, rootTimelineHistory, walSegmentsOnPath, type TimelineHistory } from '../postgres/timeline-history.js';
import { formatWalSegmentName, historyFileName, parseWalSegmentName, walSegmentForLsn, walSegmentRange } from '../postgres/wal-file-name.js';
import { failpoint } from '../process/failpoint.js';
import { ensureClusterInfo } from '../repo/cluster-info.js';
import type { Locker } from '../repo/lock.js';
import { newBackupId, type RepositoryLayout } from '../repo/layout.js';
import { encryptionFor, serializeManifest, type BackupManifest } from '../repo/manifest.js';
import type { ObjectStore } from '../storage/object-store.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { createProgress } from '../stream/progress.js';
import { PGDR_VERSION } from '../version.js';
import { archiveWaitFailure, readArchiverFacts } from './archive-wait.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { readFileList } from '../repo/file-list-store.js';
import { ObjectExistsError, ObjectNotFoundError } from '../storage/object-store.js';
import { planBackupType, type BackupType } from './backup-type.js';
import type { BackupEngine, BackupReference, EngineResult } from './engine.js';
import { baseBackupEngine } from './engines/basebackup.js';

export interface BackupOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** Takes the cluster's `backup` lock (in the repository, or in etcd on a store without conditional writes). */
  lock: Locker;
  endpoint: PgEndpoint;
  compressLevel: number;
  compressThreads: number;
  /** age recipients every object is encrypted to; empty: stored as zstd frames. */
  encryptTo?: readonly string[];
  /** An identity to read an encrypted reference's file list with (a diff or incr); without one such a backup becomes a full. */
  identityFile?: string;
  /** How the data is read; the remote engine (BASE_BACKUP) unless given. */
  engine?: BackupEngine;
  /** full (the default), or diff/incr: only what changed since a reference (the files engine). */
  type?: BackupType;
  /** Files the files engine reads at once. */
  jobs?: number;
  /** The data directory on this host, for the files engine, when it is not where the server says. */
  pgdata?: string;
  /** Wait this long for a running backup's lock before failing. */
  lockWaitMs: number;
  /** How long the WAL up to the backup's end may take to reach the repository. */
  archiveWaitMs: number;
  /**
   * Where the WAL arrives when this repository does not receive it (an off-site repository for a daily full): the
   * backup waits for its WAL there and copies it (and the timeline's history files) into this repository before the
   * manifest, so that the backup becomes consistent from this repository alone.
   */
  walFrom?: { store: ObjectStore; label: string };
  /** Passed to pg_basebackup --max-rate (kB/s, or with a k/M suffix). */
  maxRate?: string;
  /** Accept a standby as the source (`backup now --from replica`); otherwise a standby is refused. */
  allowStandby?: boolean;
  /** The Patroni member backed up, recorded in the manifest. */
  sourceMember?: string;
  /**
   * Runs after the data has streamed and before the wait for its WAL: a standby does not switch WAL when a backup
   * stops, so a backup from one asks the leader here to finish the segment that holds the backup's end.
   */
  finishWal?: () => Promise<void>;
  progress: boolean;
  log: (message: string) => void;
  now?: () => Date;
}

export interface BackupResult {
  manifest: BackupManifest;
}

/**
 * A full base backup, committed last: the engine streams the data into the repository, then pgdr checks that the
 * WAL the backup needs is archived there, and only then writes manifest.json. A crash or error anywhere before that
 * leaves objects with no manifest, which `backup list` shows as incomplete and restore never uses.
 */
export async function takeBackup(options: BackupOptions): Promise<BackupResult> {
  const { store, layout, log } = options;
  const now = options.now ?? (() => new Date());
  const source = describeEndpoint(options.endpoint);
  const engine = options.engine ?? baseBackupEngine;

  const server = await withConnection(options.endpoint, readServerInfo);
  checkServerCanBeBackedUp(server, source, options.allowStandby === true);
  await ensureClusterInfo(store, layout, { systemIdentifier: server.systemIdentifier, pgMajor: server.major }, now());

  const lock = await options.lock('backup', 'a base backup', { waitMs: options.lockWaitMs });
  const started: string[] = [];
  let committed = false;
  try {
    const backupId = await freshBackupId(store, layout, now);
    const reference = await chooseReference(options, engine, server, log);
    log(`backup ${backupId}: reading ${source} (${engine.name} engine, ${reference?.type ?? 'full'}) into ${store.location}`);
    const startTime = now();
    const streamed = await engine.run({
      store,
      layout,
      backupId,
      label: `pgdr ${backupId}`,
      endpoint: options.endpoint,
      server,
      compress: { level: options.compressLevel, threads: options.compressThreads },
      encryptTo: options.encryptTo ?? [],
      ...(options.maxRate === undefined ? {} : { maxRate: options.maxRate }),
      interrupted: lock.lost,
      progress: createProgress(`backup ${backupId}`, server.estimatedBytes, options.progress),
      log,
      started,
      jobs: options.jobs ?? 1,
      ...(options.pgdata === undefined ? {} : { pgdata: options.pgdata }),
      ...(reference === undefined ? {} : { reference }),
    });
    const stopTime = now();
    const position = positionOf(streamed, server.walSegmentSize);
    const bytes = streamed.objects.reduce((sum, o) => sum + o.bytes, 0);
    const storedBytes = streamed.objects.reduce((sum, o) => sum + o.storedBytes, 0);

    await failpoint('backup:before-wal-wait', backupId);
    if (options.finishWal) await options.finishWal();
    const walStore = options.walFrom?.store ?? store;
    log(`backup ${backupId}: ${bytes} bytes read, ${storedBytes} stored; waiting for WAL ${position.startWal}..${position.stopWal} in ${options.walFrom === undefined ? 'the repository' : `repository ${options.walFrom.label}`}`);
    await Promise.race([
      (async () => {
        const needed = await walNeededByBackup(walStore, layout, position, server.walSegmentSize, options.archiveWaitMs, options.endpoint);
        await waitForArchivedWal(walStore, layout, needed, options.archiveWaitMs, options.endpoint);
        if (options.walFrom !== undefined) {
          const copied = await copyBackupWal(walStore, store, layout, [...historyFilesUpTo(position.timeline), ...needed]);
          log(`backup ${backupId}: copied ${copied} WAL file(s) it needs from repository ${options.walFrom.label}`);
        }
      })(),
      lock.lost,
    ]);

    const files = streamed.files;
    const manifest: BackupManifest = {
      format: files === undefined ? 1 : 2,
      backupId,
      cluster: layout.cluster,
      type: files?.type ?? 'full',
      ...(files === undefined
        ? {}
        : {
            engine: 'files' as const,
            ...(files.reference === undefined ? {} : { reference: files.reference }),
            chain: files.chain,
            restoredBytes: files.restoredBytes,
            fileCount: files.fileCount,
            ...(files.pageChecksumFailures.length === 0 ? {} : { pageChecksumFailures: files.pageChecksumFailures }),
          }),
      startTime: startTime.toISOString(),
      stopTime: stopTime.toISOString(),
      startLsn: position.startLsn,
      stopLsn: position.stopLsn,
      timeline: position.timeline,
      startWal: position.startWal,
      stopWal: position.stopWal,
      walSegmentSize: server.walSegmentSize,
      systemIdentifier: server.systemIdentifier,
      pgVersion: server.version,
      pgVersionNum: server.versionNum,
      source,
      ...(options.sourceMember !== undefined ? { sourceMember: options.sourceMember } : {}),
      compression: { algorithm: 'zstd', level: options.compressLevel },
      ...(encryptionFor(options.encryptTo ?? []) === undefined ? {} : { encryption: encryptionFor(options.encryptTo ?? [])! }),
      bytes,
      storedBytes,
      objects: streamed.objects,
      pgdrVersion: PGDR_VERSION,
    };
    await failpoint('backup:before-manifest', backupId);
    // The commit: before this put the backup does not exist for restore.
    await store.put(layout.backupManifest(backupId), { kind: 'buffer', data: serializeManifest(manifest) }, { ifNoneMatch: true });
    committed = true;
    log(`backup ${backupId}: complete (timeline ${manifest.timeline}, ${manifest.startLsn}..${manifest.stopLsn})`);
    return { manifest };
  } finally {
    // A failed attempt's objects would only be an incomplete backup; removing them now saves the space until expire.
    if (!committed && started.length > 0) await store.delete(started).catch(() => undefined);
    await lock.release().catch(() => undefined);
  }
}

/**
 * A diff or incr backup's reference, with its file list read and checked, or undefined for a full backup (asked
 * for, or because nothing fits: the reason is logged).
 */
async function chooseReference(options: BackupOptions, engine: BackupEngine, server: ServerInfo, log: (m: string) => void): Promise<BackupReference | undefined> {
  const requested = options.type ?? 'full';
  if (requested === 'full') return undefined;
  if (engine.name !== 'files') {
    log(`backup: taking a full backup: the ${engine.name} engine reads the whole database every time (a ${requested} needs the files engine)`);
    return undefined;
  }
  const { store, layout } = options;
  const catalog = await readBackupCatalog(store, layout);
  const history = await serverTimelineHistory(store, layout, server.timeline);
  const plan = planBackupType({ requested, catalog: catalog.complete, server, history });
  if (plan.type === 'full') {
    log(`backup: taking a full backup instead of a ${requested}: ${plan.reason}`);
    return undefined;
  }
  if (plan.reference.encryption !== undefined && options.identityFile === undefined) {
    // Writers hold public keys only: the reference's list of files (sizes, times, where each one's bytes are) is
    // encrypted, and a backup never asks for the private key.
    log(`backup: taking a full backup instead of a ${requested}: the reference ${plan.reference.backupId}'s file list is encrypted and no identity file was given`);
    return undefined;
  }
  const files = await readFileList(store, layout, plan.reference, options.identityFile);
  return { type: plan.type, manifest: plan.reference, files, chain: plan.chain };
}

/** The server's timeline path, from the history file its timeline archived (timeline 1 has none). */
async function serverTimelineHistory(store: ObjectStore, layout: RepositoryLayout, timeline: number): Promise<TimelineHistory> {
  if (timeline === 1) return rootTimelineHistory();
  const key = layout.walObject(historyFileName(timeline));
  const stored = await store.getBuffer(key).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  });
  // Without it pgdr cannot tell whether a reference lies on the server's path: a full backup is the safe answer.
  if (stored === undefined) return { timeline, entries: [] };
  return parseTimelineHistory(timeline, (await zstdDecompressBuffer(stored)).toString('utf8'));
}

/** Where the backup starts and stops in WAL; the manifest's timeline is the stop's. */
interface BackupPosition {
  startLsn: string;
  startWal: string;
  stopLsn: string;
  stopWal: string;
  timeline: number;
}

/**
 * The segments from the one holding the start to the one holding the last byte before the stop: recovery replays
 * up to the stop, so a stop exactly on a segment boundary needs nothing of the segment that begins there.
 */
function positionOf(result: EngineResult, segmentSize: number): BackupPosition {
  const start = parseLsn(result.start.lsn, 'backup start LSN');
  const stop = parseLsn(result.stop.lsn, 'backup stop LSN');
  if (stop < start || result.stop.timeline < result.start.timeline) {
    throw new ServiceError(
      `the server reported a backup from ${result.start.lsn} (timeline ${result.start.timeline}) to ${result.stop.lsn} (timeline ${result.stop.timeline})`,
      'a backup cannot end before it starts: check the server version and log, then run the backup again',
    );
  }
  return {
    startLsn: result.start.lsn,
    startWal: formatWalSegmentName(walSegmentForLsn(start, result.start.timeline, segmentSize)),
    stopLsn: result.stop.lsn,
    stopWal: formatWalSegmentName(walSegmentForLsn(stop > start ? stop - 1n : stop, result.stop.timeline, segmentSize)),
    timeline: result.stop.timeline,
  };
}

function checkServerCanBeBackedUp(server: ServerInfo, source: string, allowStandby: boolean): void {
  if (server.major < 15) {
    throw new ServiceError(`PostgreSQL ${server.version} at ${source} is older than 15`, 'pgdr supports PostgreSQL 15 and newer');
  }
  if (server.archiveMode === 'off') {
    throw new ServiceError(
      `archive_mode is off on ${source}: the backup could not be restored without its WAL`,
      "set archive_mode = on and archive_command = 'pgdr wal push %p', restart PostgreSQL, then back up",
    );
  }
  if (server.inRecovery && !allowStandby) {
    throw new ServiceError(`${source} is a standby`, 'point --pg-host at the primary, or back up a replica with --from replica and --patroni/--etcd');
  }
}

async function freshBackupId(store: ObjectStore, layout: RepositoryLayout, now: () => Date): Promise<string> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const id = newBackupId(now());
    let taken = false;
    for await (const _ of store.list(layout.backupPrefix(id))) {
      taken = true;
      break;
    }
    if (!taken) return id;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new RepositoryError('could not find an unused backup id', 'retry in a few seconds');
}

/**
 * The segments from the backup's start to its stop. A backup from a standby that followed a new leader meanwhile
 * starts on one timeline and stops on the next: then the new timeline's history file (archived by the new leader
 * before anything else) says where the switch is, and which segments recovery reads from which timeline.
 */
async function walNeededByBackup(
  store: ObjectStore,
  layout: RepositoryLayout,
  position: BackupPosition,
  segmentSize: number,
  waitMs: number,
  endpoint: PgEndpoint,
): Promise<string[]> {
  const start = parseWalSegmentName(position.startWal, segmentSize);
  if (start.timeline === position.timeline) {
    return [...walSegmentRange(start, parseWalSegmentName(position.stopWal, segmentSize), segmentSize)].map(formatWalSegmentName);
  }
  const historyName = historyFileName(position.timeline);
  await waitForArchivedWal(store, layout, [historyName], waitMs, endpoint);
  const text = (await zstdDecompressBuffer(await store.getBuffer(layout.walObject(historyName)))).toString('utf8');
  const history = parseTimelineHistory(position.timeline, text);
  return walSegmentsOnPath(history, parseLsn(position.startLsn), parseLsn(position.stopLsn), segmentSize).map(formatWalSegmentName);
}

function historyFilesUpTo(timeline: number): string[] {
  return Array.from({ length: timeline - 1 }, (_, i) => historyFileName(i + 2));
}

/**
 * The WAL files a backup needs, from the repository WAL arrives in into the backup's own; a file already there is
 * left as it is (wal push and pgdr copy compare contents), a history file the source lacks is skipped.
 */
async function copyBackupWal(from: ObjectStore, to: ObjectStore, layout: RepositoryLayout, names: readonly string[]): Promise<number> {
  let copied = 0;
  for (const name of names) {
    const key = layout.walObject(name);
    if ((await to.head(key)) !== null) continue;
    let data: Buffer;
    try {
      data = await from.getBuffer(key);
    } catch (err) {
      if (err instanceof ObjectNotFoundError && name.endsWith('.history')) continue;
      throw err;
    }
    try {
      await to.put(key, { kind: 'buffer', data }, { ifNoneMatch: true });
      copied++;
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
    }
  }
  return copied;
}

/**
 * Every named WAL file must be in the repository before the backup is committed. Only the files still missing are
 * looked up again, so a long backup's thousands of segments cost one lookup each, plus the stragglers'.
 */
async function waitForArchivedWal(store: ObjectStore, layout: RepositoryLayout, needed: readonly string[], waitMs: number, endpoint: PgEndpoint): Promise<void> {
  const began = Date.now();
  let missing = [...needed];
  // The last segment usually arrives within a second of pg_backup_stop: look again soon, then less often.
  let pause = 100;
  for (;;) {
    const still: string[] = [];
    for (const name of missing) {
      if ((await store.head(layout.walObject(name))) === null) still.push(name);
    }
    missing = still;
    if (missing.length === 0) return;
    if (Date.now() - began >= waitMs) {
      // Why, in the server's own words: an archive_command that fails, or an archiver that is only behind.
      const facts = await readArchiverFacts(endpoint).catch(() => undefined);
      const what = `WAL ${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''} needed by this backup did not reach ${store.location} within ${Math.round(waitMs / 1000)} s`;
      if (facts !== undefined) throw archiveWaitFailure(facts, what);
      throw new RepositoryError(what, "set archive_command = 'pgdr wal push %p' with the same --repo and --cluster, and check pg_stat_archiver for failures");
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 1.5, 1000);
  }
}
