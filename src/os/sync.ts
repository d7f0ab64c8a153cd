import { ExitCode, PgdrError } from '../errors.js';
import { runCommand } from '../process/run-command.js';

/** `sync` from coreutils; PGDR_SYNC_BIN lets the fault suite see when a restore makes its writes durable. */
const SYNC = process.env.PGDR_SYNC_BIN ?? 'sync';

/**
 * Makes everything written to the file system holding `path` durable (syncfs(2), through `sync --file-system`: Node has
 * no syncfs, and an fsync per file of a restored data directory is thousands of calls for the same effect). A restore
 * that reported success must not lose its files to a host crash before PostgreSQL starts, and a delta restore's
 * pg_control must not reach the disk before the files it describes. Fails when the kernel reports a write-back error.
 */
export async function syncFileSystem(path: string): Promise<void> {
  const hint = `the files written under ${path} may not be on disk: check the file system and its device (dmesg)`;
  try {
    await runCommand(SYNC, ['--file-system', '--', path], { label: 'sync --file-system', hint });
  } catch (err) {
    // A storage failure (exit 3), not one of PostgreSQL's, whatever the child-process wrapper calls it.
    throw new PgdrError(err instanceof Error ? err.message : String(err), { hint, exitCode: ExitCode.repository, cause: err });
  }
}
