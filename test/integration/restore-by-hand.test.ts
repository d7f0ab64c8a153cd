import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin, pgBinDir } from '../harness/preflight.js';
import { amcheckCopy } from '../harness/restored-copy.js';
import { makeTempDir, serviceUser } from '../harness/temp.js';

const runbookPath = join(import.meta.dirname, '..', '..', 'docs', 'runbooks', 'restore-by-hand.md');
const scriptPath = join(import.meta.dirname, 'restore-by-hand', 'file-repository.sh');
const chainScriptPath = join(import.meta.dirname, 'restore-by-hand', 'files-chain.sh');

/**
 * The open-format promise: with only cp, jq, sha256sum, zstd, tar and PostgreSQL, the runbook brings a backup with
 * a tablespace back to an exact point in time. The script runs the runbook's own lines; pgdr is not on its PATH.
 */
describe('restore by hand (docs/runbooks/restore-by-hand.md)', () => {
  let server: PostgresServer;
  let repo: string;
  let target: string;

  beforeAll(async () => {
    repo = makeTempDir('byhand-repo', { owner: 'service' });
    server = await startPostgres({ name: 'byhand', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'main']) });
    const location = join(makeTempDir('byhand-ts', { owner: 'service' }), 'ts1');
    await runAsPostgres('mkdir', [location]);
    await server.query(`CREATE TABLESPACE ts1 LOCATION '${location}'`);
    await server.query("CREATE TABLE events (id int PRIMARY KEY, phase text) TABLESPACE ts1");
    await server.query("INSERT INTO events SELECT g, 'before-backup' FROM generate_series(1, 1000) g");
    await runPgdrOk(['backup', 'now', '--engine', 'basebackup', '--repo', `file://${repo}`, '--cluster', 'main', '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
    await server.query("INSERT INTO events SELECT g, 'after-backup' FROM generate_series(1001, 3000) g");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    // The form the runbook tells readers to write: a space, and a numeric offset.
    [{ at: target }] = (await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`)) as [{ at: string }];
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await server.query("INSERT INTO events SELECT g, 'after-target' FROM generate_series(3001, 3500) g");
    await switchWalAndWaitForArchive(server);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('every line of the script, except its own setup, is in the runbook word for word', () => {
    const runbook = readFileSync(runbookPath, 'utf8');
    const runbookLines = scriptLines().filter((line) => !/#\s*test\s*$/.test(line));
    expect(runbookLines.length).toBeGreaterThan(20);
    for (const line of runbookLines) expect(runbook, `runbook lacks: ${line}`).toContain(line.trim());
    // The settings the script writes with the test's paths, as the runbook shows them.
    for (const setting of [
      "restore_command = 'zstd -d -q -f /var/lib/pgdr/repo/main/wal/$(echo %f | cut -c1-8)/%f.zst -o %p'",
      "recovery_target_action = 'promote'",
      'archive_mode = off',
    ]) {
      expect(runbook).toContain(setting);
    }
  });

  it('restores a backup with a tablespace to the target time, with exactly the rows committed before it', async () => {
    const parent = makeTempDir('byhand-restore', { owner: 'service' });
    const D = join(parent, 'pgdata');
    const TS = join(parent, 'tablespaces');
    const port = await freePort();
    const run = await runScript(scriptPath, { REPO: join(repo, 'main'), D, W: join(parent, 'work'), TS, TARGET: target, PORT: String(port) });
    try {
      expect(run.exitCode, run.stderr + run.stdout).toBe(0);
      expect(run.stdout).toMatch(/base\.tar\.zst: OK/);
      expect(run.stdout).toMatch(/tablespace-\d+\.tar\.zst: OK/);
      expect(run.stdout).not.toMatch(/wrong size/);
      expect(run.stdout).toMatch(/backup successfully verified/);

      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        await waitUntilPromoted(client);
        expect(readFileSync(join(D, 'restore.log'), 'utf8')).toMatch(/recovery stopping before commit/);
        const phases = await client.query<{ phase: string; n: string; lo: number; hi: number }>('SELECT phase, count(*) AS n, min(id) AS lo, max(id) AS hi FROM events GROUP BY phase ORDER BY lo');
        expect(phases.rows.map((r) => [r.phase, Number(r.n), r.lo, r.hi])).toEqual([
          ['before-backup', 1000, 1, 1000],
          ['after-backup', 2000, 1001, 3000],
        ]);
      } finally {
        await client.end();
      }
      const [oid] = readdirSync(join(D, 'pg_tblspc'));
      expect(readlinkSync(join(D, 'pg_tblspc', oid!))).toBe(join(TS, oid!));
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', D, '-m', 'immediate', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  });
});

function scriptLines(path = scriptPath): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'));
}

/** Runs a runbook script as root would (without root, runuser and chown to postgres are neither possible nor needed). */
function runScript(path: string, env: Record<string, string>) {
  const text = readFileSync(path, 'utf8');
  const script = serviceUser().switchUser ? text : text.replaceAll('runuser -u postgres -- ', '').replaceAll('-o postgres -g postgres ', '').replace(/^chown -R .*$/m, '');
  return execa('bash', ['-c', script], {
    env: { ...env, PGBIN: pgBinDir(), PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' },
    extendEnv: false,
    reject: false,
    timeout: 180_000,
  });
}

async function waitUntilPromoted(client: pg.Client): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    if (!rows[0]!.r) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('the hand-restored server did not promote within 20 s');
}

describe('restore a files-engine chain by hand (docs/runbooks/restore-by-hand.md)', () => {
  let server: PostgresServer;
  let repo: string;
  let target: string;
  let incr2: string;
  let expected: { phase: string; n: number }[];

  beforeAll(async () => {
    repo = makeTempDir('byhand-chain-repo', { owner: 'service' });
    const args = ['--repo', `file://${repo}`, '--cluster', 'main', '--no-progress', '--engine', 'files', '--json'];
    server = await startPostgres({ name: 'byhand-chain', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'main']) });
    const location = join(makeTempDir('byhand-chain-ts', { owner: 'service' }), 'ts1');
    await runAsPostgres('mkdir', [location]);
    await server.query(`CREATE TABLESPACE ts1 LOCATION '${location}'`);
    await server.query('CREATE TABLE events (id int PRIMARY KEY, phase text NOT NULL)');
    await server.query("INSERT INTO events SELECT g, 'full' FROM generate_series(1, 40000) g");
    await server.query('CREATE TABLE spread (id int PRIMARY KEY, phase text) TABLESPACE ts1');
    await server.query("INSERT INTO spread SELECT g, 'full' FROM generate_series(1, 2000) g");
    await server.query('CREATE TABLE dropped (id int)');
    await server.query('INSERT INTO dropped SELECT generate_series(1, 100)');
    await runPgdrOk(['backup', 'now', ...args], { env: server.libpqEnv(), timeoutMs: 180_000 });
    await server.query("UPDATE events SET phase = 'incr1' WHERE id <= 2000");
    await server.query("UPDATE spread SET phase = 'incr1' WHERE id <= 100");
    await server.query('DROP TABLE dropped');
    const first = (await runPgdrOk(['backup', 'now', '--type', 'incr', ...args], { env: server.libpqEnv(), timeoutMs: 180_000 })).json<{ type: string }>();
    expect(first.type).toBe('incr');
    await server.query("INSERT INTO events SELECT g, 'incr2' FROM generate_series(40001, 41000) g");
    await server.query("UPDATE events SET phase = 'incr2' WHERE id BETWEEN 30001 AND 31000");
    const second = (await runPgdrOk(['backup', 'now', '--type', 'incr', ...args], { env: server.libpqEnv(), timeoutMs: 180_000 })).json<{ backupId: string; type: string }>();
    expect(second.type).toBe('incr');
    incr2 = second.backupId;
    await server.query("INSERT INTO events SELECT g, 'before-target' FROM generate_series(50001, 50100) g");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    [{ at: target }] = (await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`)) as [{ at: string }];
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expected = (await server.query<{ phase: string; n: string }>('SELECT phase, count(*) AS n FROM events GROUP BY phase ORDER BY phase')).map((r) => ({ phase: r.phase, n: Number(r.n) }));
    await server.query("INSERT INTO events SELECT g, 'after-target' FROM generate_series(60001, 60100) g");
    await switchWalAndWaitForArchive(server);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('every line of the chain script, except its own setup, is in the runbook word for word', () => {
    const runbook = readFileSync(runbookPath, 'utf8');
    const lines = scriptLines(chainScriptPath).filter((line) => !/#\s*test\s*$/.test(line));
    expect(lines.length).toBeGreaterThan(30);
    for (const line of lines) expect(runbook, `runbook lacks: ${line}`).toContain(line.trim());
  });

  it('restores a full and two incrs (with block runs, a tablespace and a dropped table) to the target time', async () => {
    const parent = makeTempDir('byhand-chain-restore', { owner: 'service' });
    const D = join(parent, 'pgdata');
    const TS = join(parent, 'tablespaces');
    const port = await freePort();
    const manifest = JSON.parse(readFileSync(join(repo, 'main', 'backups', incr2, 'manifest.json'), 'utf8')) as { chain: string[]; objects: { content?: string }[] };
    expect(manifest.chain).toHaveLength(2);
    expect(manifest.objects.some((o) => o.content === 'blocks')).toBe(true);
    const run = await runScript(chainScriptPath, { REPO: join(repo, 'main'), D, W: join(parent, 'work'), TS, ID: incr2, TARGET: target, PORT: String(port) });
    try {
      expect(run.exitCode, run.stderr + run.stdout).toBe(0);
      expect(run.stdout).not.toMatch(/DAMAGED/);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        await waitUntilPromoted(client);
        expect(readFileSync(join(D, 'restore.log'), 'utf8')).toMatch(/recovery stopping before commit/);
        const phases = await client.query<{ phase: string; n: string }>('SELECT phase, count(*) AS n FROM events GROUP BY phase ORDER BY phase');
        expect(phases.rows.map((r) => ({ phase: r.phase, n: Number(r.n) }))).toEqual(expected);
        const spread = await client.query<{ n: string }>("SELECT count(*) AS n FROM spread WHERE phase = 'incr1'");
        expect(spread.rows[0]!.n).toBe('100');
        const dropped = await client.query<{ n: string }>("SELECT count(*) AS n FROM pg_class WHERE relname = 'dropped'");
        expect(dropped.rows[0]!.n).toBe('0');
      } finally {
        await client.end();
      }
      const amcheck = await amcheckCopy(port);
      expect(amcheck.exitCode, amcheck.output).toBe(0);
      const [oid] = readdirSync(join(D, 'pg_tblspc'));
      expect(readlinkSync(join(D, 'pg_tblspc', oid!))).toBe(join(TS, oid!));
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', D, '-m', 'immediate', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  });
});

describe('restore an encrypted backup by hand (docs/repository-format.md#restoring-an-encrypted-backup-by-hand)', () => {
  const formatDoc = join(import.meta.dirname, '..', '..', 'docs', 'repository-format.md');
  const encryptedScript = join(import.meta.dirname, 'restore-by-hand', 'encrypted.sh');
  let server: PostgresServer;
  let repo: string;
  let key: string;
  let target: string;

  beforeAll(async () => {
    repo = makeTempDir('byhand-enc-repo', { owner: 'service' });
    const keys = makeTempDir('byhand-enc-keys', { owner: 'service' });
    key = join(keys, 'ops.txt');
    await runAsPostgres('age-keygen', ['-o', key]);
    const recipient = (await execa('age-keygen', ['-y', key])).stdout.trim();
    const args = ['--repo', `file://${repo}`, '--cluster', 'main', '--encrypt-recipient', recipient];
    server = await startPostgres({ name: 'byhand-enc', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...args]) });
    await server.query('CREATE TABLE events (id int PRIMARY KEY, phase text)');
    await server.query("INSERT INTO events SELECT g, 'before-backup' FROM generate_series(1, 1000) g");
    await runPgdrOk(['backup', 'now', '--engine', 'basebackup', '--no-progress', ...args], { env: server.libpqEnv(), timeoutMs: 180_000 });
    await server.query("INSERT INTO events SELECT g, 'after-backup' FROM generate_series(1001, 3000) g");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    [{ at: target }] = (await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`)) as [{ at: string }];
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await server.query("INSERT INTO events SELECT g, 'after-target' FROM generate_series(3001, 3500) g");
    await switchWalAndWaitForArchive(server);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('every line of the script, except its own setup, is in the repository-format doc word for word', () => {
    const doc = readFileSync(formatDoc, 'utf8');
    const lines = scriptLines(encryptedScript).filter((line) => !/#\s*test\s*$/.test(line));
    expect(lines.length).toBeGreaterThan(15);
    for (const line of lines) expect(doc, `repository-format.md lacks: ${line}`).toContain(line.trim());
  });

  it('age -d, zstd -d and tar restore the encrypted backup to the target time, with exactly the rows committed before it', async () => {
    const parent = makeTempDir('byhand-enc-restore', { owner: 'service' });
    const D = join(parent, 'pgdata');
    const port = await freePort();
    const run = await runScript(encryptedScript, { REPO: join(repo, 'main'), D, W: join(parent, 'work'), KEY: key, TARGET: target, PORT: String(port) });
    try {
      expect(run.exitCode, run.stderr + run.stdout).toBe(0);
      expect(run.stdout).toMatch(/base\.tar\.zst: OK/);
      expect(run.stdout).toMatch(/backup successfully verified/);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        await waitUntilPromoted(client);
        expect(readFileSync(join(D, 'restore.log'), 'utf8')).toMatch(/recovery stopping before commit/);
        const phases = await client.query<{ phase: string; n: string }>('SELECT phase, count(*) AS n FROM events GROUP BY phase ORDER BY phase');
        expect(phases.rows.map((r) => [r.phase, Number(r.n)])).toEqual([
          ['after-backup', 2000],
          ['before-backup', 1000],
        ]);
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', D, '-m', 'immediate', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  });
});
