import type { Command } from 'commander';
import { chooseEngine } from '../backup/engines/choose.js';
import { takeBackup } from '../backup/take-backup.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { UsageError, VerificationError } from '../errors.js';
import { formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { repositoryLabel } from '../config/repositories.js';
import type { ObjectStore } from '../storage/object-store.js';
import { openRepositoryAt } from './repository.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';
import { addClusterSourceOptions, resolveBackupTarget, type ClusterFlags } from './cluster.js';

export function registerBackupCommands(program: Command, action: Action): void {
  const backup = program.command('backup').description('take and list base backups');

  addCommonOptions(
    addClusterSourceOptions(backup.command('now'), { leaderWait: '30' })
      .description('take a base backup of the PostgreSQL server into the repository')
      .option('--engine <engine>', 'auto (default: files where the data directory is readable here, else basebackup), files, or basebackup (env PGDR_ENGINE)')
      .option('--type <type>', 'full (default), diff (what changed since the last full) or incr (since the last backup); diff and incr need the files engine', 'full')
      .option('--jobs <n>', 'files the files engine reads and compresses at once (env PGDR_JOBS; default: the number of cores)')
      .option('--lock-wait <seconds>', 'wait this long for another backup of the cluster to finish (default 0: fail at once)', '0')
      .option('--archive-wait <seconds>', 'how long the WAL the backup needs may take to reach the repository', '300')
      .option('--max-rate <rate>', "limit how fast the backup reads: kB/s, or e.g. '50M' (the files engine reads at most this; the basebackup engine asks the server to send at most this)")
      .option('--from <role>', 'with --patroni/--etcd: leader (default), or replica for the least-lagged healthy replica', 'leader'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as { lockWait: string; archiveWait: string; maxRate?: string; type: string } & ClusterFlags;
      if (opts.type !== 'full' && opts.type !== 'diff' && opts.type !== 'incr') {
        throw new UsageError(`--type must be full, diff or incr, got ${JSON.stringify(opts.type)}`, 'diff stores what changed since the last full backup, incr what changed since the last backup');
      }
      if (opts.type !== 'full' && ctx.settings.engine === 'basebackup') {
        throw new UsageError(`--type ${opts.type} needs the files engine; --engine basebackup reads the whole database every time`, 'run pgdr on the server\'s host with --engine files (or auto)');
      }
      if (opts.maxRate !== undefined && !/^\d+[kM]?$/.test(opts.maxRate)) {
        throw new UsageError(`--max-rate must be a number of kB/s with an optional k or M suffix, got ${JSON.stringify(opts.maxRate)}`, 'e.g. --max-rate 50M');
      }
      // Which repository first: several receiving backups and no --repo is refused before the database is asked.
      const { store, layout } = ctx.openRepository('backups');
      // Resolved right before the backup: with --patroni/--etcd the current leader (or a replica), else --pg-host.
      const target = await resolveBackupTarget(ctx, opts);
      const choice = await chooseEngine(ctx.settings.engine, target.endpoint, ctx.settings.pgdata);
      ctx.log(`backup: ${choice.engine.name} engine: ${choice.reason}`);
      const walFrom = walSourceFor(ctx);
      const { manifest } = await takeBackup({
        store,
        layout,
        ...(walFrom === undefined ? {} : { walFrom }),
        lock: ctx.locker(),
        endpoint: target.endpoint,
        engine: choice.engine,
        type: opts.type,
        jobs: ctx.settings.jobs,
        ...(choice.pgdata === undefined ? {} : { pgdata: choice.pgdata }),
        allowStandby: target.allowStandby,
        sourceMember: target.sourceMember,
        finishWal: target.finishWal,
        compressLevel: ctx.settings.compressLevel,
        compressThreads: ctx.settings.compressThreads,
        encryptTo: ctx.settings.encryptRecipients,
        ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
        lockWaitMs: secondsFlag('--lock-wait', opts.lockWait, { positive: false, example: 60 }) * 1000,
        archiveWaitMs: secondsFlag('--archive-wait', opts.archiveWait, { positive: false, example: 60 }) * 1000,
        maxRate: opts.maxRate,
        progress: ctx.settings.progress && !ctx.json,
        log: (m) => ctx.log(m),
      });
      await store.close();
      await walFrom?.store.close();
      ctx.emit(
        {
          backupId: manifest.backupId,
          type: manifest.type,
          engine: manifest.engine ?? 'basebackup',
          reference: manifest.reference ?? null,
          startLsn: manifest.startLsn,
          stopLsn: manifest.stopLsn,
          timeline: manifest.timeline,
          bytes: manifest.bytes,
          storedBytes: manifest.storedBytes,
          source: manifest.source,
          sourceMember: manifest.sourceMember ?? null,
          startTime: manifest.startTime,
          stopTime: manifest.stopTime,
        },
        `backup ${manifest.backupId} (${manifest.type}${manifest.reference ? ` on ${manifest.reference}` : ''}, ${manifest.engine ?? 'basebackup'} engine) complete: ${formatBytes(manifest.bytes)} stored as ${formatBytes(manifest.storedBytes)}, ` +
          `timeline ${manifest.timeline}, LSN ${manifest.startLsn}..${manifest.stopLsn}, from ${manifest.source}`,
      );
      const damaged = manifest.pageChecksumFailures ?? [];
      if (damaged.length > 0) {
        const pages = damaged.reduce((sum, f) => sum + f.blocks.length, 0);
        throw new VerificationError(
          `backup ${manifest.backupId} is stored, but ${pages} page${pages === 1 ? '' : 's'} failed their checksum: ` +
            damaged.slice(0, 3).map((f) => `${f.path} block${f.blocks.length === 1 ? '' : 's'} ${f.blocks.slice(0, 5).join(', ')}`).join('; ') +
            (damaged.length > 3 ? `; and ${damaged.length - 3} more files` : ''),
          'the database has damaged pages (the backup holds them as read): run pg_amcheck, and keep an older backup until they are repaired',
        );
      }
    }),
  );

  addCommonOptions(backup.command('list').description('list the backups in the repository, oldest first')).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository();
      const catalog = await readBackupCatalog(store, layout);
      await store.close();
      const rows = [
        ...catalog.complete.map((m) => ({
          backupId: m.backupId,
          startTime: m.startTime,
          stopTime: m.stopTime,
          startLsn: m.startLsn,
          stopLsn: m.stopLsn,
          timeline: m.timeline,
          bytes: m.bytes,
          storedBytes: m.storedBytes,
          type: m.type,
          engine: m.engine ?? 'basebackup',
          reference: m.reference ?? null,
          status: 'complete' as const,
        })),
        ...catalog.incomplete.map((b) => unfinishedRow(b.backupId, 'incomplete', b.storedBytes)),
        ...catalog.invalid.map((b) => ({ ...unfinishedRow(b.backupId, 'invalid', null), problem: b.problem })),
      ].sort((a, b) => a.backupId.localeCompare(b.backupId));
      const human =
        rows.length === 0
          ? `no backups in ${store.location} for cluster ${layout.cluster}`
          : [
              'backup id          status      type  engine      timeline  start LSN     stop LSN      size        stored      on',
              ...rows.map(
                (r) =>
                  `${r.backupId}   ${r.status.padEnd(10)}  ${(r.type ?? '-').padEnd(4)}  ${(r.engine ?? '-').padEnd(10)}  ${String(r.timeline ?? '-').padEnd(8)}  ${String(r.startLsn ?? '-').padEnd(12)}  ${String(r.stopLsn ?? '-').padEnd(12)}  ${(r.bytes === null ? '-' : formatBytes(r.bytes)).padEnd(10)}  ${(r.storedBytes === null ? '-' : formatBytes(r.storedBytes)).padEnd(10)}  ${r.reference ?? ''}`.trimEnd(),
              ),
            ].join('\n');
      ctx.emit(rows, human);
    }),
  );
}

/** A `backup list` row for a backup without a usable manifest: only what its objects tell. */
function unfinishedRow(backupId: string, status: 'incomplete' | 'invalid', storedBytes: number | null) {
  return { backupId, startTime: null, stopTime: null, startLsn: null, stopLsn: null, timeline: null, bytes: null, storedBytes, type: null, engine: null, reference: null, status };
}

/**
 * A backup into a repository that does not receive WAL (an off-site one for a daily full) waits for its WAL in the
 * first that does, and copies it over before its manifest (src/backup/take-backup.ts).
 */
function walSourceFor(ctx: CommandContext): { store: ObjectStore; label: string } | undefined {
  const own = ctx.settings.repository;
  if (own === undefined || own.receives.includes('wal')) return undefined;
  const source = ctx.settings.repositories.find((r) => r.receives.includes('wal'));
  if (source === undefined) return undefined;
  return { store: openRepositoryAt(source, ctx.settings).store, label: repositoryLabel(source) };
}
