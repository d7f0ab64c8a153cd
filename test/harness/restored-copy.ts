import type { PostgresServer } from './postgres.js';
import { runAsPostgres } from './postgres.js';
import { pgBin } from './preflight.js';

const quiet = () => new Promise((resolve) => setTimeout(resolve, 1100));

/** A moment to restore to, between two writes: a second of quiet on each side of the server's clock time taken. */
export async function quietPointInTime(server: Pick<PostgresServer, 'query'>): Promise<string> {
  await quiet();
  const [row] = await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`);
  await quiet();
  return row!.at;
}

/** pg_amcheck of a restored copy running on 127.0.0.1:`port`: heap and B-tree checks, each index against its heap. */
export async function amcheckCopy(port: number): Promise<{ exitCode: number; output: string }> {
  const result = await runAsPostgres(pgBin('pg_amcheck'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '--heapallindexed', '--install-missing', 'postgres'], {
    reject: false,
    timeout: 120_000,
  });
  return { exitCode: result.exitCode ?? -1, output: `${String(result.stdout)}${String(result.stderr)}` };
}
