import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceError } from '../errors.js';
import { childEnv } from '../process/child-env.js';
import { runCommand } from '../process/subprocess.js';
import { pgBinary } from './binaries.js';
import { withConnection } from './connection.js';

/** Starting and watching a PostgreSQL server on this host (a restored data directory). */
export async function startLocalServer(pgdata: string, logFile: string, timeoutSeconds: number): Promise<void> {
  if (process.getuid?.() === 0) {
    throw new ServiceError('PostgreSQL refuses to run as root, so pgdr cannot start it as root', 'run the restore as the PostgreSQL OS user, e.g. `runuser -u postgres -- pgdr restore ... --start`');
  }
  try {
    await runCommand(pgBinary('pg_ctl'), ['-D', pgdata, '-l', logFile, '-w', '-t', String(timeoutSeconds), 'start'], {
      label: 'pg_ctl start',
      // The server's restore_command is `pgdr wal fetch`: it inherits the repository settings and credentials from here.
      env: childEnv('postgres-server'),
      timeoutMs: (timeoutSeconds + 30) * 1000,
    });
  } catch (err) {
    throw new ServiceError(
      `PostgreSQL did not start from ${pgdata}: ${lastFatal(logFile) ?? (err as Error).message}`,
      `read ${logFile}`,
      err,
    );
  }
}

export async function stopLocalServer(pgdata: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  await runCommand(pgBinary('pg_ctl'), ['-D', pgdata, '-m', mode, '-w', 'stop'], { label: 'pg_ctl stop', timeoutMs: 120_000, env: childEnv('postgres-client') });
}

/** Port and socket directory of a running server, from postmaster.pid (lines 4 and 5). */
export function runningServerAddress(pgdata: string): { port: number; socketDir: string; host: string } | null {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const port = Number(lines[3]);
  const socketDir = (lines[4] ?? '').trim();
  const listen = (lines[5] ?? '').trim();
  if (!Number.isInteger(port)) return null;
  return { port, socketDir, host: socketDir || (listen === '*' || listen === '' ? '127.0.0.1' : listen) };
}

/** Whether the postmaster recorded in postmaster.pid is alive. */
export function isServerRunning(pgdata: string): boolean {
  return livePostmasterPid(pgdata) !== undefined;
}

/**
 * The pid in postmaster.pid when that process is alive and, as far as /proc can tell, a postmaster of this data
 * directory (a postmaster's working directory is its data directory): a stale file whose pid was reused by some
 * other process does not count.
 */
export function livePostmasterPid(pgdata: string): number | undefined {
  const pidFile = join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  try {
    const cwd = readlinkSync(`/proc/${pid}/cwd`);
    if (cwd !== realpathSync(pgdata)) return undefined;
  } catch {
    // /proc hidden or another user's process: assume it is the postmaster, the safe answer
  }
  return pid;
}

/** The last FATAL or PANIC line of a server log, else its last line: what to show when a start or recovery fails. */
export function lastFatal(logFile: string): string | undefined {
  try {
    const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const fatal = lines.filter((l) => /\b(FATAL|PANIC):/.test(l));
    return fatal[fatal.length - 1]?.replace(/^.*?(FATAL|PANIC):\s*/, '$1: ') ?? lines[lines.length - 1];
  } catch {
    return undefined;
  }
}

export interface PromotionResult {
  timeline: number;
  lsn: string;
}

/**
 * Waits until recovery has reached its target and the server promoted (pg_is_in_recovery() is false), connecting as
 * `user` (--pg-user) or libpq's default. Recovery that stops short (a target beyond the archive) makes PostgreSQL exit with FATAL: that is reported, not waited out.
 */
export async function waitForPromotion(pgdata: string, logFile: string, timeoutMs: number, user?: string): Promise<PromotionResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isServerRunning(pgdata)) {
      throw new ServiceError(
        `PostgreSQL stopped during recovery: ${lastFatal(logFile) ?? 'no FATAL line in the log'}`,
        `read ${logFile}; a target beyond the archived WAL or a missing WAL segment stops recovery`,
      );
    }
    const address = runningServerAddress(pgdata);
    if (address) {
      const state = await withConnection({ host: address.host, port: address.port, user: user ?? process.env.PGUSER }, async (client) => {
        const { rows } = await client.query<{ in_recovery: boolean; walfile: string | null; lsn: string | null }>(
          `SELECT pg_is_in_recovery() AS in_recovery,
                  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
                  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn`,
        );
        return rows[0];
      }).catch(() => undefined);
      if (state && !state.in_recovery && state.walfile) {
        return { timeline: parseInt(state.walfile.slice(0, 8), 16), lsn: state.lsn ?? '' };
      }
    }
    if (Date.now() >= deadline) {
      throw new ServiceError(`recovery did not finish within ${Math.round(timeoutMs / 1000)} s`, `the server is still running; follow ${logFile}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
