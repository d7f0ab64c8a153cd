import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { tryParseDuration } from '../config/policy.js';
import { UsageError } from '../errors.js';
import { cronProblem, timeZoneProblem } from './cron.js';

// What `pgdr schedule` runs and when: the `schedule:` section of the policy file. Every key has a default, so no
// section at all gives the same timetable as the Kubernetes CronJobs in cronjobs/:
//
//   schedule:
//     timeZone: UTC            # cron expressions are read in this zone
//     leaderGate: patroni      # patroni: run only where the local Patroni member holds the leader key; none: always
//     localPatroni: http://127.0.0.1:8008   # this member's REST API (default: the first --patroni endpoint)
//     gracePeriod: 10m         # on SIGTERM, how long running jobs may finish before they are stopped
//     lockTtl: 5m              # expiry of the per-job repository lock (refreshed while the job runs)
//     jobs:
//       backup:            { cron: "0 2 * * *",    timeout: 12h }
//       wal-archive-check: { cron: "*/5 * * * *",  timeout: 5m }
//       etcd-snapshot:     { cron: "15 */6 * * *", timeout: 30m }   # enabled when etcd endpoints are configured
//       expire:            { cron: "0 4 * * *",    timeout: 2h }
//       verify:            { cron: "0 5 * * 0",    timeout: 12h }
//       drill:             { cron: "0 6 1 * *",    timeout: 6h }
//
// Each job also takes `enabled: true|false` and `args: [...]` (extra arguments for its pgdr command, e.g.
// ["--quick"] for verify). Cron expressions have five fields, or six with seconds first.

export const JOB_NAMES = ['backup', 'wal-archive-check', 'etcd-snapshot', 'expire', 'verify', 'drill'] as const;
export type JobName = (typeof JOB_NAMES)[number];

/** The pgdr command each job runs (the same commands the CronJobs run). */
export const JOB_COMMANDS: Record<JobName, readonly string[]> = {
  backup: ['backup', 'now'],
  'wal-archive-check': ['health', '--check', 'wal-archive'],
  'etcd-snapshot': ['etcd', 'snapshot'],
  expire: ['expire'],
  verify: ['verify'],
  drill: ['drill'],
};

const JOB_DEFAULTS: Record<JobName, { cron: string; timeout: string }> = {
  backup: { cron: '0 2 * * *', timeout: '12h' },
  'wal-archive-check': { cron: '*/5 * * * *', timeout: '5m' },
  'etcd-snapshot': { cron: '15 */6 * * *', timeout: '30m' },
  expire: { cron: '0 4 * * *', timeout: '2h' },
  verify: { cron: '0 5 * * 0', timeout: '12h' },
  drill: { cron: '0 6 1 * *', timeout: '6h' },
};

const durationText = z.string({ error: 'expected a duration such as 10m or 6h' }).refine((t) => tryParseDuration(t) !== undefined, {
  error: (issue) => `${JSON.stringify(issue.input)} is not a duration: write a whole number and a unit (s, m, h, d, w), e.g. 10m`,
});

const cronText = z.string({ error: 'expected a cron expression in quotes, e.g. "0 2 * * *"' }).superRefine((text, ctx) => {
  const problem = cronProblem(text);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(text)} is not a cron expression: ${problem}` });
});

const jobSchema = (name: JobName) =>
  z
    .object({
      cron: cronText.default(JOB_DEFAULTS[name].cron),
      /** Unset: on, except etcd-snapshot, which is on only when etcd endpoints are configured. */
      enabled: z.boolean({ error: 'expected true or false' }).optional(),
      timeout: durationText.default(JOB_DEFAULTS[name].timeout),
      args: z
        .array(z.string().regex(/^[^\0\n]+$/, 'arguments are single lines'), { error: 'expected a list of strings' })
        .default([])
        .refine((args) => !args.some((a) => /^--(repo|cluster|config|json)(=|$)/.test(a)), {
          error: 'the scheduler passes --repo, --cluster, --config and --json itself',
        }),
    })
    .strict()
    .prefault({});

export const ScheduleSchema = z
  .object({
    timeZone: z
      .string()
      .default('UTC')
      .superRefine((tz, ctx) => {
        const problem = timeZoneProblem(tz);
        if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
      }),
    leaderGate: z.enum(['patroni', 'none'], { error: 'expected patroni or none' }).default('patroni'),
    localPatroni: z.string().optional(),
    gracePeriod: durationText.default('10m'),
    lockTtl: durationText.default('5m'),
    jobs: z
      .object(Object.fromEntries(JOB_NAMES.map((n) => [n, jobSchema(n)])) as { [K in JobName]: ReturnType<typeof jobSchema> })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

export type ScheduleSection = z.output<typeof ScheduleSchema>;

export interface ScheduledJob {
  name: JobName;
  cron: string;
  enabled: boolean;
  timeoutMs: number;
  /** pgdr arguments: the job's command, then its extra args. */
  command: string[];
}

export interface ScheduleConfig {
  timeZone: string;
  leaderGate: 'patroni' | 'none';
  localPatroni: string | undefined;
  gracePeriodMs: number;
  lockTtlMs: number;
  jobs: ScheduledJob[];
}

/** Validates a `schedule:` section (undefined: all defaults). `source` names the file in errors. */
export function parseScheduleSection(raw: unknown, source: string, context: { etcdConfigured: boolean }): ScheduleConfig {
  const result = ScheduleSchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    let where = ['schedule', ...issue.path.map(String)].join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      where = [where, issue.keys[0] ?? ''].filter((p) => p !== '').join('.');
      message = `unknown key (jobs are ${JOB_NAMES.join(', ')})`;
    }
    throw new UsageError(`${source}: ${where}: ${message}`, 'see the schedule section in docs/kubernetes.md (pgdr schedule) for every key');
  }
  const section = result.data;
  return {
    timeZone: section.timeZone,
    leaderGate: section.leaderGate,
    localPatroni: section.localPatroni,
    gracePeriodMs: tryParseDuration(section.gracePeriod)!,
    lockTtlMs: tryParseDuration(section.lockTtl)!,
    jobs: JOB_NAMES.map((name) => {
      const job = section.jobs[name];
      return {
        name,
        cron: job.cron.trim(),
        enabled: job.enabled ?? (name === 'etcd-snapshot' ? context.etcdConfigured : true),
        timeoutMs: tryParseDuration(job.timeout)!,
        command: [...JOB_COMMANDS[name], ...job.args],
      };
    }),
  };
}

/**
 * The `schedule:` section of the policy file at `path` (undefined: no file, all defaults). Only this section is
 * read here; the rest of the file is the policy's and validated by loadPolicy.
 */
export function loadScheduleConfig(path: string | undefined, context: { etcdConfigured: boolean }): ScheduleConfig {
  if (path === undefined || path === '') return parseScheduleSection(undefined, 'the default schedule', context);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read policy file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'check the --policy path (or PGDR_POLICY)', err);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new UsageError(`policy file ${path} is not valid YAML: ${((err as Error).message ?? '').split('\n')[0]}`, 'fix the YAML syntax', err);
  }
  const section = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>).schedule : undefined;
  return parseScheduleSection(section, `policy file ${path}`, context);
}
