import { composeStreams } from '../stream/compose.js';
import { RepositoryError, ServiceError } from '../errors.js';
import { withConnection, describeEndpoint, type PgEndpoint } from '../postgres/connection.js';
import { readServerInfo, type ServerInfo } from '../postgres/server-info.js';
import { startBaseBackup } from '../postgres/basebackup.js';
import { parseBackupLabel, parseBackupManifestWalRanges } from '../postgres/backup-label.js';
import { parseLsn } from '../postgres/lsn.js';
import { formatWalSegmentName, parseWalSegmentName, walSegmentForLsn, walSegmentRange } from '../postgres/wal-file-name.js';
import { ensureClusterInfo } from '../repo/cluster-info.js';
import { acquireLock } from '../repo/lock.js';
import { newBackupId, type RepositoryLayout } from '../repo/layout.js';
import { serializeManifest, type BackupManifest } from '../repo/manifest.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ByteCounterStage, ChecksumStage } from '../stream/checksum.js';
import { TarEntrySniffer } from '../stream/tar-sniffer.js';
import { zstdCompressStage } from '../stream/zstd.js';
import { createProgress } from '../stream/progress.js';
import { PGDR_VERSION } from '../version.js';

export interface BackupOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
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

  const lock = await acquireLock(store, layout, 'backup', 'a base backup', { waitMs: options.lockWaitMs });
  try {
    const backupId = await freshBackupId(store, layout, now);
    log(`backup ${backupId}: streaming pg_basebackup from ${source} into ${store.location}`);
    const startTime = now();
    const streamed = await streamBaseBackup(options, backupId, server, lock.lost);
    const stopTime = now();

    const label = parseBackupLabel(streamed.backupLabel);
    const ranges = parseBackupManifestWalRanges(streamed.backupManifest);
    const lastRange = ranges[ranges.length - 1]!;
    const stopWal = formatWalSegmentName(walSegmentForLsn(parseLsn(lastRange.endLsn), lastRange.timeline, server.walSegmentSize));
    log(`backup ${backupId}: ${streamed.bytes} bytes read, ${streamed.storedBytes} stored; waiting for WAL ${label.startWal}..${stopWal} in the repository`);
    if (options.finishWal) await options.finishWal();
    await Promise.race([waitForArchivedWal(store, layout, label.startWal, stopWal, server.walSegmentSize, options.archiveWaitMs), lock.lost]);

    const manifest: BackupManifest = {
      format: 1,
      backupId,
      cluster: layout.cluster,
      type: 'full',
      startTime: startTime.toISOString(),
      stopTime: stopTime.toISOString(),
      startLsn: label.startLsn,
      stopLsn: lastRange.endLsn,
      timeline: lastRange.timeline,
      startWal: label.startWal,
      stopWal,
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
    // The commit: before this put the backup does not exist for restore.
    await store.put(layout.backupManifest(backupId), { kind: 'buffer', data: serializeManifest(manifest) }, { ifNoneMatch: true });
    log(`backup ${backupId}: complete (timeline ${manifest.timeline}, ${manifest.startLsn}..${manifest.stopLsn})`);
    return { manifest };
  } finally {
    await lock.release().catch(() => undefined);
  }
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
  backupLabel: string;
  backupManifest: string;
}

async function streamBaseBackup(
  options: BackupOptions,
  backupId: string,
  server: ServerInfo,
  lockLost: Promise<never>,
): Promise<StreamedBackup> {
  const { store, layout } = options;
  const progress = createProgress(`backup ${backupId}`, server.estimatedBytes, options.progress);
  const basebackup = startBaseBackup({ endpoint: options.endpoint, label: `pgdr ${backupId}`,
    archiveWaitTimeoutMs: options.archiveWaitMs,
    maxRate: options.maxRate,
  });
  const sniffer = new TarEntrySniffer(new Set(['backup_label', 'backup_manifest']));
  const counter = new ByteCounterStage((bytes) => progress.update(bytes));
  const compress = zstdCompressStage({ level: options.compressLevel, threads: options.compressThreads });
  const checksum = new ChecksumStage();

  // Whichever part fails first is the cause; the others then fail only because we tore the pipeline down.
  let firstError: unknown;
  const fail = (err: unknown): void => {
    firstError ??= err;
    basebackup.kill();
    source.destroy();
  };
  // compose (not pipeline) because the store's put is the consumer: pipeline would end the chain at `checksum`
  // and tear it down before the upload has read its last bytes.
  const source = composeStreams(basebackup.tar, sniffer, counter, compress, checksum);
  source.on('error', (err: Error) => fail(err));
  const uploaded = store
    .put(layout.backupObject(backupId, DATA_OBJECT), { kind: 'stream', open: () => source, oneShot: true })
    .catch((err) => fail(err));
  const exited = basebackup.wait().catch((err) => fail(err));
  // Losing the lock means the repository stopped answering (or another pgdr took over): stop streaming.
  const heartbeat = lockLost.catch((err) => fail(err));
  await Promise.race([Promise.all([uploaded, exited]), heartbeat]);
  if (firstError !== undefined) await Promise.all([uploaded, exited]);
  progress.stop();
  if (firstError !== undefined) {
    await store.delete([layout.backupObject(backupId, DATA_OBJECT)]).catch(() => undefined);
    throw firstError;
  }
  const backupLabel = sniffer.captured.get('backup_label');
  const backupManifest = sniffer.captured.get('backup_manifest');
  if (!backupLabel || !backupManifest) {
    throw new ServiceError('pg_basebackup output had no backup_label or backup_manifest', 'use pg_basebackup 15 or newer; do not pass --no-manifest');
  }
  return {
    bytes: counter.bytes,
    storedBytes: checksum.bytes,
    sha256: checksum.sha256,
    backupLabel: backupLabel.toString('utf8'),
    backupManifest: backupManifest.toString('utf8'),
  };
}

/** Every segment from the backup's start to its stop must be in the repository before the backup is committed. */
async function waitForArchivedWal(
  store: ObjectStore,
  layout: RepositoryLayout,
  startWal: string,
  stopWal: string,
  segmentSize: number,
  waitMs: number,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  const needed = [...walSegmentRange(parseWalSegmentName(startWal, segmentSize), parseWalSegmentName(stopWal, segmentSize), segmentSize)].map(
    formatWalSegmentName,
  );
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
