import { composeStreams } from '../stream/compose.js';
import { RepositoryError, ServiceError } from '../errors.js';
import { withConnection, describeEndpoint, type PgEndpoint } from '../postgres/connection.js';
import { readCurrentWalFile, readServerInfo, type ServerInfo } from '../postgres/server-info.js';
import { startBaseBackup, startCompressedBaseBackup, type ZstdCounts } from '../postgres/basebackup.js';
import { parseBackupLabel, parseBackupManifestWalRanges, stopRange, type BackupHistory } from '../postgres/backup-label.js';
import { parseLsn } from '../postgres/lsn.js';
import { parseTimelineHistory, walSegmentsOnPath } from '../postgres/timeline-history.js';
import { formatWalSegmentName, historyFileName, parseWalSegmentName, walSegmentForLsn, walSegmentRange } from '../postgres/wal-file-name.js';
import { ensureClusterInfo } from '../repo/cluster-info.js';
import type { Locker } from '../repo/lock.js';
import { newBackupId, type RepositoryLayout } from '../repo/layout.js';
import { serializeManifest, type BackupManifest } from '../repo/manifest.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ByteCounterStage, ChecksumStage } from '../stream/checksum.js';
import { TarEntrySniffer } from '../stream/tar-sniffer.js';
import { zstdCompressStage, zstdDecompressBuffer } from '../stream/zstd.js';
import { createProgress, type ProgressReporter } from '../stream/progress.js';
import { PGDR_VERSION } from '../version.js';
import { failpoint } from '../process/failpoint.js';
import { watchArchiveWait } from './archive-wait.js';
import { findBackupHistory } from './backup-history.js';

export interface BackupOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** Takes the cluster's `backup` lock (in the repository, or in etcd on a store without conditional writes). */
  lock: Locker;
  endpoint: PgEndpoint;
  compressLevel: number;
  compressThreads: number;
  /** Wait this long for a running backup's lock before failing. */
  lockWaitMs: number;
  /** How long the WAL up to the backup's end may take to reach the repository. */
  archiveWaitMs: number;
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

const DATA_OBJECT = 'base.tar.zst';

/**
 * A full base backup, committed last: the data object streams into the repository, then pgdr checks that the WAL
 * the backup needs is archived there, and only then writes manifest.json. A crash or error anywhere before that
 * leaves objects with no manifest, which `backup list` shows as incomplete and restore never uses.
 */
export async function takeBackup(options: BackupOptions): Promise<BackupResult> {
  const { store, layout, log } = options;
  const now = options.now ?? (() => new Date());
  const source = describeEndpoint(options.endpoint);

  const server = await withConnection(options.endpoint, readServerInfo);
  checkServerCanBeBackedUp(server, source, options.allowStandby === true);
  await ensureClusterInfo(store, layout, { systemIdentifier: server.systemIdentifier, pgMajor: server.major }, now());

  const lock = await options.lock('backup', 'a base backup', { waitMs: options.lockWaitMs });
  try {
    const backupId = await freshBackupId(store, layout, now);
    log(`backup ${backupId}: streaming pg_basebackup from ${source} into ${store.location}`);
    const startTime = now();
    const label = `pgdr ${backupId}`;
    // A primary archives a backup history file naming the backup's start and stop, so its tar can go from
    // pg_basebackup to zstd without passing through Node. A standby archives none, and its backup can end on a
    // later timeline than it began (it may follow a new leader meanwhile): only the tar's backup_manifest says so.
    const walBefore = server.inRecovery ? undefined : await withConnection(options.endpoint, readCurrentWalFile);
    const archiveWait = watchArchiveWait(options.endpoint, label, { waitMs: options.archiveWaitMs, log });
    // Streaming stops when the repository stops answering (the lock's heartbeat) or archiving never ends the backup.
    const interrupted = Promise.race([lock.lost, archiveWait.stuck]);
    interrupted.catch(() => undefined);
    const job = { options, backupId, label, server, interrupted, progress: createProgress(`backup ${backupId}`, server.estimatedBytes, options.progress) };
    let streamed: StreamedBackup;
    try {
      streamed = server.inRecovery ? await streamBackupThroughNode(job) : await streamBackupCompressed(job);
    } finally {
      archiveWait.stop();
    }
    const stopTime = now();

    await failpoint('backup:before-wal-wait', backupId);
    if (options.finishWal) await options.finishWal();
    let position: BackupPosition;
    if (streamed.tarEntries) {
      position = positionFromTar(streamed.tarEntries, server.walSegmentSize);
      log(`backup ${backupId}: ${streamed.bytes} bytes read, ${streamed.storedBytes} stored; waiting for WAL ${position.startWal}..${position.stopWal} in the repository`);
    } else {
      const walAfter = await withConnection(options.endpoint, readCurrentWalFile);
      log(`backup ${backupId}: ${streamed.bytes} bytes read, ${streamed.storedBytes} stored; reading its backup history file from the repository`);
      const history = await Promise.race([
        findBackupHistory({
          store,
          layout,
          label,
          from: parseWalSegmentName(walBefore!, server.walSegmentSize),
          to: parseWalSegmentName(walAfter, server.walSegmentSize),
          segmentSize: server.walSegmentSize,
          waitMs: options.archiveWaitMs,
        }),
        lock.lost,
      ]);
      position = positionFromHistory(history, label);
      log(`backup ${backupId}: waiting for WAL ${position.startWal}..${position.stopWal} in the repository`);
    }
    await Promise.race([
      (async () => {
        const needed = await walNeededByBackup(store, layout, position, server.walSegmentSize, options.archiveWaitMs);
        await waitForArchivedWal(store, layout, needed, options.archiveWaitMs);
      })(),
      lock.lost,
    ]);

    const manifest: BackupManifest = {
      format: 1,
      backupId,
      cluster: layout.cluster,
      type: 'full',
      startTime: startTime.toISOString(),
      stopTime: stopTime.toISOString(),
      startLsn: position.startLsn,
      stopLsn: position.stopLsn,
      timeline: position.timeline,
      startWal: position.startWal,
      stopWal: position.stopWal,
      systemIdentifier: server.systemIdentifier,
      pgVersion: server.version,
      pgVersionNum: server.versionNum,
      source,
      ...(options.sourceMember !== undefined ? { sourceMember: options.sourceMember } : {}),
      compression: { algorithm: 'zstd', level: options.compressLevel },
      bytes: streamed.bytes,
      storedBytes: streamed.storedBytes,
      objects: [
        { name: DATA_OBJECT, bytes: streamed.bytes, storedBytes: streamed.storedBytes, sha256: streamed.sha256, encoding: 'tar+zstd' },
      ],
      pgdrVersion: PGDR_VERSION,
    };
    await failpoint('backup:before-manifest', backupId);
    // The commit: before this put the backup does not exist for restore.
    await store.put(layout.backupManifest(backupId), { kind: 'buffer', data: serializeManifest(manifest) }, { ifNoneMatch: true });
    log(`backup ${backupId}: complete (timeline ${manifest.timeline}, ${manifest.startLsn}..${manifest.stopLsn})`);
    return { manifest };
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/** Where the backup starts and stops in WAL; the manifest's timeline is the stop's. */
interface BackupPosition {
  startLsn: string;
  startWal: string;
  stopLsn: string;
  stopWal: string;
  timeline: number;
}

function positionFromHistory(history: BackupHistory, label: string): BackupPosition {
  if (history.label !== label || history.stopTimeline !== history.startTimeline) {
    throw new ServiceError(
      `the backup history file of "${label}" names label "${history.label}", timelines ${history.startTimeline}..${history.stopTimeline}`,
      'a primary cannot change timeline during a backup: check that nothing else archives into this repository under the same cluster name',
    );
  }
  return { startLsn: history.startLsn, startWal: history.startWal, stopLsn: history.stopLsn, stopWal: history.stopWal, timeline: history.stopTimeline };
}

function positionFromTar(entries: { backupLabel: string; backupManifest: string }, segmentSize: number): BackupPosition {
  const label = parseBackupLabel(entries.backupLabel);
  const stop = stopRange(parseBackupManifestWalRanges(entries.backupManifest));
  const stopWal = formatWalSegmentName(walSegmentForLsn(parseLsn(stop.endLsn), stop.timeline, segmentSize));
  return { startLsn: label.startLsn, startWal: label.startWal, stopLsn: stop.endLsn, stopWal, timeline: stop.timeline };
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

interface StreamedBackup {
  bytes: number;
  storedBytes: number;
  sha256: string;
  /** backup_label and backup_manifest, when the tar passed through Node. */
  tarEntries?: { backupLabel: string; backupManifest: string };
}

/** One backup being streamed: what both paths below need. */
interface BackupJob {
  options: BackupOptions;
  backupId: string;
  /** pg_basebackup --label, and the LABEL of the backup history file. */
  label: string;
  server: ServerInfo;
  /** Rejects when the backup must stop: the lock was lost, or WAL archiving does not end it. */
  interrupted: Promise<never>;
  progress: ProgressReporter;
}

/** The primary's path: `pg_basebackup | zstd` by a kernel pipe; Node hashes and stores the frames. */
async function streamBackupCompressed(job: BackupJob): Promise<StreamedBackup> {
  const { options, backupId, label, server, interrupted, progress } = job;
  const basebackup = startCompressedBaseBackup({
    endpoint: options.endpoint,
    label,
    maxRate: options.maxRate,
    ...(progress.active ? { onProgress: (done: number) => progress.update(done) } : {}),
    compress: { level: options.compressLevel, threads: options.compressThreads },
  });
  let counts: ZstdCounts | undefined;
  const stored = await storeBackupStream(options, backupId, basebackup.output, {
    wait: async () => {
      counts = await basebackup.wait();
    },
    kill: () => basebackup.kill(),
  }, interrupted, server.estimatedBytes).finally(() => progress.stop());
  if (counts && counts.outputBytes !== stored.storedBytes) {
    await deleteDataObject(options, backupId);
    throw new ServiceError(
      `zstd wrote ${counts.outputBytes} bytes but ${stored.storedBytes} reached pgdr`,
      'retry the backup; if it happens again, report it with the zstd version (zstd --version)',
    );
  }
  if (!counts) options.log(`backup ${backupId}: zstd did not report the tar's size; recording the server's estimate`);
  return { ...stored, bytes: counts?.inputBytes ?? server.estimatedBytes };
}

/** The standby's path: the tar passes through Node, which reads backup_label and backup_manifest on the way. */
async function streamBackupThroughNode(job: BackupJob): Promise<StreamedBackup> {
  const { options, backupId, label, server, interrupted, progress } = job;
  const basebackup = startBaseBackup({ endpoint: options.endpoint, label, maxRate: options.maxRate });
  const sniffer = new TarEntrySniffer(new Set(['backup_label', 'backup_manifest']));
  const counter = new ByteCounterStage((bytes) => progress.update(bytes));
  const compress = zstdCompressStage({ level: options.compressLevel, threads: options.compressThreads });
  const stored = await storeBackupStream(options, backupId, composeStreams(basebackup.tar, sniffer, counter, compress), basebackup, interrupted, server.estimatedBytes).finally(() =>
    progress.stop(),
  );
  const backupLabel = sniffer.captured.get('backup_label');
  const backupManifest = sniffer.captured.get('backup_manifest');
  if (!backupLabel || !backupManifest) {
    await deleteDataObject(options, backupId);
    throw new ServiceError('pg_basebackup output had no backup_label or backup_manifest', 'use pg_basebackup 15 or newer; do not pass --no-manifest');
  }
  return {
    ...stored,
    bytes: counter.bytes,
    tarEntries: { backupLabel: backupLabel.toString('utf8'), backupManifest: backupManifest.toString('utf8') },
  };
}

/**
 * Stores the compressed stream as the backup's data object, hashing it on the way, while `producer` (the
 * processes writing it) runs. Whichever part fails first is the cause; the others then fail only because the
 * pipeline was torn down. On any failure the partial object is deleted (a leftover would only be "incomplete").
 */
async function storeBackupStream(
  options: BackupOptions,
  backupId: string,
  compressed: NodeJS.ReadableStream,
  producer: { wait(): Promise<void>; kill(): void },
  interrupted: Promise<never>,
  expectedBytes: number,
): Promise<{ storedBytes: number; sha256: string }> {
  const { store, layout } = options;
  const checksum = new ChecksumStage();
  let firstError: unknown;
  const fail = (err: unknown): void => {
    firstError ??= err;
    producer.kill();
    source.destroy();
  };
  // compose (not pipeline) because the store's put is the consumer: pipeline would end the chain at `checksum`
  // and tear it down before the upload has read its last bytes.
  const source = composeStreams(compressed, checksum);
  source.on('error', (err: Error) => fail(err));
  const uploaded = store
    // The uncompressed estimate bounds the compressed size: it sizes the S3 parts for large databases.
    .put(layout.backupObject(backupId, DATA_OBJECT), { kind: 'stream', open: () => source, oneShot: true }, { expectedBytes })
    .catch((err) => fail(err));
  const exited = producer.wait().catch((err) => fail(err));
  // Losing the lock means the repository stopped answering (or another pgdr took over); an archive wait that never
  // ends means PostgreSQL is not archiving: either way, stop streaming.
  const heartbeat = interrupted.catch((err) => fail(err));
  await Promise.race([Promise.all([uploaded, exited]), heartbeat]);
  if (firstError !== undefined) await Promise.all([uploaded, exited]);
  if (firstError !== undefined) {
    await deleteDataObject(options, backupId);
    throw firstError;
  }
  return { storedBytes: checksum.bytes, sha256: checksum.sha256 };
}

async function deleteDataObject(options: BackupOptions, backupId: string): Promise<void> {
  await options.store.delete([options.layout.backupObject(backupId, DATA_OBJECT)]).catch(() => undefined);
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
): Promise<string[]> {
  const start = parseWalSegmentName(position.startWal, segmentSize);
  if (start.timeline === position.timeline) {
    return [...walSegmentRange(start, parseWalSegmentName(position.stopWal, segmentSize), segmentSize)].map(formatWalSegmentName);
  }
  const historyName = historyFileName(position.timeline);
  await waitForArchivedWal(store, layout, [historyName], waitMs);
  const text = (await zstdDecompressBuffer(await store.getBuffer(layout.walObject(historyName)))).toString('utf8');
  const history = parseTimelineHistory(position.timeline, text);
  return walSegmentsOnPath(history, parseLsn(position.startLsn), parseLsn(position.stopLsn), segmentSize).map(formatWalSegmentName);
}

/** Every named WAL file must be in the repository before the backup is committed. */
async function waitForArchivedWal(store: ObjectStore, layout: RepositoryLayout, needed: readonly string[], waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const missing: string[] = [];
    for (const name of needed) {
      if ((await store.head(layout.walObject(name))) === null) missing.push(name);
    }
    if (missing.length === 0) return;
    if (Date.now() >= deadline) {
      throw new RepositoryError(
        `WAL ${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''} needed by this backup did not reach ${store.location} within ${Math.round(waitMs / 1000)} s`,
        "set archive_command = 'pgdr wal push %p' with the same --repo and --cluster, and check pg_stat_archiver for failures",
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
