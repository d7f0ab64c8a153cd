import { execa, type ResultPromise } from 'execa';
import { ServiceError } from '../errors.js';
import { childEnv } from './child-env.js';
import { lastMeaningfulLine } from './run-command.js';

export { runCommand } from './run-command.js';

/**
 * The one way pgdr runs zstd, pg_ctl, pg_amcheck, etcd's tools and friends: stdout streamed to the caller, the tail of
 * stderr kept for the error message, a timeout with a hard kill after it, and children killed when pgdr exits.
 * The caller must call `wait()` and only then treat the output as complete: a process that streamed everything
 * and then exited non-zero produced nothing usable. Commands whose output is collected whole run through
 * runCommand (src/process/run-command.ts).
 */
export interface Subprocess {
  readonly child: ResultPromise;
  readonly stdout: NodeJS.ReadableStream;
  readonly stdin: NodeJS.WritableStream;
  /** Resolves when the process exits 0; rejects with a ServiceError carrying the stderr tail otherwise. */
  wait(): Promise<void>;
  /** The last lines the process wrote to stderr (bounded). */
  stderrTail(): string;
  kill(): void;
}

export interface SubprocessOptions {
  /** The whole environment of the child; absent: the basics a tool needs and no secret (src/process/child-env.ts). */
  env?: Record<string, string | undefined>;
  /** Milliseconds; 0 or absent means no limit. */
  timeoutMs?: number;
  stdin?: 'pipe' | 'ignore';
  /** What the error message calls the process, e.g. "pg_amcheck". */
  label?: string;
  /** Called for each complete stderr line (e.g. to follow a tool's progress as it comes). */
  onStderrLine?: (line: string) => void;
  cwd?: string;
  hint?: string;
}

const STDERR_TAIL_BYTES = 8192;

export function startSubprocess(file: string, args: readonly string[], options: SubprocessOptions = {}): Subprocess {
  const label = options.label ?? file;
  const child = execa(file, args, {
    env: options.env ?? childEnv('tool'),
    extendEnv: false,
    stdin: options.stdin ?? 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    cleanup: true,
    forceKillAfterDelay: 5000,
    timeout: options.timeoutMs && options.timeoutMs > 0 ? options.timeoutMs : undefined,
    cwd: options.cwd,
    reject: false,
  });
  let tail = '';
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
    if (options.onStderrLine) {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) options.onStderrLine(line);
    }
  });
  const finished = child.then((result) => {
    if (partial && options.onStderrLine) options.onStderrLine(partial);
    if (result.exitCode === 0 && !result.isTerminated && !result.timedOut) return;
    const why = result.timedOut
      ? `timed out after ${options.timeoutMs} ms`
      : result.isTerminated
        ? `was killed by ${result.signal}`
        : result.failed && result.exitCode === undefined
          ? `could not start (${result.shortMessage})`
          : `exited with code ${result.exitCode}`;
    const lastLine = lastMeaningfulLine(tail);
    throw new ServiceError(
      `${label} ${why}${lastLine ? `: ${lastLine}` : ''}`,
      options.hint ?? `see the output of ${label} above; run with --debug for the whole stderr`,
      Object.assign(new Error(tail), { stderr: tail }),
    );
  });
  // The caller may abandon the process after a failure elsewhere; the rejection is reported through wait().
  finished.catch(() => undefined);
  return {
    child,
    stdout: child.stdout as NodeJS.ReadableStream,
    stdin: child.stdin as NodeJS.WritableStream,
    wait: () => finished,
    stderrTail: () => tail,
    kill: () => {
      child.kill('SIGTERM');
    },
  };
}
