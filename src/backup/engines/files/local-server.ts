import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';

/** What the files engine needs from the server it backs up, and how to tell its data directory on this host. */
export interface LocalServerFacts {
  /** data_directory as the server reports it. */
  dataDirectory: string;
  port: number;
  /** pg_postmaster_start_time() in whole seconds, as postmaster.pid records it. */
  postmasterStart: number;
  dataChecksums: boolean;
  /** The catalog version: tablespaces keep this server's files under PG_<major>_<catalog version>. */
  catalogVersion: number;
  inRecovery: boolean;
  /** Tablespace names by oid. */
  tablespaceNames: Map<number, string>;
}

export async function readLocalServerFacts(client: pg.Client): Promise<LocalServerFacts> {
  const { rows } = await client.query<{ data_directory: string; port: string; started: string; checksums: string; catver: string; in_recovery: boolean }>(`
    SELECT current_setting('data_directory') AS data_directory,
           current_setting('port') AS port,
           floor(extract(epoch FROM pg_postmaster_start_time()))::bigint::text AS started,
           current_setting('data_checksums') AS checksums,
           (SELECT catalog_version_no::text FROM pg_control_system()) AS catver,
           pg_is_in_recovery() AS in_recovery`);
  const row = rows[0]!;
  const spaces = await client.query<{ oid: string; name: string }>("SELECT oid::text, spcname AS name FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')");
  return {
    dataDirectory: row.data_directory,
    port: Number(row.port),
    postmasterStart: Number(row.started),
    dataChecksums: row.checksums === 'on',
    catalogVersion: Number(row.catver),
    inRecovery: row.in_recovery,
    tablespaceNames: new Map(spaces.rows.map((r) => [Number(r.oid), r.name])),
  };
}

/**
 * Whether `pgdata` on this host is the data directory of the server pgdr is connected to: its postmaster.pid must
 * name the same port and start time, within a few seconds (two servers of one cluster, a leader and its replica, can share a host and a
 * system identifier, never both of these), and pgdr must be able to read it. Returns why not, or undefined.
 */
const START_TIME_SLACK_SECONDS = 3;

export function localDataDirectoryProblem(pgdata: string, facts: LocalServerFacts): string | undefined {
  let pid: string;
  try {
    pid = readFileSync(join(pgdata, 'postmaster.pid'), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') return `${pgdata} is not readable by this user (run pgdr as the PostgreSQL OS user)`;
    return `${pgdata}/postmaster.pid cannot be read here (${code ?? 'error'}): the server's data directory is not on this host`;
  }
  const lines = pid.split('\n');
  const started = Number(lines[2]);
  const port = Number(lines[3]);
  // postmaster.pid holds the second the postmaster process began; pg_postmaster_start_time() is taken a little later
  // in its start-up (after shared_preload_libraries), a second or two on a busy host: equal is too strict.
  const lag = facts.postmasterStart - started;
  if (!(lag >= 0 && lag <= START_TIME_SLACK_SECONDS) || port !== facts.port) {
    const at = (seconds: number) => (Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : '?');
    return `${pgdata} belongs to another server (its postmaster.pid names port ${lines[3] ?? '?'}, started ${at(started)}; the server pgdr reached runs on port ${facts.port}, started ${at(facts.postmasterStart)})`;
  }
  try {
    accessSync(join(pgdata, 'global', 'pg_control'), constants.R_OK);
  } catch {
    return `${pgdata}/global/pg_control is not readable by this user (run pgdr as the PostgreSQL OS user)`;
  }
  return undefined;
}
