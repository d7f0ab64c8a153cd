import type { Command } from 'commander';
import { NotFoundError, PgdrError } from '../errors.js';
import { fetchWal } from '../wal/fetch.js';
import { pushWal, type WalPushOptions } from '../wal/push.js';
import { dirname, join, resolve } from 'node:path';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ensurePusher, runPusher } from '../wal/background-pusher.js';
import { addCommonOptions, pgdrExecutable, type CommandContext } from './context.js';
import type { Action } from './main.js';

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
      const { store, layout } = ctx.openRepository();
      try {
        const pushOptions = await walPushOptions(ctx, store, layout);
        const outcome = await pushWal(String(path), pushOptions);
        if (ctx.settings.archiveLookahead > 0) {
          const pgWalDir = dirname(resolve(String(path)));
          ensurePusher(ctx.settings.spoolDir, layout.cluster, [pgdrExecutable(), 'wal', 'push-ahead', pgWalDir, ...repositoryArgs(ctx, options)], process.env);
        }
        ctx.emit({ file: String(path), outcome }, '');
      } finally {
        await store.close();
      }
    }),
  );

  addCommonOptions(
    wal
      .command('push-ahead', { hidden: true })
      .argument('<pg_wal>', "the server's pg_wal directory")
      .description('background pusher started by wal push: archives files marked ready until idle'),
  ).action(
    action(async (ctx: CommandContext, pgWalDir: unknown) => {
      const { store, layout } = ctx.openRepository();
      try {
        await runPusher(String(pgWalDir), await walPushOptions(ctx, store, layout));
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
      .option(
        '--abort-recovery-on-error',
        'exit 126 instead of 3/4/5 on a real error, so PostgreSQL stops recovery rather than taking it for the end of the archive (pgdr restore writes this)',
      )
      .description("fetch one WAL file; use as restore_command = 'pgdr wal fetch %f %p'; exit 1 when the repository does not have it"),
  ).action(
    action(async (ctx: CommandContext, name: unknown, dest: unknown, options: unknown) => {
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
      } catch (err) {
        // PostgreSQL reads any exit status from 1 to 125 as "not in the archive" and, with no recovery target, ends
        // recovery there and promotes; 126 and above make it stop with FATAL instead, which is what a storage error
        // or a damaged file must do.
        if ((options as { abortRecoveryOnError?: boolean }).abortRecoveryOnError && err instanceof PgdrError && !(err instanceof NotFoundError)) {
          throw new PgdrError(err.message, { hint: err.hint, exitCode: ABORT_RECOVERY_EXIT_CODE, cause: err });
        }
        throw err;
      } finally {
        await store.close();
      }
    }),
  );
}

async function walPushOptions(ctx: CommandContext, store: ObjectStore, layout: RepositoryLayout): Promise<WalPushOptions> {
  // Asked once per probe interval; the spool keeps a copy so most pushes do not read the repository for it.
  const probe = await ctx.storeProbe(join(ctx.settings.spoolDir, layout.cluster, 'store-probe.json'));
  return {
    storeIgnoresConditions: probe.conditionalWrites === 'ignored',
    store,
    layout,
    compressLevel: ctx.settings.compressLevel,
    spoolDir: ctx.settings.spoolDir,
    repoUrl: ctx.settings.repo,
    log: (m) => ctx.log(m),
  };
}

/** The settings the background pusher needs to reach the same repository (credentials stay in the environment). */
function repositoryArgs(ctx: CommandContext, options: unknown): string[] {
  const { settings } = ctx;
  const args = ['--repo', settings.repo, '--cluster', settings.cluster, '--spool-dir', settings.spoolDir, '--compress-level', String(settings.compressLevel)];
  if (settings.s3Endpoint) args.push('--s3-endpoint', settings.s3Endpoint);
  if (settings.s3ForcePathStyle) args.push('--s3-force-path-style');
  const config = (options as { config?: string }).config;
  if (config) args.push('--config', resolve(config));
  return args;
}
