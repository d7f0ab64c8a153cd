import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { execa } from 'execa';
import { runAsPostgres } from './postgres.js';
import { pgdrBin, testPath } from './preflight.js';
import { makeTempDir, serviceUser } from './temp.js';

/**
 * Runs the built pgdr CLI the way an operator, a CronJob or PostgreSQL's archive_command does: a separate
 * process, as the postgres OS user, with an explicit minimal environment so that nothing from the test process
 * (a PGHOST, an AWS profile) decides the outcome by accident.
 */

export interface PgdrResult {
  /** The exit status; 128 + the signal number when the process was killed (as a shell reports it). */
  exitCode: number;
  signal: string | undefined;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (the --json contract); throws with both outputs when it is not JSON. */
  json<T = unknown>(): T;
}

export interface RunPgdrOptions {
  /** Added to the minimal environment (PATH, HOME, LANG); credentials go here, never into args. */
  env?: Record<string, string>;
  /** Run as the postgres OS user (default true when the tests run as root). */
  asPostgres?: boolean;
  /** Default 120 s; after it pgdr gets SIGTERM, and SIGKILL 5 s later. */
  timeoutMs?: number;
  input?: string | Uint8Array;
  /** Default: HOME. */
  cwd?: string;
}

export async function runPgdr(args: readonly string[], options: RunPgdrOptions = {}): Promise<PgdrResult> {
  const asPostgres = options.asPostgres ?? true;
  const env = pgdrEnvironment(options.env, { asPostgres });
  const execOptions = {
    env,
    extendEnv: false,
    cwd: options.cwd ?? env.HOME,
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeoutMs ?? 120_000,
    forceKillAfterDelay: 5_000,
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  };
  const fullArgs = [pgdrBin, ...args];
  const result = asPostgres
    ? await runAsPostgres(process.execPath, fullArgs, execOptions)
    : await execa(process.execPath, fullArgs, execOptions);
  if (result.exitCode === undefined && result.signal === undefined) {
    // Not pgdr's answer: it never ran (a missing cwd, runuser refused). That is the harness's or the test's fault.
    throw new Error(`could not run pgdr ${args.join(' ')}: ${result.message}`);
  }
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  const signalName = result.signal ?? undefined;
  const signalNumber = signalName === undefined ? 0 : (constants.signals[signalName as keyof typeof constants.signals] ?? 0);
  const exitCode = result.exitCode ?? 128 + signalNumber;
  return {
    exitCode,
    signal: signalName,
    timedOut: result.timedOut,
    stdout,
    stderr,
    json<T = unknown>(): T {
      try {
        return JSON.parse(stdout) as T;
      } catch (err) {
        throw new Error(
          `pgdr ${args.join(' ')} did not print JSON (exit ${exitCode}): ${(err as Error).message}\n` +
            `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
        );
      }
    },
  };
}

/** runPgdr, but a non-zero exit is an error whose message carries the command, the code and stderr. */
export async function runPgdrOk(args: readonly string[], options: RunPgdrOptions = {}): Promise<PgdrResult> {
  const result = await runPgdr(args, options);
  if (result.exitCode !== 0) {
    throw new Error(
      `pgdr ${args.join(' ')} exited ${result.exitCode}${result.timedOut ? ' (timed out)' : ''}\n` +
        `--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout}`,
    );
  }
  return result;
}

/** The environment runPgdr gives pgdr: PATH, HOME (a temp home unless `env.HOME`), LANG, USER, then `env`. */
export function pgdrEnvironment(env: Record<string, string> = {}, options: { asPostgres?: boolean } = {}): Record<string, string> {
  const asPostgres = options.asPostgres ?? true;
  const user = asPostgres ? serviceUser().name : (process.env.USER ?? 'root');
  return {
    PATH: testPath(),
    HOME: env.HOME ?? defaultHome(asPostgres),
    LANG: 'C.UTF-8',
    USER: user,
    LOGNAME: user,
    ...env,
  };
}

const homes = new Map<boolean, string>();

/**
 * One scratch HOME per test process and user, so pgdr's defaults ($HOME/.local/share/pgdr/repo, the spool
 * under $HOME/.local/state) never touch a real home directory. Made again if a cleanup removed it.
 */
function defaultHome(asPostgres: boolean): string {
  const existing = homes.get(asPostgres);
  if (existing !== undefined && existsSync(existing)) return existing;
  const home = makeTempDir(asPostgres ? 'home-postgres' : 'home', { owner: asPostgres ? 'service' : 'self' });
  homes.set(asPostgres, home);
  return home;
}

/**
 * The absolute, shell-quoted pgdr command for archive_command or restore_command, e.g.
 * `/usr/bin/node /work/main/bin/pgdr wal push %p --repo 'file:///tmp/x y'`.
 * An argument that is exactly %p, %f or %r stays bare for PostgreSQL to substitute (the paths it puts there need
 * no quoting); every other % is doubled, since PostgreSQL reads a lone % as the start of a placeholder.
 */
export function pgdrCommandLine(args: readonly string[]): string {
  return [process.execPath, pgdrBin, ...args].map(quoteForPostgresCommand).join(' ');
}

function quoteForPostgresCommand(arg: string): string {
  if (/^%[pfr]$/.test(arg)) return arg;
  return shellQuote(arg.replace(/%/g, '%%'));
}

/** POSIX sh single-quoting; words made only of safe characters stay bare for readability. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_\-.,/:=@+]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
