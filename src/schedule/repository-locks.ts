import { LockHeldError, type Locker } from '../repo/lock.js';
import type { ScheduledJob } from './config.js';
import type { JobLocks, LockAttempt } from './scheduler.js';

/**
 * One repository lock per job (<cluster>/locks/schedule-<job>.json), taken without waiting: if another scheduler
 * (a node that briefly also thought it led, or a second scheduler by mistake) runs the job, this run is skipped.
 * The lock expires `ttlMs` after its last refresh, so a scheduler killed mid-job blocks the job only that long.
 */
export class RepositoryJobLocks implements JobLocks {
  constructor(
    private readonly lock: Locker,
    private readonly ttlMs: number,
  ) {}

  async acquire(job: ScheduledJob): Promise<LockAttempt> {
    try {
      const lock = await this.lock(`schedule-${job.name}`, `the scheduled ${job.name} job`, { ttlMs: this.ttlMs, waitMs: 0 });
      return { acquired: true, release: () => lock.release() };
    } catch (err) {
      // A LockHeldError names the holder; any other failure is a real error.
      if (err instanceof LockHeldError) return { acquired: false, detail: err.message };
      throw err;
    }
  }
}
