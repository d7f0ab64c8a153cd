import type { PostgresServer } from './postgres.js';

/**
 * Closes the server's current WAL segment and waits until its archiver reports that segment (or a later one)
 * archived, so a restore can reach everything committed so far. pg_switch_wal() returns the end of the segment
 * it closed, which names that segment.
 */
export async function switchWalAndWaitForArchive(server: PostgresServer, timeoutMs = 60_000): Promise<void> {
  const [{ walfile }] = (await server.query<{ walfile: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS walfile')) as [{ walfile: string }];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await server.query<{ last: string | null; failed: string }>(
      'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver',
    );
    if (row?.last && row.last.slice(8) >= walfile.slice(8)) return;
    if (Date.now() > deadline) throw new Error(`the archiver did not reach ${walfile} (failed ${row?.failed}); log:\n${server.logTail(30)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
