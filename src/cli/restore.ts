import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { parseRecoveryTarget } from '../postgres/recovery-target.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { secondsFlag } from './flag-values.js';
import type { Action } from './action.js';
import { registerRestoreClusterCommand } from './restore-cluster.js';
import { restoreInto } from './restore-into.js';
import { parseTablespaceMappings } from '../restore/tablespaces.js';

interface RestoreFlags {
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  target?: string;
  targetExclusive?: boolean;
  backupId?: string;
  force?: boolean;
  delta?: boolean;
  start?: boolean;
  port?: string;
  archiveMode: string;
  startTimeout: string;
  tablespaceMap: string[];
  config?: string;
}

export function registerRestoreCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('restore')
      .description('point-in-time restore into a new or empty directory (or, with --force, over a stopped data directory); with --start, recover and promote')
      .option('--target-time <timestamp>', 'recover to this time; ISO 8601 or PostgreSQL timestamptz, with a zone')
      .option('--target-lsn <lsn>', 'recover to this WAL location, e.g. 0/3000060')
      .option('--target-name <name>', 'recover to a restore point made with pg_create_restore_point()')
      .option('--target <latest>', 'latest: replay all archived WAL (the default)')
      .option('--target-exclusive', 'stop just before the target time or LSN instead of just after it')
      .option('--backup-id <id>', 'restore this backup instead of the newest one that ends before the target')
      .option('--force', 'replace an existing PostgreSQL data directory (PG_VERSION, no server running); it stays as it is until the restored copy is complete')
      .option('--delta', 'over an existing data directory of the same cluster (a stopped former primary, a lagging replica): rewrite only the files that differ from the backup and remove what it does not have')
      .option('--jobs <n>', 'objects fetched and unpacked (and files compared, with --delta) at once (env PGDR_JOBS; default: the number of cores)')
      .option('--start', 'start PostgreSQL, wait until recovery reaches the target and promotes, and report')
      .option('--port <port>', 'port for the restored server (written to postgresql.auto.conf)')
      .option('--archive-mode <mode>', 'preserve: keep the backup\'s archive settings; off: the restored server archives nothing (drills, scratch copies)', 'preserve')
      .option('--start-timeout <seconds>', 'with --start, how long recovery may take', '3600')
      .option(
        '--tablespace-map <old=new>',
        'restore a tablespace into NEW instead of its old location (OLD: the old location, the name or the oid); repeatable. Without it a tablespace returns where it was, which must be empty or absent',
        (value: string, previous: string[]) => [...previous, value],
        [] as string[],
      ),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const flags = options as RestoreFlags;
      const pgdata = ctx.settings.pgdata;
      if (!pgdata) throw new UsageError('restore needs a target data directory', 'pass --pgdata DIR (or set PGDATA)');
      const target = parseRecoveryTarget({
        targetTime: flags.targetTime,
        targetLsn: flags.targetLsn,
        targetName: flags.targetName,
        target: flags.target,
        targetInclusive: flags.targetExclusive ? false : undefined,
      });
      if (flags.archiveMode !== 'preserve' && flags.archiveMode !== 'off') {
        throw new UsageError(`--archive-mode must be preserve or off, got ${JSON.stringify(flags.archiveMode)}`, 'use --archive-mode off for drills and scratch copies');
      }
      const port = flags.port === undefined ? undefined : Number(flags.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
        throw new UsageError(`--port must be a TCP port, got ${JSON.stringify(flags.port)}`, 'e.g. --port 5433');
      }
      if (flags.delta && flags.force) throw new UsageError('--delta and --force are two ways to restore over a data directory: choose one', '--delta rewrites only what differs; --force replaces the whole directory once the new copy is complete');
      const startTimeout = secondsFlag('--start-timeout', flags.startTimeout, { positive: true, example: 600 });
      const result = await restoreInto(ctx, pgdata, target, flags, {
        archiveMode: flags.archiveMode,
        port,
        start: flags.start === true,
        startTimeoutMs: startTimeout * 1000,
        ...(ctx.settings.pgUser === undefined ? {} : { pgUser: ctx.settings.pgUser }),
        tablespaceMap: parseTablespaceMappings(flags.tablespaceMap),
        progress: ctx.settings.progress && !ctx.json,
      });
      ctx.emit(
        result,
        result.started
          ? `restored backup ${result.backupId} into ${result.pgdata}; recovery reached ${result.target} and the server promoted to timeline ${result.promoted?.timeline}`
          : `restored backup ${result.backupId} into ${result.pgdata} with recovery settings for ${result.target}; start PostgreSQL to recover (pg_ctl -D ${result.pgdata} start)`,
      );
    }),
  );

  // `restore cluster` (src/cli/restore-cluster.ts). Positional options: `restore` stops reading its own options at
  // the subcommand's name, so `restore cluster --target-time ...` reaches the subcommand, not `restore`.
  const restore = program.commands.find((c) => c.name() === 'restore') as Command;
  restore.enablePositionalOptions();
  registerRestoreClusterCommand(restore, action);
}
