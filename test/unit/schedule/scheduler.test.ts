import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { parseScheduleSection, type JobName, type ScheduledJob } from '../../../src/schedule/config.js';
import type { LeaderAnswer, LeaderGate } from '../../../src/schedule/leader-gate.js';
import { repositoryLocker } from '../../../src/repo/lock.js';
import { RepositoryJobLocks } from '../../../src/schedule/repository-locks.js';
import { Scheduler, type JobLocks, type JobResult, type JobRunner, type RunRecord, type Trigger } from '../../../src/schedule/scheduler.js';
import { createFsStore } from '../../../src/storage/fs-store.js';

const dir = mkdtempSync(join(tmpdir(), 'pgdr-scheduler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const JOBS = parseScheduleSection({ jobs: { drill: { enabled: false } } }, 'test', { etcdConfigured: false }).jobs;
const AT = new Date('2024-05-03T02:00:00Z');

/** A gate whose answer the test sets: the local Patroni member leads, follows, or cannot be asked. */
class FakeGate implements LeaderGate {
  readonly description = 'fake';
  calls = 0;
  constructor(public answer: LeaderAnswer['kind']) {}
  async check(): Promise<LeaderAnswer> {
    this.calls++;
    return { kind: this.answer, detail: `fake ${this.answer}` } as LeaderAnswer;
  }
}

/** A runner whose runs the test finishes by hand; it records every start and sees cancellation. */
class ManualRunner implements JobRunner {
  readonly started: JobName[] = [];
  readonly aborted: JobName[] = [];
  private readonly pending = new Map<JobName, (r: JobResult) => void>();
  run(job: ScheduledJob, signal: AbortSignal): Promise<JobResult> {
    this.started.push(job.name);
    return new Promise((resolve) => {
      this.pending.set(job.name, resolve);
      signal.addEventListener('abort', () => {
        this.aborted.push(job.name);
        resolve({ exitCode: 143, detail: 'stopped by SIGTERM' });
      });
    });
  }
  finish(name: JobName, result: JobResult = { exitCode: 0 }): void {
    const resolve = this.pending.get(name);
    if (!resolve) throw new Error(`${name} is not running`);
    this.pending.delete(name);
    resolve(result);
  }
  async waitStarted(count: number): Promise<void> {
    for (let i = 0; i < 200 && this.started.length < count; i++) await new Promise((r) => setTimeout(r, 5));
    expect(this.started.length).toBe(count);
  }
}

class ManualTrigger implements Trigger {
  readonly fires = new Map<JobName, (at: Date) => void>();
  stopped = 0;
  schedule(job: ScheduledJob, fire: (at: Date) => void): { stop(): void } {
    this.fires.set(job.name, fire);
    return { stop: () => this.stopped++ };
  }
}

const noLocks: JobLocks = { acquire: async () => ({ acquired: true, release: async () => undefined }) };

function clock(start: Date): { now: () => Date; advance(ms: number): void } {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (ms) => (t += ms) };
}

function setup(options: { gate?: FakeGate; locks?: JobLocks; jobs?: readonly ScheduledJob[] } = {}) {
  const gate = options.gate ?? new FakeGate('leader');
  const runner = new ManualRunner();
  const trigger = new ManualTrigger();
  const time = clock(AT);
  const log: Array<RunRecord | Record<string, unknown>> = [];
  const scheduler = new Scheduler({ jobs: options.jobs ?? JOBS, gate, runner, locks: options.locks ?? noLocks, trigger, now: time.now, log: (r) => log.push(r) });
  return { scheduler, gate, runner, trigger, time, log };
}

describe('Scheduler', () => {
  it('runs a job on the leader and logs one record with the injected clock', async () => {
    const { scheduler, runner, time, log } = setup();
    const run = scheduler.fire('backup', AT);
    await runner.waitStarted(1);
    expect(scheduler.runningJobs()).toEqual(['backup']);
    time.advance(90_000);
    runner.finish('backup', { exitCode: 0, result: { backupId: '20240503T020000Z' } });
    const record = await run;
    expect(record).toEqual({
      event: 'job-run',
      job: 'backup',
      scheduledAt: '2024-05-03T02:00:00.000Z',
      outcome: 'succeeded',
      startedAt: '2024-05-03T02:00:00.000Z',
      finishedAt: '2024-05-03T02:01:30.000Z',
      durationMs: 90_000,
      exitCode: 0,
      result: { backupId: '20240503T020000Z' },
    });
    expect(log).toEqual([record]);
    expect(scheduler.runningJobs()).toEqual([]);
  });

  it("skips the job on a replica's node without running anything", async () => {
    const { scheduler, runner, log } = setup({ gate: new FakeGate('not-leader') });
    const record = await scheduler.fire('backup', AT);
    expect(record).toMatchObject({ outcome: 'skipped', reason: 'not-leader', detail: 'fake not-leader' });
    expect(runner.started).toEqual([]);
    expect(log).toHaveLength(1);
  });

  it('skips when the gate cannot tell (Patroni down): never guesses', async () => {
    const { scheduler, runner } = setup({ gate: new FakeGate('unknown') });
    expect(await scheduler.fire('expire', AT)).toMatchObject({ outcome: 'skipped', reason: 'leader-unknown' });
    expect(runner.started).toEqual([]);
  });

  it('asks the gate at every run, so it follows a failover', async () => {
    const gate = new FakeGate('not-leader');
    const { scheduler, runner } = setup({ gate });
    expect((await scheduler.fire('verify', AT)).outcome).toBe('skipped');
    gate.answer = 'leader'; // the local member was promoted
    const run = scheduler.fire('verify', new Date(AT.getTime() + 60_000));
    await runner.waitStarted(1);
    runner.finish('verify');
    expect((await run).outcome).toBe('succeeded');
    gate.answer = 'not-leader'; // and demoted again
    expect((await scheduler.fire('verify', new Date(AT.getTime() + 120_000))).outcome).toBe('skipped');
    expect(gate.calls).toBe(3);
  });

  it('never runs two of the same job at once, but different jobs side by side', async () => {
    const { scheduler, runner, log } = setup();
    const first = scheduler.fire('backup', AT);
    // The second firing arrives while the first is still asking the gate: it is an overlap already.
    const second = await scheduler.fire('backup', new Date(AT.getTime() + 1000));
    expect(second).toMatchObject({ outcome: 'skipped', reason: 'overlap' });
    const other = scheduler.fire('expire', AT);
    await runner.waitStarted(2);
    expect(runner.started.sort()).toEqual(['backup', 'expire']);
    runner.finish('backup');
    runner.finish('expire', { exitCode: 3, detail: 'repository unreachable' });
    expect((await first).outcome).toBe('succeeded');
    expect(await other).toMatchObject({ outcome: 'failed', exitCode: 3, detail: 'repository unreachable' });
    expect(log.map((r) => r.outcome)).toEqual(['skipped', 'succeeded', 'failed']);
  });

  it('runs only the backup job that stores the most when several fire at once, and never two backup jobs side by side', async () => {
    const jobs = parseScheduleSection(
      { jobs: { backup: { cron: '0 2 * * 0', type: 'full' }, 'backup-incr': { cron: '0 2 * * *', type: 'incr', engine: 'files' } } },
      'test',
      { etcdConfigured: false },
    ).jobs;
    const runner = new ManualRunner();
    const log: Array<RunRecord | Record<string, unknown>> = [];
    const firesAt = (job: ScheduledJob, at: Date) => job.name === 'backup-incr' || at.getUTCDay() === 0;
    const scheduler = new Scheduler({ jobs, gate: new FakeGate('leader'), runner, locks: noLocks, trigger: new ManualTrigger(), now: () => AT, log: (r) => log.push(r), firesAt });
    // Sunday 02:00: both fire; the incr's timer happens to fire first.
    const sunday = new Date('2024-05-05T02:00:00Z');
    expect(await scheduler.fire('backup-incr', sunday)).toMatchObject({
      outcome: 'skipped',
      reason: 'superseded',
      detail: 'the backup job fires at the same moment and takes a full backup instead',
    });
    const full = scheduler.fire('backup', sunday);
    await runner.waitStarted(1);
    // Monday's incr while Sunday's full still runs: skipped, naming the running job.
    expect(await scheduler.fire('backup-incr', new Date('2024-05-06T02:00:00Z'))).toMatchObject({
      outcome: 'skipped',
      reason: 'overlap',
      detail: 'the backup job, a backup too, is still running here',
    });
    runner.finish('backup');
    expect((await full).outcome).toBe('succeeded');
    const incr = scheduler.fire('backup-incr', new Date('2024-05-07T02:00:00Z'));
    await runner.waitStarted(2);
    runner.finish('backup-incr');
    expect((await incr).outcome).toBe('succeeded');
    expect(runner.started).toEqual(['backup', 'backup-incr']);
  });

  it('skips a run whose repository lock another scheduler holds (real locks on an fs repository)', async () => {
    const store = createFsStore({ root: join(dir, 'repo-locks') });
    const layout = new RepositoryLayout('main');
    const locks = new RepositoryJobLocks(repositoryLocker(store, layout), 60_000);
    // Two schedulers that both believe they lead (a split brain the gate cannot see) share one repository.
    const a = setup({ locks });
    const b = setup({ locks });
    const runA = a.scheduler.fire('backup', AT);
    await a.runner.waitStarted(1);
    const skipped = await b.scheduler.fire('backup', AT);
    expect(skipped).toMatchObject({ outcome: 'skipped', reason: 'locked' });
    expect(skipped.detail).toMatch(/is locked for the scheduled backup job/);
    expect(b.runner.started).toEqual([]);
    a.runner.finish('backup');
    await runA;
    // Released after the run: the other scheduler gets it next time.
    const runB = b.scheduler.fire('backup', AT);
    await b.runner.waitStarted(1);
    b.runner.finish('backup');
    expect((await runB).outcome).toBe('succeeded');
    expect(await store.head(layout.lock('schedule-backup'))).toBeNull();
    await store.close();
  });

  it('reports a failed lock as a failed run and a throwing runner as a failed run', async () => {
    const broken = setup({ locks: { acquire: async () => Promise.reject(new Error('EACCES')) } });
    expect(await broken.scheduler.fire('backup', AT)).toMatchObject({ outcome: 'failed', detail: 'could not take the job lock: EACCES' });
    const throwing = new Scheduler({
      jobs: JOBS,
      gate: new FakeGate('leader'),
      runner: { run: async () => Promise.reject(new Error('spawn ENOENT')) },
      locks: noLocks,
      trigger: new ManualTrigger(),
      now: () => AT,
      log: () => undefined,
    });
    expect(await throwing.fire('backup', AT)).toMatchObject({ outcome: 'failed', exitCode: -1, detail: 'spawn ENOENT' });
  });

  it('schedules only the enabled jobs and fires through the trigger', async () => {
    const { scheduler, trigger, runner } = setup();
    scheduler.start();
    expect([...trigger.fires.keys()]).toEqual(['backup', 'wal-archive-check', 'expire', 'verify']);
    trigger.fires.get('wal-archive-check')!(AT);
    await runner.waitStarted(1);
    expect(runner.started).toEqual(['wal-archive-check']);
    runner.finish('wal-archive-check');
    expect(await scheduler.stop(1000)).toEqual([]);
    expect(trigger.stopped).toBe(4);
  });

  it('on stop waits for a running job that ends within the grace period', async () => {
    const { scheduler, runner } = setup();
    scheduler.start();
    const run = scheduler.fire('backup', AT);
    await runner.waitStarted(1);
    const stopped = scheduler.stop(5_000);
    // New firings are refused while stopping.
    expect(await scheduler.fire('expire', AT)).toMatchObject({ outcome: 'skipped', reason: 'stopping' });
    setTimeout(() => runner.finish('backup'), 20);
    expect(await stopped).toEqual([]);
    expect((await run).outcome).toBe('succeeded');
    expect(runner.aborted).toEqual([]);
  });

  it('on stop cancels a job still running after the grace period', async () => {
    const { scheduler, runner } = setup();
    const run = scheduler.fire('verify', AT);
    await runner.waitStarted(1);
    expect(await scheduler.stop(30)).toEqual(['verify']);
    expect(runner.aborted).toEqual(['verify']);
    expect(await run).toMatchObject({ outcome: 'failed', exitCode: 143 });
  });

  it('cancels at once on request (a second SIGTERM)', async () => {
    const { scheduler, runner } = setup();
    const backup = scheduler.fire('backup', AT);
    await runner.waitStarted(1);
    expect(scheduler.cancelRunning()).toEqual(['backup']);
    expect((await backup).outcome).toBe('failed');
  });
});
