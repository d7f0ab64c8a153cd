import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { onExit } from 'signal-exit';
import { ServiceError } from '../errors.js';
import { childEnv } from './child-env.js';
import { killedFromOutsideHint } from './child.js';

/**
 * Short commands run to completion (zstd on one file, pg_ctl, etcdctl): stdout collected whole, the tail of stderr
 * kept for the error, a timeout with a hard kill after it, and the child killed when pgdr exits. Built on
 * node:child_process rather than execa because `wal push` runs once per WAL segment and loading execa alone costs a
 * cold push more than the compression it waits for (docs/benchmarks.md, "Where the time of a push goes"). Streaming
 * children (pg_basebackup, tar, zstd stages) go through src/process/subprocess.ts.
 */
export interface RunCommandOptions {
  /** The whole environment of the child; absent: the basics a tool needs and no secret (childEnv('tool')). */
  env?: Record<string, string | undefined>;
  /** Milliseconds; 0 or absent means no limit. */
  timeoutMs?: number;
  /** What the error message calls the process, e.g. "zstd". */
  label?: string;
  hint?: string;
  /** Written to the child's stdin, which is then closed; absent: stdin is closed at once (the child reads EOF). */
  input?: Buffer;
  /** The child's stdin is this stream's file descriptor (another child's stdout: a kernel pipe); excludes `input`. */
  stdinFrom?: import('node:stream').Readable;
  /**
   * Written to the child's file descriptor 3, a pipe, which is then closed: a secret the child reads as the file
   * /dev/fd/3, so that it touches neither the disk nor a command line.
   */
  fd3?: Buffer;
}

export interface CommandOutput {
  stdout: Buffer;
  stderr: string;
}

/** A command started with startCommand: its outcome, and a way to stop it when the outcome is no longer wanted. */
export interface RunningCommand {
  readonly result: Promise<CommandOutput>;
  /** Kills the child (SIGKILL); `result` then rejects, which nobody needs to observe. Harmless once it has exited. */
  kill(): void;
}

const STDERR_TAIL_BYTES = 8192;
const MAX_STDOUT_BYTES = 1024 * 1024 * 1024;
const FORCE_KILL_AFTER_MS = 5000;

/** Runs a short command to completion and returns its stdout; throws ServiceError on failure. */
export async function runCommand(file: string, args: readonly string[], options: RunCommandOptions = {}): Promise<CommandOutput> {
  return startCommand(file, args, options).result;
}

/** Starts a short command now; its output is collected until it exits (see runCommand). */
export function startCommand(file: string, args: readonly string[], options: RunCommandOptions = {}): RunningCommand {
  const label = options.label ?? file;
  const child = spawn(file, args, {
    env: options.env ?? childEnv('tool'),
    stdio: options.fd3 === undefined ? [options.stdinFrom ?? 'pipe', 'pipe', 'pipe'] : [options.stdinFrom ?? 'pipe', 'pipe', 'pipe', 'pipe'],
  });
  if (options.fd3 !== undefined) writeFd3(child, options.fd3);
  const removeExitHook = onExit(() => {
    child.kill('SIGKILL');
  });
  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  let stderrTail = '';
  let why: string | undefined;
  child.stdout!.on('data', (chunk: Buffer) => {
    stdoutBytes += chunk.length;
    if (stdoutBytes > MAX_STDOUT_BYTES) {
      why ??= `wrote more than ${MAX_STDOUT_BYTES} bytes`;
      child.kill('SIGKILL');
      return;
    }
    stdout.push(chunk);
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
  });
  // A child that exits without reading all of its input closes the pipe: its exit status tells what happened.
  if (options.stdinFrom === undefined) {
    child.stdin!.on('error', () => undefined);
    if (options.input === undefined) child.stdin!.end();
    else child.stdin!.end(options.input);
  }
  let timer: NodeJS.Timeout | undefined;
  let forceTimer: NodeJS.Timeout | undefined;
  if (options.timeoutMs && options.timeoutMs > 0) {
    const limit = options.timeoutMs;
    timer = setTimeout(() => {
      why ??= `timed out after ${limit} ms`;
      child.kill('SIGTERM');
      forceTimer = setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS);
      forceTimer.unref();
    }, limit);
  }
  const result = new Promise<CommandOutput>((resolve, reject) => {
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    // 'close' comes after the exit and after stdout and stderr have ended, so the output is complete.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(forceTimer);
      removeExitHook();
      if (code === 0 && why === undefined && spawnError === undefined) {
        resolve({ stdout: Buffer.concat(stdout), stderr: stderrTail });
        return;
      }
      const how = spawnError
        ? `could not start (${spawnError.message})`
        : (why ?? (signal ? `was killed by ${signal}` : `exited with code ${String(code)}`));
      const line = lastMeaningfulLine(stderrTail);
      const outside = signal !== null && signal !== 'SIGPIPE' && why === undefined && spawnError === undefined;
      reject(
        new ServiceError(
          `${label} failed: ${line || how}`,
          outside ? killedFromOutsideHint(label, signal) : (options.hint ?? `check that ${label} is installed and works`),
          Object.assign(new Error(`${label} ${how}`), { stderr: stderrTail, exitCode: code, signal }),
        ),
      );
    });
  });
  // A caller may await the result only later (a compression started ahead of the checks): a failure meanwhile is
  // theirs to see then, not an unhandled rejection that ends the process now.
  result.catch(() => undefined);
  return {
    result,
    kill: () => {
      why ??= 'was stopped by pgdr';
      child.kill('SIGKILL');
    },
  };
}

export function lastMeaningfulLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  return lines[lines.length - 1] ?? '';
}

/** Feeds a child's extra pipe (stdio index 3); a child that exits before reading it all is no failure of this write. */
export function writeFd3(child: ChildProcess, data: Buffer): void {
  const pipe = child.stdio[3] as Writable | null | undefined;
  if (!pipe) return;
  pipe.on('error', () => undefined);
  pipe.end(data);
}
