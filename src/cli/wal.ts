import type { Command } from 'commander';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './action.js';
import { walFetchCommand } from './wal-fetch.js';
import { walPushAheadCommand, walPushCommand } from './wal-push.js';

export function registerWalCommands(program: Command, action: Action): void {
  const wal = program.command('wal').description('archive_command and restore_command for PostgreSQL');

  addCommonOptions(
    wal
      .command('push')
      .argument('<path>', 'the WAL file to archive (archive_command %p)')
      .description("store one WAL segment or history file; use as archive_command = 'pgdr wal push %p'"),
  ).action(
    action(async (ctx: CommandContext, path: unknown, options: unknown) => {
      const configFile = (options as { config?: string }).config;
      const outcome = await walPushCommand(String(path), ctx.settings, { log: (m) => ctx.log(m), ...(configFile ? { configFile } : {}) });
      ctx.emit({ file: String(path), outcome }, '');
    }),
  );

  addCommonOptions(
    wal
      .command('push-ahead', { hidden: true })
      .argument('<pg_wal>', "the server's pg_wal directory")
      .description('background pusher started by wal push: archives files marked ready until idle'),
  ).action(
    action(async (ctx: CommandContext, pgWalDir: unknown) => {
      await walPushAheadCommand(String(pgWalDir), ctx.settings, { log: (m) => ctx.log(m) });
    }),
  );

  addCommonOptions(
    wal
      .command('fetch')
      .argument('<name>', 'WAL file name (restore_command %f)')
      .argument('<dest>', 'where to write it (restore_command %p)')
      .option(
        '--abort-recovery-on-error',
        'exit 126 instead of 3/4/5 on a real error, so PostgreSQL stops recovery rather than taking it for the end of the archive (pgdr restore writes this)',
      )
      .description("fetch one WAL file; use as restore_command = 'pgdr wal fetch %f %p'; exit 1 when the repository does not have it"),
  ).action(
    action(async (ctx: CommandContext, name: unknown, dest: unknown, options: unknown) => {
      await walFetchCommand(String(name), String(dest), ctx.settings, {
        log: (m) => ctx.log(m),
        abortRecoveryOnError: (options as { abortRecoveryOnError?: boolean }).abortRecoveryOnError === true,
      });
      ctx.emit({ file: String(name), destination: String(dest) }, '');
    }),
  );
}
