/**
 * What every pgdr process does around its command, whichever way it was started (src/cli/entry.ts for the full CLI,
 * src/cli/wal-push-main.ts for the bundled `wal push`): the command's exit code becomes the process's, a closed
 * stdout is no failure, and a command that never settles does not pass for a success.
 */
export async function runAsProcess(command: () => Promise<number>): Promise<void> {
  // `pgdr ... | head` closes the pipe early: what is left to print has no reader, which is not a failure of pgdr's.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  let settled = false;
  // If the event loop empties while the command is still pending, something never resolved: that must not look like
  // success to a CronJob or to PostgreSQL's archive_command.
  process.on('beforeExit', () => {
    if (!settled) {
      process.stderr.write('pgdr: internal error: the command stopped before it finished\nhint: run again with --debug and report it\n');
      process.exitCode = 3;
      settled = true;
    }
  });
  const code = await command();
  settled = true;
  process.exitCode = code;
}
