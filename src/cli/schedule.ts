import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { loadScheduleConfig, type ScheduleConfig } from '../schedule/config.js';
import { NodeCronTrigger } from '../schedule/cron-trigger.js';
import { supersedingBackupJob, type FiresAt } from '../schedule/backup-jobs.js';
import { cronFiresAt, nextRuns } from '../schedule/cron.js';
import { AlwaysLeaderGate, PatroniLeaderGate, type LeaderGate } from '../schedule/leader-gate.js';
import { RepositoryJobLocks } from '../schedule/repository-locks.js';
import { Scheduler, type RunRecord } from '../schedule/scheduler.js';
import { settingsArgs, SpawnJobRunner } from '../schedule/spawn-runner.js';
import { addCommonOptions, pgdrExecutable, type CommandContext, type CommonOptions } from './context.js';
import type { Action } from './action.js';

interface ScheduleOptions extends CommonOptions {
  dryRun?: boolean;
  leaderGate?: string;
  localPatroni?: string;
}

const DEFAULT_LOCAL_PATRONI = 'http://127.0.0.1:8008';

export function registerScheduleCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('schedule')
      .description(
        'run backups (full, diff or incr jobs), WAL-archive checks, etcd snapshots, expire, verify and drills on their cron schedules ' +
          '(the schedule: section of the policy file), only while this node is the Patroni leader; stops cleanly on SIGTERM',
      )
      .option('--dry-run', 'print the jobs, their commands and next run times, then exit')
      .option('--leader-gate <gate>', 'patroni (run only where the local Patroni member leads) or none; overrides schedule.leaderGate')
      .option('--local-patroni <url>', `this member's Patroni REST API (default: schedule.localPatroni, the first --patroni endpoint, ${DEFAULT_LOCAL_PATRONI})`)
      .addHelpText(
        'after',
        '\nEach run is logged as one JSON line on stderr: {"event":"job-run","job":...,"outcome":"succeeded|failed|skipped",...}.' +
          '\nA job runs as its own `pgdr <command> --json` process with this scheduler\'s settings; a second run of a job' +
          '\nis skipped while one runs (here, or anywhere: a repository lock per job). See docs/kubernetes.md.',
      ),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as ScheduleOptions;
      const log = jsonLineLogger();
      const config = loadScheduleConfig(ctx.settings.policy, { etcdConfigured: ctx.settings.etcd.length > 0 });
      const jobs = config.jobs;
      const gate = leaderGate(ctx, config, opts);
      const now = new Date();
      const firesAt: FiresAt = (job, at) => cronFiresAt(job.cron, config.timeZone, at);
      // A backup job's runs where one storing more fires too are not its runs: the other job takes them.
      const ownRuns = (job: (typeof jobs)[number]): Date[] =>
        nextRuns(job.cron, config.timeZone, now, job.backupType === undefined ? 3 : 30)
          .filter((at) => supersedingBackupJob(job, at, jobs, firesAt) === undefined)
          .slice(0, 3);
      const plan = jobs.map((job) => ({
        job: job.name,
        enabled: job.enabled,
        cron: job.cron,
        command: ['pgdr', ...job.command, ...(job.repo === undefined ? [] : ['--repo', job.repo])].join(' '),
        timeoutSeconds: job.timeoutMs / 1000,
        nextRuns: job.enabled ? ownRuns(job).map((d) => d.toISOString()) : [],
      }));

      if (opts.dryRun) {
        ctx.emit(
          { timeZone: config.timeZone, leaderGate: gate.description, gracePeriodSeconds: config.gracePeriodMs / 1000, jobs: plan },
          [
            `time zone ${config.timeZone}; leader gate: ${gate.description}; grace period on SIGTERM ${config.gracePeriodMs / 1000} s`,
            ...plan.map((p) =>
              p.enabled
                ? `${p.job.padEnd(18)} ${p.cron.padEnd(16)} ${p.command.padEnd(36)} next ${p.nextRuns.length > 0 ? p.nextRuns.join(', ') : 'none soon: another backup job fires at each of its times'}`
                : `${p.job.padEnd(18)} disabled`,
            ),
          ].join('\n'),
        );
        return 0;
      }

      // Job locks live in one repository every scheduler of the cluster agrees on: the named one, else the first configured.
      const lockCtx = ctx.settings.repository === undefined ? ctx.forRepository(ctx.settings.repositories[0]!) : ctx;
      const { store, layout } = lockCtx.openRepository();
      const counts = { succeeded: 0, failed: 0, skipped: 0 };
      const scheduler = new Scheduler({
        jobs,
        gate,
        runner: new SpawnJobRunner({
          pgdrBin: pgdrExecutable(),
          globalArgs: settingsArgs(ctx.settings, opts.config ?? process.env.PGDR_CONFIG),
          onOutput: (job, line) => log({ event: 'job-output', job: job.name, line }),
        }),
        locks: new RepositoryJobLocks(lockCtx.locker(), config.lockTtlMs),
        trigger: new NodeCronTrigger(config.timeZone, log),
        now: () => new Date(),
        firesAt,
        log: (record) => {
          if ((record as RunRecord).event === 'job-run') counts[(record as RunRecord).outcome]++;
          log(record);
        },
      });
      log({ event: 'scheduler-started', cluster: layout.cluster, repository: store.location, timeZone: config.timeZone, leaderGate: gate.description, pid: process.pid, jobs: plan });
      const signals = watchStopSignals();
      scheduler.start();
      const signal = await signals.first;
      log({ event: 'scheduler-stopping', signal, running: scheduler.runningJobs(), gracePeriodSeconds: config.gracePeriodMs / 1000 });
      // A second signal while waiting for running jobs means "now": cancel them instead of waiting out the grace.
      signals.onRepeat((second) => log({ event: 'scheduler-cancelling', signal: second, cancelled: scheduler.cancelRunning() }));
      const cancelled = await scheduler.stop(config.gracePeriodMs);
      signals.dispose();
      await store.close();
      log({ event: 'scheduler-stopped', signal, cancelled, runs: counts });
      ctx.emit({ stopped: true, signal, cancelled, runs: counts }, '');
      return 0;
    }),
  );
}

/** One JSON object per line on stderr, each with the time: easy for journald, Loki or a test to read. */
function jsonLineLogger(): (record: Record<string, unknown> | RunRecord) => void {
  return (record) => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  };
}

function leaderGate(ctx: CommandContext, config: ScheduleConfig, opts: ScheduleOptions): LeaderGate {
  const kind = opts.leaderGate ?? config.leaderGate;
  if (kind === 'none') return new AlwaysLeaderGate();
  if (kind !== 'patroni') throw new UsageError(`--leader-gate ${JSON.stringify(kind)} is not a leader gate`, 'use --leader-gate patroni or none');
  return new PatroniLeaderGate(opts.localPatroni ?? config.localPatroni ?? ctx.settings.patroni[0] ?? DEFAULT_LOCAL_PATRONI);
}

/**
 * SIGTERM and SIGINT for the whole life of the scheduler: the first resolves `first`, later ones go to onRepeat.
 * The listeners stay until dispose(), after every job process has ended: execa's child cleanup (signal-exit) hooks
 * the same signals and re-raises one that no other listener handles, which would kill the scheduler mid-stop. A
 * timer keeps the event loop alive until the first signal: listeners do not, and with every job disabled nothing
 * else would.
 */
function watchStopSignals(): { first: Promise<NodeJS.Signals>; onRepeat(handler: (signal: NodeJS.Signals) => void): void; dispose(): void } {
  let received = 0;
  let repeat: (signal: NodeJS.Signals) => void = () => undefined;
  let resolveFirst: (signal: NodeJS.Signals) => void = () => undefined;
  const first = new Promise<NodeJS.Signals>((resolve) => {
    resolveFirst = resolve;
  });
  const keepAlive = setInterval(() => undefined, 3_600_000);
  const handle = (signal: NodeJS.Signals): void => {
    received++;
    if (received === 1) {
      clearInterval(keepAlive);
      resolveFirst(signal);
    } else {
      repeat(signal);
    }
  };
  const onTerm = (): void => handle('SIGTERM');
  const onInt = (): void => handle('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return {
    first,
    onRepeat: (handler) => {
      repeat = handler;
    },
    dispose: () => {
      clearInterval(keepAlive);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
    },
  };
}
