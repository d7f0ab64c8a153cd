import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { withConnection } from '../postgres/connection.js';
import { checkRestorePointName, listRestorePoints, readRestorePoint, writeRestorePoint } from '../repo/restore-points.js';
import { addClusterSourceOptions, resolveBackupTarget, type ClusterFlags } from './cluster.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './action.js';

/**
 * `pgdr restore-point create NAME`: pg_create_restore_point on the primary, and a record of where it lies in the
 * repository, so that `restore --target-name NAME` starts from the newest backup that finished before it.
 */
export function registerRestorePointCommands(program: Command, action: Action): void {
  const group = program.command('restore-point').description('named points to restore to, recorded with their WAL position');

  addCommonOptions(
    addClusterSourceOptions(group.command('create').argument('<name>', 'letters, digits, dots, dashes, underscores (at most 63)'), { leaderWait: '30' }).description(
      'create a restore point on the primary (pg_create_restore_point) and record its LSN, so restore --target-name picks the right backup',
    ),
  ).action(
    action(async (ctx: CommandContext, name: unknown, options: unknown) => {
      const pointName = checkRestorePointName(String(name));
      const { store, layout } = ctx.openRepository();
      try {
        if ((await readRestorePoint(store, layout, pointName)) !== null) {
          throw new UsageError(`a restore point named ${pointName} is recorded already`, 'give each restore point its own name, e.g. with the date: before-migration-2026-11-23');
        }
        const target = await resolveBackupTarget(ctx, { ...(options as ClusterFlags), from: 'leader' });
        const created = await withConnection(target.endpoint, async (client) => {
          const { rows } = await client.query<{ lsn: string; wal: string; at: Date }>(
            'SELECT pg_create_restore_point($1)::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS wal, clock_timestamp() AS at',
            [pointName],
          );
          return rows[0]!;
        });
        const record = await writeRestorePoint(store, layout, {
          name: pointName,
          lsn: created.lsn,
          timeline: parseInt(created.wal.slice(0, 8), 16),
          createdAt: created.at.toISOString(),
        });
        ctx.emit(record, `restore point ${record.name} created at ${record.lsn} (timeline ${record.timeline}) and recorded in ${store.location}`);
      } finally {
        await store.close();
      }
    }),
  );

  addCommonOptions(group.command('list').description('restore points pgdr recorded, oldest first')).action(
    action(async (ctx: CommandContext) => {
      const { store, layout } = ctx.openRepository();
      try {
        const points = await listRestorePoints(store, layout);
        ctx.emit(points, points.length === 0 ? 'no restore points recorded' : points.map((p) => `${p.createdAt}  ${p.lsn.padEnd(12)}  timeline ${p.timeline}  ${p.name}`).join('\n'));
      } finally {
        await store.close();
      }
    }),
  );
}
