import type { ChildProcess } from 'node:child_process';
import { onExit } from 'signal-exit';
import { ServiceError } from '../errors.js';

/**
 * Exit and stderr bookkeeping for children pgdr spawns itself (with node:child_process, not execa) because their
 * stdio are joined to each other by kernel pipes: `zstd -d | tar -x` at restore.
 */
export interface WatchedChild {
  /** Resolves when the child exits 0; rejects with a ServiceError naming it and its last stderr line. */
  readonly done: Promise<void>;
  /** The last few KiB the child wrote to stderr. */
  stderrTail(): string;
  /**
   * Whether the child died of a broken pipe (SIGPIPE, or a write error saying so): the process it wrote to had died
   * first, and that one's failure is the one to report.
   */
  brokenPipe(): boolean;
}

/**
 * The hint for a child killed by a signal pgdr did not send (pgdr's own stops are reported as their cause): whoever
 * sent it, not the child, is what to look at. Nothing a failed step was writing is committed (commit last).
 */
export function killedFromOutsideHint(label: string, signal: string): string {
  return `${label} was killed by ${signal}, which pgdr did not send: an operator, the OOM killer (dmesg) or a container limit; nothing this run was writing was committed, run it again`;
}

const STDERR_TAIL_BYTES = 8192;

export function watchChild(child: ChildProcess, label: string, hint: string, onStderrLine?: (line: string) => void): WatchedChild {
  let tail = '';
  let partial = '';
  let killedBy: NodeJS.Signals | null = null;
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
    if (onStderrLine) {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onStderrLine(line);
    }
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new ServiceError(`${label} could not start: ${err.message}`, hint, err)));
    // 'close' (not 'exit'): stderr has been read to its end, so the tail holds the last message.
    child.once('close', (code, signal) => {
      if (partial && onStderrLine) onStderrLine(partial);
      if (code === 0) return resolve();
      killedBy = signal;
      const last = tail.trim().split('\n').pop()?.trim() ?? '';
      // ChildProcess.kill sets `killed`: a child pgdr stopped itself is reported with pgdr's own reason elsewhere.
      const outside = signal !== null && signal !== 'SIGPIPE' && !child.killed;
      reject(new ServiceError(`${label} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${last ? `: ${last}` : ''}`, outside ? killedFromOutsideHint(label, signal) : hint));
    });
  });
  // Callers may abandon a child after a failure elsewhere; its own rejection is read through `done` when wanted.
  done.catch(() => undefined);
  return { done, stderrTail: () => tail, brokenPipe: () => killedBy === 'SIGPIPE' || /broken pipe/i.test(tail) };
}

/**
 * Kills the children when pgdr exits or is stopped by a signal (SIGTERM from a CronJob's deadline, Ctrl-C): a
 * plain 'exit' listener does not run when Node dies of a signal. signal-exit (execa's own choice) re-raises the
 * signal afterwards, so pgdr still ends the way the signal asked. Only SIGKILL leaves the children running; they
 * stop at their next write to the pipe nobody reads. Returns the undo.
 */
export function killOnExit(...children: ChildProcess[]): () => void {
  return onExit(() => {
    for (const child of children) child.kill('SIGTERM');
  });
}
