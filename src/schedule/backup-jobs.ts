import type { ScheduledBackupType, ScheduledJob } from './config.js';

/**
 * How backup jobs share a schedule. A policy may hold several (a weekly full and a daily incr), and their crons may
 * fire at the same moment (Sunday 02:00 matches both "0 2 * * 0" and "0 2 * * *"). Only one of them should run then:
 * the one that stores the most, since a full serves every restore a diff or incr would, and a diff every one an incr
 * would. Deciding from the crons alone, not from which timer fired first, makes the choice the same every time and
 * on every node. Pure: the scheduler passes in how to ask a cron whether it fires at a moment.
 */

const STORES_MORE: Record<ScheduledBackupType, number> = { full: 3, diff: 2, incr: 1 };

/** Whether `job`'s cron fires at `at` (to the second). */
export type FiresAt = (job: ScheduledJob, at: Date) => boolean;

/**
 * The enabled backup job that runs instead of `job` at `at`, or undefined when `job` runs. Among the backup jobs
 * firing at `at`, the one that stores the most wins; between two of the same type, the one whose name sorts first.
 */
export function supersedingBackupJob(job: ScheduledJob, at: Date, jobs: readonly ScheduledJob[], firesAt: FiresAt): ScheduledJob | undefined {
  if (job.backupType === undefined) return undefined;
  const rank = (j: ScheduledJob) => STORES_MORE[j.backupType!];
  let winner = job;
  for (const other of jobs) {
    if (other === job || other.name === job.name || !other.enabled || other.backupType === undefined) continue;
    // A full into another repository serves no restore from this one.
    if (other.repo !== job.repo) continue;
    if (!firesAt(other, at)) continue;
    if (rank(other) > rank(winner) || (rank(other) === rank(winner) && other.name < winner.name)) winner = other;
  }
  return winner === job ? undefined : winner;
}

/** Whether two jobs must not run at once on one node: two backups of the cluster would only wait on each other's lock. */
export function excludeEachOther(a: ScheduledJob, b: ScheduledJob): boolean {
  return a.name === b.name || (a.backupType !== undefined && b.backupType !== undefined);
}
