import type { Command } from 'commander';
import { NotFoundError, PgdrError } from '../errors.js';
import { fetchWal } from '../wal/fetch.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './main.js';
import { walPushAheadCommand, walPushCommand } from './wal-push.js';
import { repositoriesKey, repositoryLabel, walFetchSources } from '../config/repositories.js';
import { openRepositoryAt } from './repository.js';
import { createLazyStore } from '../storage/lazy-store.js';
import { RepositoryLayout } from '../repo/layout.js';

/** An exit status PostgreSQL treats as a failed command (like "command not found"), not as a missing file. */
const ABORT_RECOVERY_EXIT_CODE = 126;

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
      const repositories = walFetchSources(ctx.settings);
      // A repository that cannot even be opened (a credentials file gone) is one failing source, not the end of the fetch.
      const opened = repositories.map((r) => {
        try {
          return openRepositoryAt(r, ctx.settings);
        } catch (err) {
          return { store: createLazyStore(r.url, () => Promise.reject(err)), layout: new RepositoryLayout(ctx.settings.cluster) };
        }
      });
      try {
        await fetchWal(String(name), String(dest), {
          sources: opened.map(({ store }, i) => ({ store, label: repositoryLabel(repositories[i]!) })),
          layout: opened[0]!.layout,
          lookahead: ctx.settings.archiveLookahead,
          spoolDir: ctx.settings.spoolDir,
          repoUrl: repositoriesKey(repositories),
          dataDirectory: process.cwd(),
          log: (m) => ctx.log(m),
          ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
        });
        ctx.emit({ file: String(name), destination: String(dest) }, '');
      } catch (err) {
        // PostgreSQL reads any exit status from 1 to 125 as "not in the archive" and, with no recovery target, ends
        // recovery there and promotes; 126 and above make it stop with FATAL instead, which is what a storage error
        // or a damaged file must do.
        if ((options as { abortRecoveryOnError?: boolean }).abortRecoveryOnError && err instanceof PgdrError && !(err instanceof NotFoundError)) {
          throw new PgdrError(err.message, { hint: err.hint, exitCode: ABORT_RECOVERY_EXIT_CODE, cause: err });
        }
        throw err;
      } finally {
        await Promise.all(opened.map(({ store }) => store.close()));
      }
    }),
  );
}
