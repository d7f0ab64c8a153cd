import { runAsProcess } from './process-run.js';

/**
 * The entry of the full CLI (bin/pgdr sends `wal push` to the bundled src/cli/wal-push-main.ts instead). `wal push`
 * and `wal fetch` run once per WAL file, so they take their own short ways before anything heavy loads: `wal push`
 * its dedicated entry (src/cli/wal-push-entry.ts), `wal fetch` the prefetch spool (src/cli/wal-fast-path.ts), then
 * its own lean entry (src/cli/wal-fetch.ts). Anything those do not read goes to the full CLI.
 */
const argv = process.argv.slice(2);
await runAsProcess(async () => {
  if (argv[0] === 'wal' && (argv[1] === 'push' || argv[1] === 'push-ahead')) {
    const { walPushEntry } = await import('./wal-push-entry.js');
    const code = await walPushEntry(argv, process.env);
    if (code !== undefined) return code;
  } else if (argv[0] === 'wal' && argv[1] === 'fetch') {
    const { tryWalFastPath } = await import('./wal-fast-path.js');
    if (await tryWalFastPath(argv, process.env)) return 0;
    const { walFetchEntry } = await import('./wal-fetch.js');
    const code = await walFetchEntry(argv, process.env);
    if (code !== undefined) return code;
  }
  const { main } = await import('./main.js');
  return main(argv);
});
