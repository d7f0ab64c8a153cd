import { ServiceError, errorMessage } from '../errors.js';
import { withConnection, type PgEndpoint } from '../postgres/connection.js';

/**
 * A base backup from a primary ends inside the server: the walsender waits until the backup's last WAL segment is
 * archived (wait event BackupWaitWalArchive). If archiving is broken, that wait never ends. PostgreSQL's own
 * "still waiting for all required WAL segments to be archived (60 seconds elapsed)" counts wake-ups, not seconds, and
 * under write load it fires after a few seconds, so pgdr keeps its own clock: it watches the walsender's wait event
 * and, once the wait has lasted --archive-wait, reads pg_stat_archiver to say why, and stops the backup.
 */
export interface ArchiverFacts {
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: Date | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: Date | null;
}

export interface ArchiveWaitSample {
  /** Whether the backup's walsender is waiting for WAL archiving right now. */
  waiting: boolean;
  archiver: ArchiverFacts;
}

export type ArchiveWaitVerdict = { kind: 'fine'; waitingSince: number | undefined } | { kind: 'stuck'; error: ServiceError };

/** Pure: one more sample at `now`; the wait is judged by its length, and explained by pg_stat_archiver. */
export function judgeArchiveWait(waitingSince: number | undefined, sample: ArchiveWaitSample, now: number, waitMs: number): ArchiveWaitVerdict {
  if (!sample.waiting) return { kind: 'fine', waitingSince: undefined };
  const since = waitingSince ?? now;
  if (now - since < waitMs) return { kind: 'fine', waitingSince: since };
  const seconds = Math.round((now - since) / 1000);
  const a = sample.archiver;
  const failing = a.lastFailedTime !== null && (a.lastArchivedTime === null || a.lastFailedTime > a.lastArchivedTime);
  if (failing) {
    return {
      kind: 'stuck',
      error: new ServiceError(
        `PostgreSQL is not archiving WAL, so the backup cannot end: archive_command last failed at ${a.lastFailedTime!.toISOString()} on ${a.lastFailedWal} (${a.failedCount} failures; last success ${describeLast(a)}); the server waited ${seconds} s`,
        "fix archive_command (pgdr wal push %p, the same --repo and --cluster): the server log has each failure's reason; pg_stat_archiver shows when it succeeds again",
      ),
    };
  }
  return {
    kind: 'stuck',
    error: new ServiceError(
      `WAL archiving did not reach the backup's end within --archive-wait (${seconds} s); pg_stat_archiver shows no failure (last success ${describeLast(a)})`,
      'archiving is slower than the server writes WAL: check the repository\'s speed and pg_stat_archiver, or raise --archive-wait on a busy server',
    ),
  };
}

function describeLast(a: ArchiverFacts): string {
  return a.lastArchivedWal === null ? 'none' : `${a.lastArchivedWal} at ${a.lastArchivedTime?.toISOString() ?? '?'}`;
}

export interface ArchiveWaitWatch {
  /** Rejects with the ServiceError to stop the backup with; never resolves. */
  readonly stuck: Promise<never>;
  stop(): void;
}

/** Polls the server while the backup runs; `label` finds the backup's walsender (its BASE_BACKUP command names it). */
export function watchArchiveWait(endpoint: PgEndpoint, label: string, options: { waitMs: number; pollMs?: number; log: (message: string) => void }): ArchiveWaitWatch {
  let stopped = false;
  let reject: (err: ServiceError) => void = () => undefined;
  const stuck = new Promise<never>((_resolve, rej) => {
    reject = rej;
  });
  stuck.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  let waitingSince: number | undefined;
  let sampleFailures = 0;
  const poll = async (): Promise<void> => {
    if (stopped) return;
    try {
      const verdict = judgeArchiveWait(waitingSince, await sampleArchiveWait(endpoint, label), Date.now(), options.waitMs);
      sampleFailures = 0;
      if (verdict.kind === 'stuck') {
        stopped = true;
        reject(verdict.error);
        return;
      }
      if (verdict.waitingSince !== undefined && waitingSince === undefined) options.log('the server is waiting for WAL archiving to end the backup');
      waitingSince = verdict.waitingSince;
    } catch (err) {
      // The backup itself reports a server that went away; a monitor that cannot look just says so once.
      if (++sampleFailures === 3) options.log(`cannot watch the archive wait (${errorMessage(err)}); relying on pg_basebackup`);
    }
    if (!stopped) timer = setTimeout(() => void poll(), options.pollMs ?? 2000);
  };
  timer = setTimeout(() => void poll(), options.pollMs ?? 2000);
  return {
    stuck,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

async function sampleArchiveWait(endpoint: PgEndpoint, label: string): Promise<ArchiveWaitSample> {
  return withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{
      waiting: boolean;
      archived_count: string;
      last_archived_wal: string | null;
      last_archived_time: Date | null;
      failed_count: string;
      last_failed_wal: string | null;
      last_failed_time: Date | null;
    }>(
      `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                       WHERE backend_type = 'walsender' AND wait_event = 'BackupWaitWalArchive'
                         AND position($1 in query) > 0) AS waiting,
              archived_count::text, last_archived_wal, last_archived_time, failed_count::text, last_failed_wal, last_failed_time
         FROM pg_stat_archiver`,
      [`'${label}'`],
    );
    const row = rows[0];
    if (!row) throw new Error('pg_stat_archiver returned no row');
    return {
      waiting: row.waiting,
      archiver: {
        archivedCount: Number(row.archived_count),
        lastArchivedWal: row.last_archived_wal,
        lastArchivedTime: row.last_archived_time,
        failedCount: Number(row.failed_count),
        lastFailedWal: row.last_failed_wal,
        lastFailedTime: row.last_failed_time,
      },
    };
  });
}
