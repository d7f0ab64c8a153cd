import { ExitCode, fromSystemError, PgdrError } from '../errors.js';
import { describeCurrentAccount } from '../os/accounts.js';
import { redactUrlsIn } from '../storage/redact.js';

/**
 * How a failure reaches the operator, once, at the top: one line saying what went wrong and one saying what to do,
 * with the exit code of its kind (../shared/CLI.md); a stack only with --debug; with --json also one JSON document on
 * stdout. Apart from src/cli/main.ts so that the dedicated `wal push` entry reports exactly the same way without
 * loading the command-line framework.
 */
export function reportError(err: unknown, debug: boolean, json = false): number {
  const known = err instanceof PgdrError ? err : fromSystemError(err, describeCurrentAccount);
  if (known !== undefined) {
    process.stderr.write(`pgdr: ${redactUrlsIn(known.message)}\nhint: ${redactUrlsIn(known.hint)}\n`);
    if (debug && known.stack) process.stderr.write(`${redactUrlsIn(known.stack)}\n`);
    if (debug && known.cause instanceof Error) process.stderr.write(`cause: ${redactUrlsIn(known.cause.stack ?? known.cause.message)}\n`);
    if (json) printJsonError(redactUrlsIn(known.message), redactUrlsIn(known.hint), known.exitCode);
    return known.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  const hint = 'run again with --debug and report the output';
  process.stderr.write(`pgdr: unexpected error: ${redactUrlsIn(message)}\nhint: ${hint}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${redactUrlsIn(err.stack)}\n`);
  if (json) printJsonError(`unexpected error: ${redactUrlsIn(message)}`, hint, ExitCode.repository);
  return ExitCode.repository;
}

/** With --json, a failure is one JSON document on stdout too, so a program never has to parse stderr. */
export function printJsonError(error: string, hint: string, exitCode: number): void {
  process.stdout.write(`${JSON.stringify({ error, hint, exitCode }, null, 2)}\n`);
}
