import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RepositoryError, ServiceError, VerificationError } from '../errors.js';
import { startZstdTarUnpack } from '../process/unpack.js';
import { mergeAutoConf } from '../postgres/recovery-config.js';
import { describeRecoveryTarget, type RecoveryTarget } from '../postgres/recovery-target.js';
import { livePostmasterPid, startLocalServer, waitForPromotion, type PromotionResult } from '../postgres/local-server.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { readRestorePoint } from '../repo/restore-points.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { BackupManifest, BackupObject } from '../repo/manifest.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { ChecksumStage, sha256Hex } from '../stream/checksum.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { createProgress } from '../stream/progress.js';
import { planRestore } from './plan.js';
import { planTablespaceTargets, renderTablespaceMap, type TablespaceMapping } from './tablespaces.js';
import { stageRestoreDirectory, swapRestoreDirectories, type StagedDirectory } from './target-directory.js';

export interface RestoreOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  pgdata: string;
  target: RecoveryTarget;
  backupId?: string;
  force: boolean;
  /** The restore_command line, built by the caller so it reaches this same repository. */
  restoreCommand: string;
  archiveMode: 'preserve' | 'off';
  port?: number;
  start: boolean;
  startTimeoutMs: number;
  /** Role `--start` connects as to watch recovery; libpq's default (PGUSER, the OS user) when unset. */
  pgUser?: string;
  /** Where tablespaces go instead of their old locations (`--tablespace-map OLD=NEW`). */
  tablespaceMap?: readonly TablespaceMapping[];
  progress: boolean;
  log: (message: string) => void;
}

export interface RestoreResult {
  backupId: string;
  target: string;
  pgdata: string;
  reason: string;
  /** Where each tablespace was restored. */
  tablespaces: { oid: number; name: string | null; location: string }[];
  started: boolean;
  promoted?: PromotionResult;
}

/**
 * Point-in-time restore: pick the backup (pure planner), unpack it with its checksum verified, then write the
 * recovery settings. The settings and recovery.signal are written last, after every object checked out, so a
 * data directory that failed half-way can never start recovery from a damaged copy; pgdr also removes what it
 * unpacked on failure.
 */
export async function executeRestore(options: RestoreOptions): Promise<RestoreResult> {
  const { store, layout, pgdata, log } = options;
  const catalog = await readBackupCatalog(store, layout);
  const restorePoint = options.target.kind === 'name' ? await readRestorePoint(store, layout, options.target.name) : null;
  const plan = planRestore(catalog.complete, options.target, {
    backupId: options.backupId,
    cluster: layout.cluster,
    ...(restorePoint === null ? {} : { restorePoint }),
  });
  const backup = plan.backup;
  log(`restore: ${plan.reason}`);

  const tablespaces = planTablespaceTargets(backup.objects, options.tablespaceMap ?? []);
  const sizeOf = (wanted: (o: BackupObject) => boolean) => backup.objects.filter(wanted).reduce((sum, o) => sum + o.bytes, 0);
  const staged = await stageRestoreDirectory(pgdata, {
    force: options.force,
    what: 'data directory',
    expectedBytes: sizeOf((o) => o.tablespace === undefined),
    refuseReplace: refuseToReplaceDataDirectory,
    refuseHint: 'check the path: --force replaces only a PostgreSQL data directory, and only while no server runs in it',
    log,
  });
  const stagedTablespaces: StagedDirectory[] = [];
  try {
    for (const ts of tablespaces) {
      stagedTablespaces.push(
        await stageRestoreDirectory(ts.to, {
          force: options.force,
          what: `tablespace ${ts.name ?? ts.oid}`,
          expectedBytes: ts.object.bytes,
          refuseReplace: (location, entries) => refuseToReplaceTablespace(location, entries, staged.target),
          refuseHint: `without a mapping a tablespace returns to its old location, which must be empty: map it elsewhere with --tablespace-map ${ts.from}=/new/dir`,
          log,
        }),
      );
    }
    if (staged.replacing) log(`restore: --force: ${staged.target} is replaced only once the restored copy is complete; until then it stays as it is`);
    for (const object of backup.objects) {
      const ts = tablespaces.findIndex((t) => t.object === object);
      const directory = ts === -1 ? staged.staging : stagedTablespaces[ts]!.staging;
      if (object.encoding === 'zstd') await restoreFile(options, backup, object, staged.staging);
      else await unpackObject(options, backup, object, directory);
    }
    if (tablespaces.length > 0) {
      // PostgreSQL makes the pg_tblspc links from this file when it starts: it must name where they are now.
      await writeFile(join(staged.staging, 'tablespace_map'), renderTablespaceMap(tablespaces), { mode: 0o600 });
      for (const ts of tablespaces) log(`restore: tablespace ${ts.name ?? ts.oid} (${ts.from}) into ${ts.to}`);
    }
    await removeIfPresent(join(staged.staging, 'postmaster.pid'));
    // A backup taken from a standby carries standby.signal; this restore recovers to a target and promotes.
    await removeIfPresent(join(staged.staging, 'standby.signal'));
    const autoConfPath = join(staged.staging, 'postgresql.auto.conf');
    const existing = existsSync(autoConfPath) ? await readFile(autoConfPath, 'utf8') : '';
    await writeFile(
      autoConfPath,
      mergeAutoConf(existing, {
        restoreCommand: options.restoreCommand,
        target: options.target,
        archiveMode: options.archiveMode,
        port: options.port,
        comment: `pgdr restore of backup ${backup.backupId} to ${describeRecoveryTarget(options.target)}, ${new Date().toISOString()}`,
      }),
      { mode: 0o600 },
    );
    await writeFile(join(staged.staging, 'recovery.signal'), '', { mode: 0o600 });
    // PostgreSQL refuses a data directory (or tablespace) others can read.
    for (const dir of [staged, ...stagedTablespaces]) await chmod(dir.staging, 0o700);
    // Tablespaces first: the data directory is the last thing to appear in its place.
    await swapRestoreDirectories([...stagedTablespaces, staged], log);
  } catch (err) {
    for (const dir of [staged, ...stagedTablespaces]) await dir.discard().catch(() => undefined);
    throw err;
  }
  log(`restore: backup ${backup.backupId} unpacked into ${pgdata} with recovery settings for ${describeRecoveryTarget(options.target)}`);

  const result: RestoreResult = {
    backupId: backup.backupId,
    target: describeRecoveryTarget(options.target),
    pgdata,
    reason: plan.reason,
    tablespaces: tablespaces.map((t) => ({ oid: t.oid, name: t.name ?? null, location: t.to })),
    started: false,
  };
  if (options.start) {
    const missing = ['postgresql.conf', 'pg_hba.conf'].filter((f) => !existsSync(join(pgdata, f)));
    if (missing.length > 0) {
      throw new ServiceError(
        `the backup holds no ${missing.join(' or ')} (the server kept its configuration outside the data directory, as Debian does), so pgdr cannot start it`,
        `the data directory is restored with its recovery settings: copy ${missing.join(' and ')} from /etc/postgresql/<version>/<cluster>/ into ${pgdata}, then run pg_ctl -D ${pgdata} start`,
      );
    }
    const logFile = join(pgdata, 'pgdr-restore.log');
    log(`restore: starting PostgreSQL (log: ${logFile}) and waiting for recovery to reach the target`);
    const timeoutSeconds = Math.max(Math.ceil(options.startTimeoutMs / 1000), 10);
    await startLocalServer(pgdata, logFile, timeoutSeconds);
    result.started = true;
    result.promoted = await waitForPromotion(pgdata, logFile, options.startTimeoutMs, options.pgUser);
    log(`restore: recovery finished; the server promoted to timeline ${result.promoted.timeline} at ${result.promoted.lsn}`);
  }
  return result;
}

/**
 * A non-empty tablespace location is replaced only with --force, and only when it is what the data directory being
 * replaced uses: PostgreSQL's version directories (PG_15_...) and nothing else, linked from that data directory's
 * pg_tblspc. Anything else there is someone's data.
 */
function refuseToReplaceTablespace(location: string, entries: readonly string[], pgdata: string): string | undefined {
  const foreign = entries.filter((e) => !/^PG_\d+_\d+$/.test(e));
  if (foreign.length > 0) return `it holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}, which is not a PostgreSQL tablespace`;
  let links: string[] = [];
  try {
    links = readdirSync(join(pgdata, 'pg_tblspc')).map((entry) => {
      try {
        return realpathSync(join(pgdata, 'pg_tblspc', entry));
      } catch {
        return '';
      }
    });
  } catch {
    // no data directory being replaced: nothing links to the location
  }
  if (!links.includes(realpathSync(location))) return `no tablespace of the data directory being replaced (${pgdata}) lives there`;
  return undefined;
}

/** Why `--force` must not replace this directory, or undefined when it may. */
function refuseToReplaceDataDirectory(target: string, entries: readonly string[]): string | undefined {
  if (!entries.includes('PG_VERSION')) {
    return 'it holds no PG_VERSION, so it is not a PostgreSQL data directory (a mistyped path would lose whatever it holds)';
  }
  const pid = livePostmasterPid(target);
  if (pid !== undefined) return `a PostgreSQL server (pid ${pid}) is running in it; stop it first (pg_ctl -D ${target} stop)`;
  return undefined;
}

/** A plain file (PostgreSQL's backup_manifest): checked, decompressed and written into the data directory. */
async function restoreFile(options: RestoreOptions, backup: BackupManifest, object: BackupObject, directory: string): Promise<void> {
  const key = options.layout.backupObject(backup.backupId, object.name);
  const untouched = `${options.pgdata} was left as it was`;
  const stored = await options.store.getBuffer(key).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError) {
      throw new RepositoryError(`backup ${backup.backupId} is missing its object ${object.name}; ${untouched}`, 'restore another backup with --backup-id, and run pgdr verify');
    }
    throw err;
  });
  if (sha256Hex(stored) !== object.sha256) throw checksumFailure(backup, object, sha256Hex(stored), untouched);
  if (object.file === undefined) throw new VerificationError(`backup ${backup.backupId} object ${object.name} names no file to restore`, 'the manifest is damaged or from a newer pgdr; restore another backup with --backup-id');
  await writeFile(join(directory, object.file), await zstdDecompressBuffer(stored), { mode: 0o600 });
}

async function removeIfPresent(path: string): Promise<void> {
  await rm(path, { force: true });
}

async function sha256OfObject(store: ObjectStore, key: string): Promise<string> {
  const checksum = new ChecksumStage();
  await pipeline(await store.get(key), checksum, new Writable({ write: (_chunk, _enc, done) => done() }));
  return checksum.sha256;
}

/**
 * Repository → sha256 (Node) → zstd -d → tar -x into `directory` (joined by a kernel pipe), overlapping in one
 * pipeline. A failure of any kind leaves only the staging directory, which the caller discards.
 */
async function unpackObject(options: RestoreOptions, backup: BackupManifest, object: BackupObject, directory: string): Promise<void> {
  const key = options.layout.backupObject(backup.backupId, object.name);
  const untouched = `${options.pgdata} was left as it was`;
  const head = await options.store.head(key);
  if (head === null) {
    throw new RepositoryError(
      `backup ${backup.backupId} is missing its object ${object.name}; ${untouched}`,
      'restore another backup with --backup-id, and run pgdr verify',
    );
  }
  if (head.size !== object.storedBytes) {
    throw new VerificationError(
      `backup ${backup.backupId} object ${object.name} has ${head.size} bytes, the manifest says ${object.storedBytes}; ${untouched}`,
      'the stored copy is damaged: restore another backup with --backup-id, and run pgdr verify',
    );
  }
  const progress = createProgress(`restore ${backup.backupId}`, object.storedBytes, options.progress);
  const checksum = new ChecksumStage();
  checksum.on('data', () => progress.update(checksum.bytes));
  const unpack = startZstdTarUnpack(directory);
  const source = await options.store.get(key);
  let streamError: unknown;
  try {
    await pipeline(source, checksum, unpack.stdin);
  } catch (err) {
    streamError = err;
    unpack.kill();
  }
  const exit = await unpack.wait().then(
    () => undefined,
    (err: unknown) => err,
  );
  // zstd failing (a damaged frame) makes tar fail too, or closes the pipe under us: either way it is the stream
  // error that counts, so a failed exit is treated as one.
  streamError ??= exit;
  progress.stop();
  const digestReady = streamError === undefined || checksum.writableFinished;
  if (digestReady && checksum.bytes === object.storedBytes && checksum.sha256 !== object.sha256) {
    throw checksumFailure(backup, object, checksum.sha256, untouched);
  }
  const unsafe = unpack.unsafeMembers();
  if (unsafe.length > 0) {
    throw new VerificationError(
      `backup ${backup.backupId} object ${object.name} holds ${unsafe.length} member name${unsafe.length === 1 ? '' : 's'} that could write outside the data directory: ` +
        `${unsafe.slice(0, 5).join(', ')}${unsafe.length > 5 ? `, and ${unsafe.length - 5} more` : ''}; nothing was written outside the staging directory and ${untouched}`,
      'PostgreSQL never writes such names: the object or its manifest was tampered with; restore another backup with --backup-id and investigate the repository',
      streamError,
    );
  }
  if (streamError !== undefined) {
    // A damaged object usually breaks zstd before the whole object went through the hash: hash it again on its
    // own to tell a damaged copy (checksum) from a transport or disk failure.
    const actual = await sha256OfObject(options.store, key).catch(() => undefined);
    if (actual !== undefined && actual !== object.sha256) throw checksumFailure(backup, object, actual, untouched, streamError);
    throw streamError;
  }
}

function checksumFailure(backup: BackupManifest, object: BackupObject, actual: string, untouched: string, cause?: unknown): VerificationError {
  return new VerificationError(
    `backup ${backup.backupId} object ${object.name} failed its checksum (sha256 ${actual.slice(0, 16)}…, manifest ${object.sha256.slice(0, 16)}…); ${untouched}`,
    'the stored copy is damaged: restore another backup with --backup-id, and run pgdr verify',
    cause,
  );
}
