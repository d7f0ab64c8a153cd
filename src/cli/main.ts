import { Command, CommanderError } from 'commander';
import { ExitCode } from '../errors.js';
import { PGDR_VERSION } from '../version.js';
import type { Action } from './action.js';
import { addCommonOptions, createContext, type CommandContext, type CommonOptions } from './context.js';
import { unlockIdentity } from './identity.js';
import { printJsonError, reportError as reportFailure } from './report-error.js';


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
  copy: async () => (await import('./copy.js')).registerCopyCommands,
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
    const words: string[] = [];
    for (let c: Command | null = command; c !== null && c.parent !== null; c = c.parent) words.unshift(c.name());
    const ctx = createContext(options, words.join(' '));
    current = ctx;
    await unlockIdentity(ctx.settings);
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
  return reportFailure(err, debug, json);
}
