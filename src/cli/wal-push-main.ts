import { runAsProcess } from './process-run.js';
import { walPushEntry } from './wal-push-entry.js';

/**
 * The process entry of `pgdr wal push` and of the background pusher (`wal push-ahead`), which bin/pgdr loads with
 * require() from a single-file bundle (dist/cli/wal-push.cjs, built by scripts/bundle-wal-push.mjs): one file
 * instead of some forty ES modules, and no ES module loader to start, took a cold push from 108 to 89 ms on the
 * bench machine when it was quiet (where the time goes now: docs/benchmarks.md, test/bench/push-breakdown.ts). A
 * command line the dedicated entry does not read goes to the full CLI, as
 * from src/cli/entry.ts.
 */
const argv = process.argv.slice(2);
void runAsProcess(async () => {
  const code = await walPushEntry(argv, process.env);
  if (code !== undefined) return code;
  const { main } = await import('./main.js');
  return main(argv);
});
