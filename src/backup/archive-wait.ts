import { ServiceError } from '../errors.js';
import { withConnection, type PgEndpoint } from '../postgres/connection.js';

/**
 * Why the WAL a backup needs has not reached the repository, in the server's own words (pg_stat_archiver): an
 * archive_command that keeps failing, or an archiver that is only behind. pgdr waits on its own clock (--archive-wait);
 * PostgreSQL's "still waiting for all required WAL segments" warning counts wake-ups, not seconds, and fires after a
 * few seconds under write load, so it is no measure of anything.
 */
export interface ArchiverFacts {
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: Date | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: Date | null;
}

/** Pure: the error for a wait that ran out, `what` saying what did not arrive. */
export function archiveWaitFailure(facts: ArchiverFacts, what: string): ServiceError {
  const failing = facts.lastFailedTime !== null && (facts.lastArchivedTime === null || facts.lastFailedTime > facts.lastArchivedTime);
  if (failing) {
    return new ServiceError(
      `PostgreSQL is not archiving WAL: ${what}; archive_command last failed at ${facts.lastFailedTime!.toISOString()} on ${facts.lastFailedWal} (${facts.failedCount} failures; last success ${describeLast(facts)})`,
      'fix archive_command (pgdr wal push %p, the same --repo and --cluster): the server log has each failure\'s reason; pg_stat_archiver shows when it succeeds again',
    );
  }
  return new ServiceError(
    `${what}; pg_stat_archiver shows no failure (last success ${describeLast(facts)}): archiving is behind`,
    'archiving is slower than the server writes WAL: check the repository\'s speed and pg_stat_archiver, or raise --archive-wait on a busy server',
  );
}

function describeLast(a: ArchiverFacts): string {
  return a.lastArchivedWal === null ? 'none' : `${a.lastArchivedWal} at ${a.lastArchivedTime?.toISOString() ?? '?'}`;
}

export async function readArchiverFacts(endpoint: PgEndpoint): Promise<ArchiverFacts> {
  return withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{
      archived_count: string;
      last_archived_wal: string | null;
      last_archived_time: Date | null;
      failed_count: string;
      last_failed_wal: string | null;
      last_failed_time: Date | null;
    }>('SELECT archived_count::text, last_archived_wal, last_archived_time, failed_count::text, last_failed_wal, last_failed_time FROM pg_stat_archiver');
    const row = rows[0];
    if (!row) throw new ServiceError('pg_stat_archiver returned no row', 'check that the server is PostgreSQL 15 or newer');
    return {
      archivedCount: Number(row.archived_count),
      lastArchivedWal: row.last_archived_wal,
      lastArchivedTime: row.last_archived_time,
      failedCount: Number(row.failed_count),
      lastFailedWal: row.last_failed_wal,
      lastFailedTime: row.last_failed_time,
    };
  });
}
