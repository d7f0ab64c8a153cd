import { tryWalPushFastPath } from './wal-fast-path.js';

/**
 * The process entry. `wal push` runs once per WAL segment as archive_command, so before loading anything heavy it
 * checks whether an earlier run already archived this file ahead of time (see src/wal/spool.ts).
 */
const argv = process.argv.slice(2);
if (!tryWalPushFastPath(argv, process.env)) {
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
