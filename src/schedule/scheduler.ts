import { excludeEachOther, supersedingBackupJob, type FiresAt } from './backup-jobs.js';
import type { JobName, ScheduledJob } from './config.js';
import type { LeaderGate } from './leader-gate.js';

/**
 * The scheduling logic of `pgdr schedule`, with every effect behind an interface: when a job's cron fires, the
 * scheduler (1) skips a backup job when another backup job that stores more fires at the same moment
 * (src/schedule/backup-jobs.ts), (2) skips it if the same job, or for a backup job any backup job, is still running
 * here, (3) asks the leader gate and skips it unless this node is the leader, (4) takes the job's repository lock and
 * skips it if another node holds it, (5) runs it, and (6) logs one record. stop() ends the timers and waits for running jobs up to a grace period, then cancels them.
 * Tests drive it with a manual trigger, a fake gate and runner, and a fixed clock.
 */

export type RunOutcome = 'succeeded' | 'failed' | 'skipped';
export type SkipReason = 'superseded' | 'overlap' | 'not-leader' | 'leader-unknown' | 'locked' | 'stopping';

/** One line of the scheduler's log (JSON on stderr). */
export interface RunRecord {
  event: 'job-run';
  job: JobName;
  /** When the cron fired. */
  scheduledAt: string;
  outcome: RunOutcome;
  reason?: SkipReason;
  /** The gate's or the lock's explanation, or the failure's last line. */
  detail?: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  exitCode?: number;
  /** The job command's --json result, when it printed a small one. */
  result?: unknown;
}

export interface JobResult {
  exitCode: number;
  /** Last meaningful stderr line, for a failed run. */
  detail?: string;
  result?: unknown;
}

/** Runs a job's command; must end (settle) soon after `signal` aborts. */
export interface JobRunner {
  run(job: ScheduledJob, signal: AbortSignal): Promise<JobResult>;
}

export type LockAttempt = { acquired: true; release(): Promise<void> } | { acquired: false; detail: string };

/** The per-job repository lock: never two runs of one job at once, across all nodes. */
export interface JobLocks {
  acquire(job: ScheduledJob): Promise<LockAttempt>;
}

/** Fires `fire` whenever a job's cron expression matches; stop() ends it. */
export interface Trigger {
  schedule(job: ScheduledJob, fire: (scheduledAt: Date) => void): { stop(): void };
}

export interface SchedulerDeps {
  jobs: readonly ScheduledJob[];
  gate: LeaderGate;
  runner: JobRunner;
  locks: JobLocks;
  trigger: Trigger;
  now: () => Date;
  log: (record: RunRecord | Record<string, unknown>) => void;
  /** Whether a job's cron fires at a moment; without it no backup job supersedes another. */
  firesAt?: FiresAt;
}

export class Scheduler {
  private readonly running = new Map<JobName, { job: ScheduledJob; promise: Promise<RunRecord>; abort: AbortController }>();
  private timers: Array<{ stop(): void }> = [];
  private stopping = false;

  constructor(private readonly deps: SchedulerDeps) {}

  /** The enabled jobs, each on its cron. */
  start(): void {
    for (const job of this.deps.jobs) {
      if (!job.enabled) continue;
      this.timers.push(
        this.deps.trigger.schedule(job, (scheduledAt) => {
          void this.fire(job.name, scheduledAt);
        }),
      );
    }
  }

  /** Jobs running now. */
  runningJobs(): JobName[] {
    return [...this.running.keys()];
  }

  /** One scheduled run of `name`, as if its cron fired at `scheduledAt`. Never throws: the record says what happened. */
  fire(name: JobName, scheduledAt: Date): Promise<RunRecord> {
    const job = this.deps.jobs.find((j) => j.name === name);
    if (job === undefined) return Promise.reject(new Error(`no job named ${name}`));
    const base = { event: 'job-run' as const, job: name, scheduledAt: scheduledAt.toISOString() };
    if (this.stopping) return Promise.resolve(this.record({ ...base, outcome: 'skipped', reason: 'stopping' }));
    const winner = this.deps.firesAt === undefined ? undefined : supersedingBackupJob(job, scheduledAt, this.deps.jobs, this.deps.firesAt);
    if (winner !== undefined) {
      return Promise.resolve(
        this.record({ ...base, outcome: 'skipped', reason: 'superseded', detail: `the ${winner.name} job fires at the same moment and takes a ${winner.backupType} backup instead` }),
      );
    }
    const busy = [...this.running.values()].find((r) => excludeEachOther(r.job, job));
    if (busy !== undefined) {
      const detail = busy.job.name === name ? 'the previous run of this job is still running here' : `the ${busy.job.name} job, a backup too, is still running here`;
      return Promise.resolve(this.record({ ...base, outcome: 'skipped', reason: 'overlap', detail }));
    }
    // Registered before the first await, so a second firing during the gate check counts as an overlap.
    const abort = new AbortController();
    const promise = this.execute(job, base, abort.signal).finally(() => this.running.delete(name));
    this.running.set(name, { job, promise, abort });
    return promise;
  }

  private async execute(job: ScheduledJob, base: Pick<RunRecord, 'event' | 'job' | 'scheduledAt'>, signal: AbortSignal): Promise<RunRecord> {
    const answer = await this.deps.gate.check();
    if (answer.kind !== 'leader') {
      return this.record({ ...base, outcome: 'skipped', reason: answer.kind === 'not-leader' ? 'not-leader' : 'leader-unknown', detail: answer.detail });
    }
    if (signal.aborted || this.stopping) return this.record({ ...base, outcome: 'skipped', reason: 'stopping' });
    let lock: LockAttempt;
    try {
      lock = await this.deps.locks.acquire(job);
    } catch (err) {
      return this.record({ ...base, outcome: 'failed', detail: `could not take the job lock: ${(err as Error).message}` });
    }
    if (!lock.acquired) return this.record({ ...base, outcome: 'skipped', reason: 'locked', detail: lock.detail });
    const started = this.deps.now();
    let result: JobResult;
    try {
      result = await this.deps.runner.run(job, signal);
    } catch (err) {
      result = { exitCode: -1, detail: (err as Error).message };
    } finally {
      await lock.release().catch(() => undefined);
    }
    const finished = this.deps.now();
    return this.record({
      ...base,
      outcome: result.exitCode === 0 ? 'succeeded' : 'failed',
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationMs: finished.getTime() - started.getTime(),
      exitCode: result.exitCode,
      ...(result.detail === undefined || result.exitCode === 0 ? {} : { detail: result.detail }),
      ...(result.result === undefined ? {} : { result: result.result }),
    });
  }

  /**
   * Stops the timers, waits up to `graceMs` for running jobs, then cancels the rest and waits for them to end.
   * Returns the jobs that had to be cancelled.
   */
  async stop(graceMs: number): Promise<JobName[]> {
    this.stopping = true;
    for (const timer of this.timers) timer.stop();
    this.timers = [];
    const pending = [...this.running.entries()];
    if (pending.length === 0) return [];
    let timeout: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'grace-over'>((resolve) => {
      timeout = setTimeout(() => resolve('grace-over'), graceMs);
    });
    const outcome = await Promise.race([Promise.allSettled(pending.map(([, r]) => r.promise)).then(() => 'done' as const), graceOver]);
    clearTimeout(timeout);
    if (outcome === 'done') return [];
    const cancelled = [...this.running.keys()];
    for (const [, run] of this.running) run.abort.abort();
    await Promise.allSettled([...this.running.values()].map((r) => r.promise));
    return cancelled;
  }

  /** Cancels every running job now (a second SIGTERM while stopping): their runners kill the job processes. */
  cancelRunning(): JobName[] {
    const names = [...this.running.keys()];
    for (const run of this.running.values()) run.abort.abort();
    return names;
  }

  private record(record: RunRecord): RunRecord {
    this.deps.log(record);
    return record;
  }
}
