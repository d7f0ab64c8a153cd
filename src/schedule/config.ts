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
//
// Backup jobs (`backup`, and any number more named `backup-<name>`) also take `type: full|diff|incr` and
// `engine: auto|files|basebackup`, so one policy can hold a weekly full and daily incrementals:
//
//       backup:      { cron: "0 2 * * 0", type: full, engine: files }   # Sundays
//       backup-incr: { cron: "0 2 * * *", type: incr, engine: files }   # daily; on Sunday the full runs instead
// and `repo: NAME` (a name from the config file's repositories:) for backups into another repository, e.g. a daily
// full into an off-site one: `backup-offsite: { cron: "30 3 * * *", type: full, repo: b2 }`.
//
// When several backup jobs fire at the same moment only the one storing the most runs (full > diff > incr; see
// src/schedule/backup-jobs.ts), and a backup job never starts here while another one is still running.

export const JOB_NAMES = ['backup', 'wal-archive-check', 'etcd-snapshot', 'expire', 'verify', 'drill'] as const;
export type FixedJobName = (typeof JOB_NAMES)[number];
/** A fixed job, or one more backup job (`backup-weekly`, `backup-incr`, ...). */
export type JobName = FixedJobName | `backup-${string}`;

/** Names of additional backup jobs: `backup-` and lowercase words joined by dashes. */
const EXTRA_BACKUP_JOB = /^backup-[a-z0-9]+(?:-[a-z0-9]+)*$/;
const MAX_JOB_NAME = 48;

export const BACKUP_TYPES = ['full', 'diff', 'incr'] as const;
export type ScheduledBackupType = (typeof BACKUP_TYPES)[number];
export const BACKUP_ENGINES = ['auto', 'files', 'basebackup'] as const;

/** Whether a job runs `pgdr backup now`. */
export function isBackupJobName(name: string): boolean {
  return name === 'backup' || (EXTRA_BACKUP_JOB.test(name) && name.length <= MAX_JOB_NAME);
}

/** The pgdr command each job runs (the same commands the CronJobs run). */
export const JOB_COMMANDS: Record<FixedJobName, readonly string[]> = {
  backup: ['backup', 'now'],
  'wal-archive-check': ['health', '--check', 'wal-archive'],
  'etcd-snapshot': ['etcd', 'snapshot'],
  expire: ['expire'],
  verify: ['verify'],
  drill: ['drill'],
};

const JOB_DEFAULTS: Record<FixedJobName, { cron: string; timeout: string }> = {
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

const argsSchema = z
  .array(z.string().regex(/^[^\0\n]+$/, 'arguments are single lines'), { error: 'expected a list of strings' })
  .default([])
  .refine((args) => !args.some((a) => /^--(repo|cluster|config|json)(=|$)/.test(a)), {
    error: 'the scheduler passes --repo, --cluster, --config and --json itself',
  });

const commonJobFields = (timeout: string) => ({
  /** Unset: on, except etcd-snapshot, which is on only when etcd endpoints are configured. */
  enabled: z.boolean({ error: 'expected true or false' }).optional(),
  timeout: durationText.default(timeout),
  args: argsSchema,
});

const jobSchema = (name: FixedJobName) => z.object({ cron: cronText.default(JOB_DEFAULTS[name].cron), ...commonJobFields(JOB_DEFAULTS[name].timeout) }).strict().prefault({});

/**
 * A backup job: `backup` (cron defaults to the CronJob's) or `backup-<name>` (cron required), with the backup's type
 * and engine as keys of their own rather than args, so that the scheduler can tell a full from an incr.
 */
const backupJobSchema = <C extends z.ZodType<string, string | undefined> | z.ZodType<string, string>>(cron: C) =>
  z
    .object({
      cron,
      ...commonJobFields(JOB_DEFAULTS.backup.timeout),
      type: z.enum(BACKUP_TYPES, { error: 'expected full, diff or incr' }).optional(),
      engine: z.enum(BACKUP_ENGINES, { error: 'expected auto, files or basebackup' }).optional(),
      /** The repository (a name from the config file's repositories:) this job's backups go to. */
      repo: z.string({ error: 'expected a repository name' }).regex(/^[A-Za-z][A-Za-z0-9._-]{0,62}$/, 'expected a repository name from the config file').optional(),
    })
    .strict()
    .refine((job) => !job.args.some((a) => /^--(type|engine)(=|$)/.test(a)), { error: 'give the backup type and engine as type: and engine:, not in args', path: ['args'] })
    .refine((job) => job.engine !== 'basebackup' || job.type === undefined || job.type === 'full', {
      error: 'a diff or incr backup needs the files engine (engine: files or auto); the basebackup engine reads the whole database every time',
      path: ['engine'],
    });

const extraBackupJobSchema = backupJobSchema(cronText);
type BackupJobSection = z.output<typeof extraBackupJobSchema>;

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
      .object({
        ...(Object.fromEntries(JOB_NAMES.filter((n) => n !== 'backup').map((n) => [n, jobSchema(n)])) as {
          [K in Exclude<FixedJobName, 'backup'>]: ReturnType<typeof jobSchema>;
        }),
        backup: backupJobSchema(cronText.default(JOB_DEFAULTS.backup.cron)).prefault({}),
      })
      .catchall(z.unknown())
      .transform((jobs, ctx) => {
        // Other keys are more backup jobs; their names are checked before their bodies, so a typo of a job's name
        // reads as an unknown key, not as a backup job without a cron expression.
        const extra: Record<string, BackupJobSection> = {};
        for (const [name, body] of Object.entries(jobs)) {
          if ((JOB_NAMES as readonly string[]).includes(name)) continue;
          if (!isBackupJobName(name)) {
            ctx.addIssue({ code: 'custom', path: [name], message: `unknown key (jobs are ${JOB_NAMES.join(', ')}, or backup-<name> for another backup job, e.g. backup-incr)` });
            continue;
          }
          const parsed = extraBackupJobSchema.safeParse(body);
          if (parsed.success) {
            extra[name] = parsed.data;
            continue;
          }
          for (const issue of parsed.error.issues) {
            const unknown = issue.code === 'unrecognized_keys';
            ctx.addIssue({ code: 'custom', path: [name, ...issue.path, ...(unknown ? [issue.keys[0] ?? ''] : [])], message: unknown ? 'unknown key' : issue.message });
          }
        }
        const fixed = Object.fromEntries(JOB_NAMES.map((n) => [n, jobs[n]])) as { [K in FixedJobName]: (typeof jobs)[K] };
        return { ...fixed, extra };
      })
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
  /** Backup jobs: the type asked for (full unless `type:` says otherwise). */
  backupType?: ScheduledBackupType;
  /** Backup jobs: the repository named by `repo:` (passed as --repo); else the scheduler's. */
  repo?: string;
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
      const key = issue.keys[0] ?? '';
      message =
        issue.path.length === 0
          ? 'unknown key'
          : key === 'type' || key === 'engine'
            ? `unknown key (${key}: belongs to backup jobs)`
            : 'unknown key';
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
    jobs: [
      ...JOB_NAMES.map((name): ScheduledJob => {
        if (name === 'backup') return backupJob('backup', section.jobs.backup);
        const job = section.jobs[name];
        return {
          name,
          cron: job.cron.trim(),
          enabled: job.enabled ?? (name === 'etcd-snapshot' ? context.etcdConfigured : true),
          timeoutMs: tryParseDuration(job.timeout)!,
          command: [...JOB_COMMANDS[name], ...job.args],
        };
      }),
      ...Object.keys(section.jobs.extra)
        .sort()
        .map((name) => backupJob(name as JobName, section.jobs.extra[name]!)),
    ],
  };
}


function backupJob(name: JobName, job: BackupJobSection): ScheduledJob {
  return {
    name,
    cron: job.cron.trim(),
    enabled: job.enabled ?? true,
    timeoutMs: tryParseDuration(job.timeout)!,
    command: [...JOB_COMMANDS.backup, ...(job.type === undefined ? [] : ['--type', job.type]), ...(job.engine === undefined ? [] : ['--engine', job.engine]), ...job.args],
    backupType: job.type ?? 'full',
    ...(job.repo === undefined ? {} : { repo: job.repo }),
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
