import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ServiceError, UsageError } from '../errors.js';
import { runCommand } from '../process/subprocess.js';

/**
 * Long-running services (etcd, Patroni) that a one-host rebuild starts and leaves running. They are deliberately
 * NOT started through src/process/subprocess.ts: that wrapper kills its children when pgdr exits, and these must
 * outlive pgdr. Each is detached into its own session, its output goes to a log file, and its pid is written to a
 * pid file, so the operator (or a test's cleanup) can find and stop it.
 */
export interface DetachedService {
  pid: number;
  pidFile: string;
  logFile: string;
  /** Why it ended, once it did (while pgdr still runs); undefined while it runs. */
  exited(): string | undefined;
  logTail(lines?: number): string;
}

export interface DetachedOptions {
  logFile: string;
  pidFile: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export function readPidFile(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function startDetached(command: readonly string[], options: DetachedOptions): Promise<DetachedService> {
  const [file, ...args] = command;
  if (file === undefined) throw new UsageError('empty start command', 'give the program to run');
  const previous = readPidFile(options.pidFile);
  if (previous !== undefined && isAlive(previous)) {
    throw new UsageError(`${options.pidFile} names process ${previous}, which still runs`, `stop it first (kill ${previous}), or remove the pid file if it is not ${file}`);
  }
  mkdirSync(dirname(options.logFile), { recursive: true });
  const log = openSync(options.logFile, 'a', 0o600);
  let child;
  try {
    child = spawn(file, args, { detached: true, stdio: ['ignore', log, log], env: options.env, cwd: options.cwd });
  } finally {
    closeSync(log);
  }
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  const tail = (lines = 20) => {
    try {
      return readFileSync(options.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      reject(new ServiceError(`could not start ${file}: ${err.message}`, `check that ${file} is installed and on PATH`, err));
    });
    child.once('spawn', () => {
      const pid = child.pid as number;
      writeFileSync(options.pidFile, `${pid}\n`, { mode: 0o644 });
      // pgdr may exit while it runs: nothing of pgdr's event loop waits for it.
      child.unref();
      resolve({ pid, pidFile: options.pidFile, logFile: options.logFile, exited: () => exited, logTail: tail });
    });
  });
}

/** A --start-command / --etcd-start-command: run to completion (e.g. systemctl start), no shell. */
export async function runStartCommand(command: readonly string[], label: string, env: NodeJS.ProcessEnv): Promise<void> {
  const [file, ...args] = command;
  if (file === undefined) throw new UsageError(`empty start command for ${label}`, 'check --start-command');
  await runCommand(file, args, { env, timeoutMs: 120_000, label: `start command for ${label} (${file})`, hint: 'check the start command and the service\'s own log' });
}

/** The environment for a started service: pgdr's own, less the variables that would configure it behind its config. */
export function serviceEnvironment(env: NodeJS.ProcessEnv, prefix: 'PATRONI_' | 'ETCD_'): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) if (!key.startsWith(prefix)) out[key] = value;
  return out;
}
