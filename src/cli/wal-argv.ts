import type { SettingFlags } from '../config/resolve-settings.js';

/**
 * The command lines PostgreSQL runs once per WAL file (`wal push PATH`, `wal fetch NAME DEST`), and the background
 * pusher's (`wal push-ahead PG_WAL`), read without the command-line framework so that they start fast. Only the
 * common flags of ../shared/CLI.md are understood, in the forms the full CLI accepts (`--flag value`,
 * `--flag=value`); for anything else (--help, a flag it does not know, `--`, a value that looks like a flag) this
 * returns null and the full CLI reads the command line, with its messages.
 */
export interface WalCommandLine {
  command: 'push' | 'push-ahead' | 'fetch';
  positional: string[];
  flags: SettingFlags;
  json: boolean;
  debug: boolean;
  abortRecoveryOnError: boolean;
}

const VALUE_FLAGS: Record<string, keyof SettingFlags> = {
  '--config': 'config',
  '--repo': 'repo',
  '--s3-endpoint': 's3Endpoint',
  '--cluster': 'cluster',
  '--pg-host': 'pgHost',
  '--pg-port': 'pgPort',
  '--pg-user': 'pgUser',
  '--patroni': 'patroni',
  '--etcd': 'etcd',
  '--pgdata': 'pgdata',
  '--policy': 'policy',
  '--spool-dir': 'spoolDir',
  '--compress-level': 'compressLevel',
  '--object-lock-mode': 'objectLockMode',
  '--object-lock-margin': 'objectLockMargin',
  '--identity-file': 'identityFile',
};

export function parseWalCommandLine(argv: readonly string[]): WalCommandLine | null {
  if (argv[0] !== 'wal' || (argv[1] !== 'push' && argv[1] !== 'push-ahead' && argv[1] !== 'fetch')) return null;
  const line: WalCommandLine = { command: argv[1], positional: [], flags: {}, json: false, debug: false, abortRecoveryOnError: false };
  const values: Record<string, string> = {};
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-')) {
      line.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const key = VALUE_FLAGS[name];
    if (name === '--encrypt-recipient') {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined || (eq === -1 && value.startsWith('-'))) return null;
      (line.flags.encryptRecipient ??= []).push(value);
      continue;
    }
    if (key !== undefined) {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined || (eq === -1 && value.startsWith('-'))) return null;
      values[key] = value;
      continue;
    }
    if (eq !== -1) return null;
    switch (name) {
      case '--json':
        line.json = true;
        break;
      case '--debug':
        line.debug = true;
        break;
      case '--s3-force-path-style':
        line.flags.s3ForcePathStyle = true;
        break;
      case '--accept-unconditional-writes':
        line.flags.acceptUnconditionalWrites = true;
        break;
      case '--no-progress':
        line.flags.progress = false;
        break;
      case '--abort-recovery-on-error':
        if (line.command !== 'fetch') return null;
        line.abortRecoveryOnError = true;
        break;
      default:
        return null;
    }
  }
  Object.assign(line.flags, values);
  return line;
}
