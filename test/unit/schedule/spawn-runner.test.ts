import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveSettings } from '../../../src/config/settings.js';
import { JOB_COMMANDS, JOB_NAMES, parseScheduleSection, type ScheduledJob } from '../../../src/schedule/config.js';
import { jobRepositoryArgs, settingsArgs, SpawnJobRunner } from '../../../src/schedule/spawn-runner.js';

const dir = mkdtempSync(join(tmpdir(), 'pgdr-spawn-runner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Stands in for bin/pgdr: behaves by its first argument, and echoes the arguments it got as its JSON result.
const fakePgdr = join(dir, 'fake-pgdr.mjs');
writeFileSync(
  fakePgdr,
  `const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'ok') { process.stderr.write('pgdr: working\\n'); process.stdout.write(JSON.stringify({ args: rest }) + '\\n'); }
else if (cmd === 'fail') { process.stderr.write('pgdr: repository unreachable\\nhint: check --repo\\n'); process.exitCode = 3; }
else if (cmd === 'hang') { process.stderr.write('pgdr: started\\n'); setInterval(() => {}, 1000); }
`,
);

const job = (command: string[], timeoutMs = 30_000): ScheduledJob => ({ name: 'backup', cron: '0 2 * * *', enabled: true, timeoutMs, command });

describe('SpawnJobRunner', () => {
  it('runs pgdr <command> with the global flags, --json and --no-progress, and keeps its JSON result', async () => {
    const lines: string[] = [];
    const runner = new SpawnJobRunner({ pgdrBin: fakePgdr, globalArgs: ['--repo', 'file:///r'], onOutput: (_job, line) => lines.push(line) });
    const result = await runner.run(job(['ok', 'now']), new AbortController().signal);
    expect(result).toEqual({ exitCode: 0, detail: 'working', result: { args: ['now', '--repo', 'file:///r', '--json', '--no-progress'] } });
    expect(lines).toEqual(['pgdr: working']);
  });

  it('reports the exit code and the error line (not the hint) of a failed job', async () => {
    const result = await new SpawnJobRunner({ pgdrBin: fakePgdr, globalArgs: [] }).run(job(['fail']), new AbortController().signal);
    expect(result).toEqual({ exitCode: 3, detail: 'repository unreachable' });
  });

  it('stops a job when cancelled, and one that runs past its timeout', async () => {
    const runner = new SpawnJobRunner({ pgdrBin: fakePgdr, globalArgs: [] });
    const abort = new AbortController();
    const running = runner.run(job(['hang']), abort.signal);
    setTimeout(() => abort.abort(), 300);
    expect(await running).toEqual({ exitCode: 143, detail: 'cancelled: stopped by SIGTERM' });
    expect(await runner.run(job(['hang'], 300), new AbortController().signal)).toEqual({ exitCode: -1, detail: 'timed out after 0.3 s and was stopped' });
  });
});

describe('settingsArgs', () => {
  it('carries the resolved settings as flags, never credentials', () => {
    const settings = resolveSettings(
      { repo: 's3://bucket/pgdr', s3Endpoint: 'http://127.0.0.1:9000', s3ForcePathStyle: true, cluster: 'main', pgHost: 'db', pgPort: '5433', patroni: 'http://a:8008,http://b:8008', policy: '/etc/pgdr/policy.yaml' },
      { AWS_SECRET_ACCESS_KEY: 'very-secret', PGPASSWORD: 'also-secret' },
      '/home/x',
    );
    const args = settingsArgs(settings, '/etc/pgdr/pgdr.yaml');
    expect(args).toEqual([
      '--repo', 's3://bucket/pgdr', '--s3-endpoint', 'http://127.0.0.1:9000', '--s3-force-path-style', '--cluster', 'main',
      '--config', '/etc/pgdr/pgdr.yaml', '--pg-host', 'db', '--pg-port', '5433',
      '--patroni', 'http://a:8008,http://b:8008', '--policy', '/etc/pgdr/policy.yaml', '--compress-level', '3',
    ]);
    expect(args.join(' ')).not.toMatch(/secret/);
    const locked = resolveSettings({ repo: 's3://bucket/pgdr', objectLockMode: 'compliance', objectLockMargin: '2d' }, {}, '/home/x');
    expect(settingsArgs(locked, undefined).slice(-4)).toEqual(['--object-lock-mode', 'compliance', '--object-lock-margin', '172800s']);
  });

  it('names a configured repository by its name; a backup job with repo: goes there instead', () => {
    const dir2 = mkdtempSync(join(dir, 'conf-'));
    const config = join(dir2, 'pgdr.yaml');
    writeFileSync(config, 'repositories:\n  - { name: r2, url: "s3://a/p", s3Endpoint: "http://r2:9000" }\n  - { name: b2, url: "s3://b/p", receives: [backups] }\n');
    const named = settingsArgs(resolveSettings({ config, repo: 'r2' }, {}, '/home/x'), config);
    expect(named.slice(0, 4)).toEqual(['--repo', 'r2', '--cluster', 'default']);
    expect(named).not.toContain('--s3-endpoint');
    const each = settingsArgs(resolveSettings({ config }, {}, '/home/x'), config);
    expect(each).not.toContain('--repo');
    const offsite = parseScheduleSection({ jobs: { 'backup-offsite': { cron: '30 3 * * *', type: 'full', repo: 'b2' } } }, 'test', { etcdConfigured: false }).jobs.find((j) => j.name === 'backup-offsite')!;
    expect(offsite.repo).toBe('b2');
    expect(jobRepositoryArgs(offsite, ['--repo', 's3://x/y', '--s3-endpoint', 'http://e', '--s3-force-path-style', '--cluster', 'main'])).toEqual(['--repo', 'b2', '--cluster', 'main']);
  });
});

describe('the job commands', () => {
  // The scheduler spawns these; each must be a command of the built CLI (npm test builds dist/ first).
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const pgdr = (args: string[]): string => execFileSync(process.execPath, [join(root, 'bin', 'pgdr'), ...args], { encoding: 'utf8' });
  const subcommands = (help: string): string[] => {
    const lines = help.split('\n');
    return lines.slice(lines.findIndex((l) => l.trim() === 'Commands:') + 1).flatMap((l) => /^ {2}(\S+)/.exec(l)?.[1] ?? []);
  };

  // A backup job with a type and an engine, as policies/README.md shows one.
  const incrJob = parseScheduleSection({ jobs: { 'backup-incr': { cron: '0 2 * * *', type: 'incr', engine: 'files' } } }, 'test', { etcdConfigured: false }).jobs.find(
    (j) => j.name === 'backup-incr',
  )!;
  const commands = [...JOB_NAMES.map((name) => [name, JOB_COMMANDS[name]] as const), [incrJob.name, incrJob.command] as const];

  it.each(commands)('%s runs `pgdr %s`, which exists with its flags', (_name, command) => {
    if (!existsSync(join(root, 'dist', 'cli', 'entry.js'))) throw new Error('dist/ is missing: run `npm run build` first');
    const words = command.filter((w, i) => !w.startsWith('-') && !command.slice(0, i).some((p) => p.startsWith('-')));
    expect(subcommands(pgdr(['--help']))).toContain(words[0]);
    let help = pgdr([words[0]!, '--help']);
    if (words.length > 1) {
      expect(subcommands(help)).toContain(words[1]);
      help = pgdr([...words, '--help']);
    }
    for (const flag of command.filter((w) => w.startsWith('--'))) expect(help).toContain(flag);
    // Up to three cold starts of the full CLI: over a second each on a busy 2-core machine, past vitest's 5 s default.
  }, 30_000);
});
