import { constants } from 'node:os';
import type { Settings } from '../config/settings.js';
import { childEnv } from '../process/child-env.js';
import { startSubprocess } from '../process/subprocess.js';
import type { ScheduledJob } from './config.js';
import type { JobResult, JobRunner } from './scheduler.js';

/**
 * Runs each job as its own `pgdr <command> --json` process, the same command a CronJob or an operator runs.
 *
 * Why a process and not the core functions in-process: a scheduler lives for months, and a fresh process per job
 * cannot leak memory, sockets, timers or locks into the next run; a crash or a stuck job is killed on its timeout
 * without taking the scheduler down; the job sees exactly the settings, exit codes and logs of the CLI (so a run
 * can be reproduced by hand from the log line); and new commands (etcd snapshot, expire, verify, drill) are
 * scheduled without the scheduler knowing their internals. The cost, one Node start (~0.1 s CPU), is nothing
 * next to jobs that run every few minutes at most.
 */
export class SpawnJobRunner implements JobRunner {
  constructor(
    private readonly options: {
      /** The pgdr entry script (bin/pgdr). */
      pgdrBin: string;
      /** Flags that carry this scheduler's settings to every job (see settingsArgs). */
      globalArgs: readonly string[];
      /** Each stderr line of a job, for the scheduler's log. */
      onOutput?: (job: ScheduledJob, line: string) => void;
    },
  ) {}

  async run(job: ScheduledJob, signal: AbortSignal): Promise<JobResult> {
    const args = [this.options.pgdrBin, ...job.command, ...jobRepositoryArgs(job, this.options.globalArgs), '--json', '--no-progress'];
    let lastLine = '';
    const sub = startSubprocess(process.execPath, args, {
      label: `pgdr ${job.command.join(' ')}`,
      // A job is a pgdr command: it needs everything this pgdr was given.
      env: childEnv('pgdr'),
      timeoutMs: job.timeoutMs,
      onStderrLine: (line) => {
        if (line.trim() === '') return;
        // The error line, not the hint that follows it, says what went wrong.
        if (!line.startsWith('hint: ')) lastLine = line.replace(/^pgdr: /, '');
        this.options.onOutput?.(job, line);
      },
    });
    const onAbort = (): void => sub.kill();
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });

    let stdout = '';
    sub.stdout.setEncoding('utf8');
    sub.stdout.on('data', (chunk: string) => {
      // A big result (a verify problem list) is not worth keeping in a log line.
      if (stdout.length < 64 * 1024) stdout += chunk;
    });
    try {
      const result = await sub.child;
      if (result.timedOut) return { exitCode: -1, detail: `timed out after ${job.timeoutMs / 1000} s and was stopped` };
      if (result.exitCode === undefined) {
        const signalName = result.signal ?? 'a signal';
        const code = result.signal ? 128 + (constants.signals[result.signal as keyof typeof constants.signals] ?? 0) : -1;
        return { exitCode: code, detail: `${signal.aborted ? 'cancelled: ' : ''}stopped by ${signalName}` };
      }
      return { exitCode: result.exitCode, ...(lastLine === '' ? {} : { detail: lastLine }), ...smallJson(stdout) };
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/** A backup job with `repo:` goes to that repository, whatever the scheduler's own --repo. */
export function jobRepositoryArgs(job: Pick<ScheduledJob, 'repo'>, globalArgs: readonly string[]): string[] {
  if (job.repo === undefined) return [...globalArgs];
  const args: string[] = ['--repo', job.repo];
  for (let i = 0; i < globalArgs.length; i++) {
    if (globalArgs[i] === '--repo' || globalArgs[i] === '--s3-endpoint') i++;
    else if (globalArgs[i] !== '--s3-force-path-style') args.push(globalArgs[i]!);
  }
  return args;
}

function smallJson(stdout: string): { result?: unknown } {
  const text = stdout.trim();
  if (text === '' || text.length > 4096) return {};
  try {
    return { result: JSON.parse(text) as unknown };
  } catch {
    return {};
  }
}

/**
 * The flags that give a job this scheduler's resolved settings: the same repository, cluster, servers and policy,
 * whatever mix of flags, environment and config file the scheduler got them from. Credentials are not among them:
 * they reach the job through the inherited environment (AWS_*, PGPASSWORD) or the files the libraries read.
 */
export function settingsArgs(settings: Settings, configFile: string | undefined): string[] {
  const args: string[] = [];
  const repository = settings.repository;
  // A configured repository goes by its name (the job reads the same config file); several and none named: each job
  // picks its own as the command line would (backup: the one receiving backups, expire and verify: each in turn).
  if (repository?.name !== undefined) args.push('--repo', repository.name);
  else if (repository !== undefined) {
    args.push('--repo', repository.url);
    if (repository.s3Endpoint !== undefined) args.push('--s3-endpoint', repository.s3Endpoint);
    if (repository.s3ForcePathStyle) args.push('--s3-force-path-style');
  }
  args.push('--cluster', settings.cluster);
  if (configFile !== undefined) args.push('--config', configFile);
  if (settings.pgHost !== undefined) args.push('--pg-host', settings.pgHost);
  if (settings.pgPort !== undefined) args.push('--pg-port', String(settings.pgPort));
  if (settings.pgUser !== undefined) args.push('--pg-user', settings.pgUser);
  if (settings.patroni.length > 0) args.push('--patroni', settings.patroni.join(','));
  if (settings.etcd.length > 0) args.push('--etcd', settings.etcd.join(','));
  if (settings.policy !== undefined) args.push('--policy', settings.policy);
  if (settings.pgdata !== undefined) args.push('--pgdata', settings.pgdata);
  args.push('--compress-level', String(settings.compressLevel));
  if (settings.acceptUnconditionalWrites) args.push('--accept-unconditional-writes');
  if (settings.objectLock !== undefined) {
    args.push('--object-lock-mode', settings.objectLock.mode, '--object-lock-margin', `${Math.round(settings.objectLock.marginMs / 1000)}s`);
  }
  return args;
}
