import pg from 'pg';
import { ServiceError } from '../errors.js';
import { currentAccountName } from '../os/accounts.js';

/**
 * How pgdr reaches a PostgreSQL server. Unset fields fall through to libpq's own environment (PGHOST, PGPORT,
 * PGUSER, PGPASSWORD, PGPASSFILE), which node-postgres reads as libpq does: a password never appears on a
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

/**
 * A connection that failed for a reason no retry or failover cures: authentication, a missing pg_hba.conf entry, a
 * role or database that does not exist. Waiting for "the next leader" would only turn it into a misleading timeout.
 */
export class PostgresSetupError extends ServiceError {}

/** SQLSTATEs of setup problems: invalid_authorization_specification, invalid_password, invalid_catalog_name. */
const SETUP_SQLSTATES = new Set(['28000', '28P01', '3D000']);

export function isSetupFailure(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && SETUP_SQLSTATES.has(code)) return true;
  // node-postgres refuses on its own when the server asks for a password and none is configured.
  return /client password must be a string|no password supplied|SASL: SCRAM/i.test(err instanceof Error ? err.message : '');
}

/** The role libpq connects as when none is given: PGUSER, else the operating-system user (USER may be unset in a CronJob). */
export function defaultPgUser(env: NodeJS.ProcessEnv = process.env): string {
  return env.PGUSER || currentAccountName();
}

export async function withConnection<T>(endpoint: PgEndpoint, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user ?? defaultPgUser(),
    database: endpoint.database ?? process.env.PGDATABASE ?? 'postgres',
    connectionTimeoutMillis: 10_000,
    application_name: 'pgdr',
  });
  try {
    await client.connect();
  } catch (err) {
    // A connect refused on the client's side (no password to answer the server's SCRAM challenge) leaves the socket
    // open until the server's authentication_timeout (60 s): close it, or pgdr cannot exit before then.
    await client.end().catch(() => undefined);
    const where = `PostgreSQL at ${describeEndpoint(endpoint)} as ${endpoint.user ?? defaultPgUser()}`;
    if (isSetupFailure(err)) {
      throw new PostgresSetupError(
        `${where} refused the connection: ${(err as Error).message}`,
        'a setup problem, not an outage: check the role, its password (PGPASSWORD, PGPASSFILE or ~/.pgpass) and pg_hba.conf on the server',
        err,
      );
    }
    throw new ServiceError(
      `cannot connect to ${where}: ${(err as Error).message}`,
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
