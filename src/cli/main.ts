import { Command, CommanderError } from 'commander';
import { ExitCode, fromSystemError, PgdrError } from '../errors.js';
import { describeCurrentAccount } from '../os/accounts.js';
import { redactUrlsIn } from '../storage/redact.js';
import { PGDR_VERSION } from '../version.js';
import { addCommonOptions, createContext, type CommandContext, type CommonOptions } from './context.js';

/** A command body: returns its exit code (0 unless the contract says otherwise, e.g. wal fetch's 1). */
export type Handler = (ctx: CommandContext, ...args: unknown[]) => Promise<number | void>;

/** Wraps a handler: builds the context from the command's options, runs it, turns errors into exit codes. */
export type Action = (handler: Handler) => (...args: unknown[]) => Promise<void>;

type Register = (program: Command, action: Action) => void;

/**
 * Command groups by their first word, loaded on demand: `wal push` and `wal fetch` run once per WAL file, and
 * loading every group (etcd's gRPC client, the scheduler, the AWS SDK) would cost them most of a second each time.
 */
const COMMAND_GROUPS: Record<string, () => Promise<Register>> = {
  backup: async () => (await import('./backup.js')).registerBackupCommands,
  wal: async () => (await import('./wal.js')).registerWalCommands,
  restore: async () => (await import('./restore.js')).registerRestoreCommands,
  etcd: async () => (await import('./etcd.js')).registerEtcdCommands,
  cluster: async () => (await import('./cluster.js')).registerClusterCommands,
  patroni: async () => (await import('./cluster.js')).registerClusterCommands,
  expire: async () => (await import('./expire.js')).registerExpireCommands,
  verify: async () => (await import('./verify.js')).registerVerifyCommands,
  drill: async () => (await import('./drill.js')).registerDrillCommands,
  health: async () => (await import('./health.js')).registerHealthCommands,
  report: async () => (await import('./report.js')).registerReportCommands,
  schedule: async () => (await import('./schedule.js')).registerScheduleCommands,
  repo: async () => (await import('./repo.js')).registerRepoCommands,
  'restore-point': async () => (await import('./restore-point.js')).registerRestorePointCommands,
};

/** The groups a command line needs: its own, or all of them for help, a typo or no command. */
async function loadCommandGroups(argv: readonly string[]): Promise<Register[]> {
  const first = argv.find((arg) => !arg.startsWith('-'));
  const wanted = first !== undefined && first in COMMAND_GROUPS ? [first] : Object.keys(COMMAND_GROUPS);
  const loaders = [...new Set(wanted.map((name) => COMMAND_GROUPS[name]!))];
  const registers = await Promise.all(loaders.map((load) => load()));
  return [...new Set(registers)];
}

export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  let debug = argv.includes('--debug');
  const json = argv.includes('--json');
  let current: CommandContext | undefined;
  const action: Action = (handler) => async (...args) => {
    const command = args[args.length - 1] as Command;
    const options = command.optsWithGlobals<CommonOptions>();
    debug = options.debug === true;
    const ctx = createContext(options);
    current = ctx;
    const positional = args.slice(0, -2);
    const code = await handler(ctx, ...positional, options);
    exitCode = typeof code === 'number' ? code : 0;
  };

  const program = new Command('pgdr')
    .description('Backup and disaster recovery for PostgreSQL clusters run by Patroni with etcd')
    .version(PGDR_VERSION, '--version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      writeOut: (text) => process.stdout.write(text),
    });
  addCommonOptions(program);
  for (const register of await loadCommandGroups(argv)) register(program, action);

  try {
    await program.parseAsync(['node', 'pgdr', ...argv]);
    return exitCode;
  } catch (err) {
    // A command that printed its document before failing (verify, drill: the report, then exit 5) keeps stdout to it.
    return reportError(err, debug, json && current?.emitted !== true);
  }
}

export function reportError(err: unknown, debug: boolean, json = false): number {
  if (err instanceof CommanderError) {
    // Help and --version arrive here as "errors" with exit code 0.
    if (err.exitCode === 0) return 0;
    // Commander has printed its own message; --json callers still get one document on stdout.
    if (json) printJsonError(err.message.replace(/^error: /, ''), 'run with --help for usage', ExitCode.usage);
    return ExitCode.usage;
  }
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
function printJsonError(error: string, hint: string, exitCode: number): void {
  process.stdout.write(`${JSON.stringify({ error, hint, exitCode }, null, 2)}\n`);
}
