import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { syncFileSystem } from '../os/sync.js';
import { failpoint } from '../process/failpoint.js';
import { RepositoryError, ServiceError, VerificationError } from '../errors.js';
import { mergeAutoConf } from '../postgres/recovery-config.js';
import { describeRecoveryTarget, type RecoveryTarget } from '../postgres/recovery-target.js';
import { livePostmasterPid, startLocalServer, waitForPromotion, type PromotionResult } from '../postgres/local-server.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { readRestorePoint } from '../repo/restore-points.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { restoreChain, type BackupManifest, type BackupObject } from '../repo/manifest.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { sha256Hex } from '../stream/checksum.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { createProgress } from '../stream/progress.js';
import { planRestore } from './plan.js';
import { planTablespaceTargets, renderTablespaceMap, type TablespaceMapping } from './tablespaces.js';
import { stageRestoreDirectory, swapRestoreDirectories, type StagedDirectory } from './target-directory.js';
import { checkDeltaTarget, CONTROL_FILE, scanForDelta } from './delta.js';
import { planFilesRestore } from './files-plan.js';
import { runFilesRestore } from './files-restore.js';
import { mapConcurrently } from '../repo/concurrent-reads.js';
import { decodeStored, readFileList } from '../repo/file-list-store.js';
import { checkIdentityFor } from '../stream/age.js';
import { checksumFailure, unpackObject } from './unpack-object.js';

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
  /** Bring an existing data directory of the same cluster up to date, rewriting only files that differ. */
  delta?: boolean;
  /** Objects unpacked (and files compared) at once. */
  jobs: number;
  /** age identity file for encrypted backups: checked against their recipients before anything is written. */
  identityFile?: string;
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
  const chain = backup.format === 2 ? chainOf(catalog.complete, backup) : [backup];
  // Before anything is staged: a missing or wrong identity is a usage error, and the target stays as it was.
  await checkIdentityForChain(chain, options.identityFile);
  const identityFor = (backupId: string): string | undefined => (chain.find((m) => m.backupId === backupId)?.encryption === undefined ? undefined : options.identityFile);
  const files = backup.format === 2 ? { chain, list: await readFileList(store, layout, backup, identityFor(backup.backupId)) } : undefined;
  const restoredBytes = (tablespace: number | undefined, fallback: number) =>
    files === undefined ? fallback : files.list.reduce((sum, e) => sum + (e.type === 'file' && e.tablespace === tablespace ? e.size : 0), 0);
  const inPlace = options.delta === true && files !== undefined && (await holdsDataDirectory(pgdata));
  if (options.delta === true && !inPlace && files === undefined && (await holdsDataDirectory(pgdata))) {
    log(`restore --delta: backup ${backup.backupId} is a basebackup-engine backup, which lists no files to compare: it is restored whole and replaces ${pgdata}`);
  }
  if (inPlace) await checkDeltaTarget(pgdata, backup.systemIdentifier, Math.floor(backup.pgVersionNum / 10000));
  const staged = await stageRestoreDirectory(pgdata, {
    force: options.force || options.delta === true,
    inPlace,
    what: 'data directory',
    expectedBytes: restoredBytes(undefined, backup.objects.filter((o) => o.tablespace === undefined).reduce((sum, o) => sum + o.bytes, 0)),
    refuseReplace: refuseToReplaceDataDirectory,
    refuseHint: 'check the path: --force replaces only a PostgreSQL data directory, and only while no server runs in it',
    log,
  });
  const stagedTablespaces: StagedDirectory[] = [];
  try {
    for (const ts of tablespaces) {
      stagedTablespaces.push(
        await stageRestoreDirectory(ts.to, {
          force: options.force || options.delta === true,
          inPlace,
          what: `tablespace ${ts.name ?? ts.oid}`,
          expectedBytes: restoredBytes(ts.oid, ts.bytes),
          refuseReplace: (location, entries) => refuseToReplaceTablespace(location, entries, staged.target),
          refuseHint: `without a mapping a tablespace returns to its old location, which must be empty: map it elsewhere with --tablespace-map ${ts.from}=/new/dir`,
          log,
        }),
      );
    }
    if (staged.replacing && !inPlace) log(`restore: ${staged.target} is replaced only once the restored copy is complete; until then it stays as it is`);
    const roots = new Map<number, string>([[0, staged.staging], ...tablespaces.map((t, i) => [t.oid, stagedTablespaces[i]!.staging] as [number, string])]);
    const untouched = inPlace ? `${pgdata} is part way through a delta restore and will not start: run the same restore again` : `${pgdata} was left as it was`;
    const progress = createProgress(`restore ${backup.backupId}`, undefined, options.progress);
    let writeLast: (() => Promise<void>) | undefined;
    if (inPlace) {
      // Without pg_control the directory cannot start until the restore has written everything; the removal is made
      // durable before the first file changes.
      await rm(join(pgdata, CONTROL_FILE), { force: true });
      await syncFileSystem(pgdata);
    }
    try {
      if (files !== undefined) {
        const keep = inPlace ? (await scanForDelta(files.list, roots, options.jobs, log)).keep : new Set<string>();
        const plan = planFilesRestore(files.chain, files.list, keep, inPlace);
        progress.setTotal?.(plan.layers.reduce((sum, l) => sum + l.extracts.reduce((s, e) => s + e.object.storedBytes, 0), 0));
        log(`restore: writing ${plan.files.length} files (${plan.bytes} bytes) from ${plan.layers.map((l) => l.backupId).join(', ')} with ${options.jobs} worker${options.jobs === 1 ? '' : 's'}`);
        ({ writeLast } = await runFilesRestore({
          store,
          layout,
          plan,
          roots,
          jobs: options.jobs,
          untouched,
          ...(inPlace ? { last: { path: CONTROL_FILE } } : {}),
          onBytes: (b) => progress.update(b),
          log,
          identityFor,
        }));
        for (const object of backup.objects.filter((o) => o.file !== undefined)) await restoreFile(options, backup, object, staged.staging);
      } else {
        progress.setTotal?.(backup.objects.reduce((sum, o) => sum + o.storedBytes, 0));
        let done = 0;
        await mapConcurrently(backup.objects, options.jobs, async (object) => {
          if (object.encoding === 'zstd') return restoreFile(options, backup, object, staged.staging);
          const ts = object.tablespace === undefined ? -1 : tablespaces.findIndex((t) => t.oid === object.tablespace!.oid);
          let seen = 0;
          await unpackObject({
            store,
            layout,
            backupId: backup.backupId,
            object,
            directory: ts === -1 ? staged.staging : stagedTablespaces[ts]!.staging,
            untouched,
            ...(backup.encryption === undefined || options.identityFile === undefined ? {} : { identityFile: options.identityFile }),
            onBytes: (bytes) => {
              done += bytes - seen;
              seen = bytes;
              progress.update(done);
            },
          });
        });
      }
    } finally {
      progress.stop();
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
        inPlaceTablespaces: files?.list.some((e) => e.type === 'dir' && e.tablespace === undefined && /^pg_tblspc\/\d+$/.test(e.path)) ?? false,
        comment: `pgdr restore of backup ${backup.backupId} to ${describeRecoveryTarget(options.target)}, ${new Date().toISOString()}`,
      }),
      { mode: 0o600 },
    );
    await writeFile(join(staged.staging, 'recovery.signal'), '', { mode: 0o600 });
    // PostgreSQL refuses a data directory (or tablespace) others can read.
    for (const dir of [staged, ...stagedTablespaces]) await chmod(dir.staging, 0o700);
    // Durable before it counts: before the swap puts the copy in place, and in a delta restore before pg_control
    // (written last, after backup_label and the recovery settings) makes the directory startable.
    const syncAll = async (): Promise<void> => {
      for (const dir of [staged, ...stagedTablespaces]) await syncFileSystem(dir.staging);
    };
    await syncAll();
    if (writeLast !== undefined) {
      await failpoint('restore:before-control-file', pgdata);
      await writeLast();
      await syncAll();
    }
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
  // A restored directory that has not started yet names its tablespaces only in tablespace_map.
  const mapped = tablespaceMapLocations(pgdata);
  const here = realpathSync(location);
  if (!links.includes(here) && !mapped.includes(here)) return `no tablespace of the data directory being replaced (${pgdata}) lives there`;
  return undefined;
}

/** The locations a data directory's tablespace_map names (unescaped as PostgreSQL reads them), resolved. */
function tablespaceMapLocations(pgdata: string): string[] {
  let text: string;
  try {
    text = readFileSync(join(pgdata, 'tablespace_map'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => /^\d+ (.*)$/.exec(line)?.[1]?.replace(/\\(.)/g, '$1'))
    .filter((path): path is string => path !== undefined)
    .map((path) => {
      try {
        return realpathSync(path);
      } catch {
        return path;
      }
    });
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
  if (sha256Hex(stored) !== object.sha256) throw checksumFailure(backup.backupId, object, sha256Hex(stored), untouched);
  if (object.file === undefined) throw new VerificationError(`backup ${backup.backupId} object ${object.name} names no file to restore`, 'the manifest is damaged or from a newer pgdr; restore another backup with --backup-id');
  const frames = await decodeStored(stored, backup, options.identityFile, `backup ${backup.backupId} object ${object.name}`);
  await writeFile(join(directory, object.file), await zstdDecompressBuffer(frames), { mode: 0o600 });
}

/**
 * Whether `identityFile` can decrypt every encrypted backup a restore of `backup` reads (a files-engine backup's
 * whole chain): restore and `restore cluster` ask before they write anything. Throws UsageError (exit 2).
 */
export async function checkIdentityForBackup(complete: readonly BackupManifest[], backup: BackupManifest, identityFile: string | undefined): Promise<void> {
  await checkIdentityForChain(backup.format === 2 ? chainOf(complete, backup) : [backup], identityFile);
}

async function checkIdentityForChain(chain: readonly BackupManifest[], identityFile: string | undefined): Promise<void> {
  for (const manifest of chain) {
    if (manifest.encryption !== undefined) await checkIdentityFor(identityFile, manifest.encryption.recipients, `backup ${manifest.backupId}`);
  }
}

/** A files-engine backup's chain: every backup its file list refers to, oldest first, the backup itself last. */
function chainOf(complete: readonly BackupManifest[], backup: BackupManifest): BackupManifest[] {
  return restoreChain(backup).map((id) => {
    const manifest = complete.find((m) => m.backupId === id);
    if (manifest === undefined) {
      throw new RepositoryError(
        `backup ${backup.backupId} builds on backup ${id}, which is not in the repository (or not complete)`,
        'restore an older full backup with --backup-id, and run pgdr verify',
      );
    }
    return manifest;
  });
}

/** Whether the path holds a PostgreSQL data directory (a delta restore works over one). */
async function holdsDataDirectory(path: string): Promise<boolean> {
  return existsSync(join(path, 'PG_VERSION'));
}

async function removeIfPresent(path: string): Promise<void> {
  await rm(path, { force: true });
}
