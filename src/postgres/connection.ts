import pg from 'pg';
import { ServiceError } from '../errors.js';

/**
 * How pgdr reaches a PostgreSQL server. Unset fields fall through to libpq's own environment (PGHOST, PGPORT,
 * PGUSER, PGPASSWORD, PGPASSFILE), which both node-postgres and pg_basebackup read: a password never appears on a
 * command line.
 */
export interface PgEndpoint {
  host?: string;
  port?: number;
  user?: string;
  database?: string;
}

export function describeEndpoint(endpoint: PgEndpoint, env: NodeJS.ProcessEnv = process.env): string {
  const host = endpoint.host ?? env.PGHOST ?? 'localhost';
  const port = endpoint.port ?? (env.PGPORT ? Number(env.PGPORT) : 5432);
  return `${host}:${port}`;
}

/** Connection-level flags for libpq programs (pg_basebackup, psql). */
export function libpqArgs(endpoint: PgEndpoint): string[] {
  const args: string[] = [];
  if (endpoint.host) args.push('-h', endpoint.host);
  if (endpoint.port) args.push('-p', String(endpoint.port));
  if (endpoint.user) args.push('-U', endpoint.user);
  return args;
}

export async function withConnection<T>(endpoint: PgEndpoint, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    database: endpoint.database ?? process.env.PGDATABASE ?? 'postgres',
    connectionTimeoutMillis: 10_000,
    application_name: 'pgdr',
  });
  try {
    await client.connect();
  } catch (err) {
    throw new ServiceError(
      `cannot connect to PostgreSQL at ${describeEndpoint(endpoint)}: ${(err as Error).message}`,
      'check --pg-host/--pg-port/--pg-user (or PGHOST/PGPORT/PGUSER/PGPASSWORD) and that the server is running',
      err,
    );
  }
  client.on('error', () => undefined);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
