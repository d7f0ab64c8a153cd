import { repositoriesKey, repositoryLabel, walFetchSources } from '../config/repositories.js';
import type { Settings } from '../config/resolve-settings.js';
import { NotFoundError, PgdrError } from '../errors.js';
import { RepositoryLayout } from '../repo/layout.js';
import { createLazyStore } from '../storage/lazy-store.js';
import { fetchWal } from '../wal/fetch.js';
import { reportError } from './report-error.js';
import { openRepositoryAt } from './repository.js';
import { parseWalCommandLine } from './wal-argv.js';

/** An exit status PostgreSQL treats as a failed command (like "command not found"), not as a missing file: recovery stops with FATAL. */
export const ABORT_RECOVERY_EXIT_CODE = 126;

/**
 * The body of `pgdr wal fetch NAME DEST` (restore_command), shared by the full CLI (src/cli/wal.ts) and the lean
 * entry below: the repositories that hold WAL, asked in order; exit 1 (NotFoundError) only when none has the file.
 */
export async function walFetchCommand(name: string, destination: string, settings: Settings, io: { log(message: string): void; abortRecoveryOnError: boolean }): Promise<void> {
  const repositories = walFetchSources(settings);
  // A repository that cannot even be opened (a credentials file gone) is one failing source, not the end of the fetch.
  const opened = repositories.map((r) => {
    try {
      return openRepositoryAt(r, settings);
    } catch (err) {
      return { store: createLazyStore(r.url, () => Promise.reject(err)), layout: new RepositoryLayout(settings.cluster) };
    }
  });
  try {
    await fetchWal(name, destination, {
      sources: opened.map(({ store }, i) => ({ store, label: repositoryLabel(repositories[i]!) })),
      layout: opened[0]!.layout,
      lookahead: settings.archiveLookahead,
      spoolDir: settings.spoolDir,
      repoUrl: repositoriesKey(repositories),
      dataDirectory: process.cwd(),
      log: io.log,
      ...(settings.identityFile === undefined ? {} : { identityFile: settings.identityFile }),
    });
  } catch (err) {
    // PostgreSQL reads any exit status from 1 to 125 as "not in the archive" and, with no recovery target, ends
    // recovery there and promotes; 126 and above make it stop with FATAL instead, which is what a storage error
    // or a damaged file must do.
    if (io.abortRecoveryOnError && err instanceof PgdrError && !(err instanceof NotFoundError)) {
      throw new PgdrError(err.message, { hint: err.hint, exitCode: ABORT_RECOVERY_EXIT_CODE, cause: err });
    }
    throw err;
  } finally {
    await Promise.all(opened.map(({ store }) => store.close()));
  }
}

/**
 * `wal fetch` without the command-line framework (commander, and zod and YAML unless a config file is named):
 * PostgreSQL runs it once per WAL file it replays and once per timeline history file it probes for, most of which do
 * not exist, so its start-up is most of a restore's recovery time when the prefetch spool cannot answer. Returns
 * undefined for a command line it does not read (see src/cli/wal-argv.ts); the full CLI then handles it.
 */
export async function walFetchEntry(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number | undefined> {
  const call = parseWalCommandLine(argv);
  if (call === null || call.command !== 'fetch' || call.positional.length !== 2) return undefined;
  const [name, destination] = call.positional as [string, string];
  try {
    const { loadSettings } = await import('../config/resolve-settings.js');
    const settings = await loadSettings(call.flags, env);
    if (settings.identityFile !== undefined) {
      const { unlockIdentity } = await import('./identity.js');
      await unlockIdentity(settings, env);
    }
    await walFetchCommand(name, destination, settings, { log: (m) => process.stderr.write(`pgdr: ${m}\n`), abortRecoveryOnError: call.abortRecoveryOnError });
    if (call.json) process.stdout.write(`${JSON.stringify({ file: name, destination }, null, 2)}\n`);
    return 0;
  } catch (err) {
    return reportError(err, call.debug, call.json);
  }
}
