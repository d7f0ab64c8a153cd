import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseWalCommandLine } from '../../../src/cli/wal-argv.js';
import { addCommonOptions, type CommonOptions } from '../../../src/cli/context.js';
import { resolveSettingsFrom } from '../../../src/config/resolve-settings.js';

/** What the full CLI (commander, with the same common options) makes of `wal push ...`: the reference. */
function viaCommander(argv: string[]): { path: string; options: CommonOptions } {
  let out: { path: string; options: CommonOptions } | undefined;
  const program = new Command('pgdr').exitOverride();
  const wal = program.command('wal');
  addCommonOptions(wal.command('push').argument('<path>')).action((path: string, options: CommonOptions) => {
    out = { path, options };
  });
  program.parse(['node', 'pgdr', ...argv]);
  return out!;
}

describe('parseWalCommandLine', () => {
  it('reads the flags of an archive_command as the full CLI does', () => {
    const cases = [
      ['wal', 'push', 'pg_wal/000000010000000000000003'],
      ['wal', 'push', 'p', '--repo', 's3://b/p', '--cluster', 'main', '--s3-endpoint=http://127.0.0.1:9000', '--s3-force-path-style'],
      ['wal', 'push', '--config', '/etc/pgdr.yaml', 'p', '--spool-dir=/var/spool/pgdr', '--compress-level', '5'],
      ['wal', 'push', 'p', '--repo', 'file:///a', '--repo', 'file:///b', '--no-progress', '--accept-unconditional-writes'],
      ['wal', 'push', 'p', '--pg-host', 'h', '--pg-port', '5433', '--pg-user', 'u', '--patroni', 'http://a', '--etcd', 'http://e', '--pgdata', '/d', '--policy', 'x.yaml'],
      ['wal', 'push', 'p', '--repo', 's3://b/p', '--object-lock-mode', 'governance', '--object-lock-margin=2d', '--policy', '/etc/policy.yaml'],
    ];
    for (const argv of cases) {
      const line = parseWalCommandLine(argv);
      const reference = viaCommander(argv);
      expect(line, argv.join(' ')).not.toBeNull();
      expect(line!.positional).toEqual([reference.path]);
      // Commander fills in defaults (progress: true for --no-progress) that the settings fill in too: compare settings.
      expect(resolveSettingsFrom(line!.flags, {}, '/home/pg', {})).toEqual(resolveSettingsFrom(reference.options, {}, '/home/pg', {}));
      expect(line!.flags.config).toBe(reference.options.config);
    }
  });

  it('reads the command line a push gives its background pusher', () => {
    const argv = ['wal', 'push-ahead', '/pg/pg_wal', '--repo', 's3://b/p', '--cluster', 'c', '--spool-dir', '/s', '--compress-level', '3', '--s3-endpoint', 'http://e', '--s3-force-path-style', '--config', '/etc/pgdr.yaml'];
    expect(parseWalCommandLine(argv)).toMatchObject({
      command: 'push-ahead',
      positional: ['/pg/pg_wal'],
      flags: { repo: 's3://b/p', cluster: 'c', spoolDir: '/s', compressLevel: '3', s3Endpoint: 'http://e', s3ForcePathStyle: true, config: '/etc/pgdr.yaml' },
    });
  });

  it('notes --json and --debug, and --abort-recovery-on-error only for wal fetch', () => {
    expect(parseWalCommandLine(['wal', 'push', 'p', '--json', '--debug'])).toMatchObject({ command: 'push', json: true, debug: true });
    expect(parseWalCommandLine(['wal', 'fetch', 'N', 'D', '--abort-recovery-on-error'])).toMatchObject({ command: 'fetch', positional: ['N', 'D'], abortRecoveryOnError: true });
    expect(parseWalCommandLine(['wal', 'push', 'p', '--abort-recovery-on-error'])).toBeNull();
  });

  it('leaves anything else to the full CLI', () => {
    for (const argv of [
      ['wal', 'push', 'p', '--help'],
      ['wal', 'push', '-h'],
      ['wal', 'push', 'p', '--unknown'],
      ['wal', 'push', '--', 'p'],
      ['wal', 'push', 'p', '--repo'],
      ['wal', 'push', 'p', '--repo', '--cluster', 'x'],
      ['wal', 'push', 'p', '--json=yes'],
      ['wal', 'list'],
      ['backup', 'now'],
      [],
    ]) {
      expect(parseWalCommandLine(argv), argv.join(' ')).toBeNull();
    }
  });
});
