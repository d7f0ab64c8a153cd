import { tryWalFastPath } from './wal-fast-path.js';

/**
 * The process entry. `wal push` and `wal fetch` run once per WAL file, so before loading anything heavy they
 * check whether an earlier run already did the work ahead of time (see src/cli/wal-fast-path.ts).
 */
const argv = process.argv.slice(2);
// `pgdr ... | head` closes the pipe early: what is left to print has no reader, which is not a failure of pgdr's.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}
if (!(await tryWalFastPath(argv, process.env))) {
  let settled = false;
  // If the event loop empties while a command is still pending, something never resolved: that must not look
  // like success to a CronJob or to PostgreSQL's archive_command.
  process.on('beforeExit', () => {
    if (!settled) {
      process.stderr.write('pgdr: internal error: the command stopped before it finished\nhint: run again with --debug and report it\n');
      process.exitCode = 3;
      settled = true;
    }
  });
  const { main } = await import('./main.js');
  process.exitCode = await main(argv);
  settled = true;
}
