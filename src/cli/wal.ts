import type { Command } from 'commander';
import { fetchWal } from '../wal/fetch.js';
import { pushWal } from '../wal/push.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './main.js';

export function registerWalCommands(program: Command, action: Action): void {
  const wal = program.command('wal').description('archive_command and restore_command for PostgreSQL');

  addCommonOptions(
    wal
      .command('push')
      .argument('<path>', 'the WAL file to archive (archive_command %p)')
      .description("store one WAL segment or history file; use as archive_command = 'pgdr wal push %p'"),
  ).action(
    action(async (ctx: CommandContext, path: unknown) => {
      const { store, layout } = ctx.openRepository();
      try {
        const outcome = await pushWal(String(path), {
          store,
          layout,
          compressLevel: ctx.settings.compressLevel,
          lookahead: ctx.settings.archiveLookahead,
          spoolDir: ctx.settings.spoolDir,
          repoUrl: ctx.settings.repo,
          log: (m) => ctx.log(m),
        });
        ctx.emit({ file: String(path), outcome }, '');
      } finally {
        await store.close();
      }
    }),
  );

  addCommonOptions(
    wal
      .command('fetch')
      .argument('<name>', 'WAL file name (restore_command %f)')
      .argument('<dest>', 'where to write it (restore_command %p)')
      .description("fetch one WAL file; use as restore_command = 'pgdr wal fetch %f %p'; exit 1 when the repository does not have it"),
  ).action(
    action(async (ctx: CommandContext, name: unknown, dest: unknown) => {
      const { store, layout } = ctx.openRepository();
      try {
        await fetchWal(String(name), String(dest), {
          store,
          layout,
          lookahead: ctx.settings.archiveLookahead,
          spoolDir: ctx.settings.spoolDir,
          repoUrl: ctx.settings.repo,
          dataDirectory: process.cwd(),
        });
        ctx.emit({ file: String(name), destination: String(dest) }, '');
      } finally {
        await store.close();
      }
    }),
  );
}
