import type { RecoveryTarget } from '../postgres/recovery-target.js';
import { executeRestore, type RestoreOptions, type RestoreResult } from '../restore/execute.js';
import { buildRestoreCommand, type CommandContext } from './context.js';

/** The flags every command that restores a backup shares. */
export interface RestoreSourceFlags {
  backupId?: string;
  force?: boolean;
  /** Bring an existing data directory of the same cluster up to date, rewriting only what differs. */
  delta?: boolean;
  config?: string;
}

/**
 * `pgdr restore` and the Patroni adapters restore the same way: from the configured repository, with --backup-id
 * and --force, and a restore_command that reaches this same repository. What differs (start, archive mode, port)
 * is passed in `how`.
 */
export async function restoreInto(
  ctx: CommandContext,
  pgdata: string,
  target: RecoveryTarget,
  flags: RestoreSourceFlags,
  how: Pick<RestoreOptions, 'archiveMode' | 'port' | 'start' | 'startTimeoutMs' | 'pgUser' | 'progress' | 'tablespaceMap'>,
): Promise<RestoreResult> {
  const { store, layout } = ctx.openRepository();
  try {
    return await executeRestore({
      store,
      layout,
      pgdata,
      target,
      backupId: flags.backupId,
      force: flags.force === true,
      delta: flags.delta === true,
      jobs: ctx.settings.jobs,
      ...(ctx.settings.identityFile === undefined ? {} : { identityFile: ctx.settings.identityFile }),
      restoreCommand: buildRestoreCommand(ctx.settings, flags.config),
      ...how,
      log: (m) => ctx.log(m),
    });
  } finally {
    await store.close();
  }
}
