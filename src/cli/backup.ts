import type { Command } from 'commander';
import { takeBackup } from '../backup/take-backup.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { UsageError } from '../errors.js';
import { formatBytes } from '../stream/progress.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './main.js';
import { addClusterSourceOptions, resolveBackupTarget, type ClusterFlags } from './cluster.js';

export function registerBackupCommands(program: Command, action: Action): void {
  const backup = program.command('backup').description('take and list base backups');

  addCommonOptions(
    addClusterSourceOptions(backup.command('now'), { leaderWait: '30' })
      .description('take a full base backup of the PostgreSQL server (pg_basebackup) into the repository')
      .option('--lock-wait <seconds>', 'wait this long for another backup of the cluster to finish (default 0: fail at once)', '0')
      .option('--archive-wait <seconds>', 'how long the WAL the backup needs may take to reach the repository', '300')
      .option('--max-rate <rate>', "limit the transfer from the server (pg_basebackup --max-rate: kB/s, or e.g. '50M')")
      .option('--from <role>', 'with --patroni/--etcd: leader (default), or replica for the least-lagged healthy replica', 'leader'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as { lockWait: string; archiveWait: string; maxRate?: string } & ClusterFlags;
      if (opts.maxRate !== undefined && !/^\d+[kM]?$/.test(opts.maxRate)) {
        throw new UsageError(`--max-rate must be a number of kB/s with an optional k or M suffix, got ${JSON.stringify(opts.maxRate)}`, 'e.g. --max-rate 50M');
      }
      // Resolved right before the backup: with --patroni/--etcd the current leader (or a replica), else --pg-host.
      const target = await resolveBackupTarget(ctx, opts);
      const { store, layout } = ctx.openRepository();
      const { manifest } = await takeBackup({
        store,
        layout,
        lock: ctx.locker(),
        endpoint: target.endpoint,
        allowStandby: target.allowStandby,
        sourceMember: target.sourceMember,
        finishWal: target.finishWal,
        compressLevel: ctx.settings.compressLevel,
        compressThreads: ctx.settings.compressThreads,
        lockWaitMs: secondsFlag('--lock-wait', opts.lockWait, { positive: false, example: 60 }) * 1000,
        archiveWaitMs: secondsFlag('--archive-wait', opts.archiveWait, { positive: false, example: 60 }) * 1000,
        maxRate: opts.maxRate,
        progress: ctx.settings.progress && !ctx.json,
        log: (m) => ctx.log(m),
      });
      await store.close();
      ctx.emit(
        {
          backupId: manifest.backupId,
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
        `backup ${manifest.backupId} complete: ${formatBytes(manifest.bytes)} stored as ${formatBytes(manifest.storedBytes)}, ` +
          `timeline ${manifest.timeline}, LSN ${manifest.startLsn}..${manifest.stopLsn}, from ${manifest.source}`,
      );
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
          status: 'complete' as const,
        })),
        ...catalog.incomplete.map((b) => unfinishedRow(b.backupId, 'incomplete', b.storedBytes)),
        ...catalog.invalid.map((b) => ({ ...unfinishedRow(b.backupId, 'invalid', null), problem: b.problem })),
      ].sort((a, b) => a.backupId.localeCompare(b.backupId));
      const human =
        rows.length === 0
          ? `no backups in ${store.location} for cluster ${layout.cluster}`
          : [
              'backup id          status      timeline  start LSN     stop LSN      size      stored',
              ...rows.map(
                (r) =>
                  `${r.backupId}   ${r.status.padEnd(10)}  ${String(r.timeline ?? '-').padEnd(8)}  ${String(r.startLsn ?? '-').padEnd(12)}  ${String(r.stopLsn ?? '-').padEnd(12)}  ${(r.bytes === null ? '-' : formatBytes(r.bytes)).padEnd(8)}  ${r.storedBytes === null ? '-' : formatBytes(r.storedBytes)}`,
              ),
            ].join('\n');
      ctx.emit(rows, human);
    }),
  );
}

/** A `backup list` row for a backup without a usable manifest: only what its objects tell. */
function unfinishedRow(backupId: string, status: 'incomplete' | 'invalid', storedBytes: number | null) {
  return { backupId, startTime: null, stopTime: null, startLsn: null, stopLsn: null, timeline: null, bytes: null, storedBytes, status };
}
