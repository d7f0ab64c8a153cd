import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { treeDigest } from '../harness/tree.js';
import { RepositoryLayout } from '../../src/repo/layout.js';

/**
 * Tablespaces: each stored as its own object, restored where it was (created when missing, refused when not empty)
 * or where --tablespace-map puts it, through PITR, --force, the Patroni adapter and drills; an in-place tablespace,
 * which PostgreSQL leaves out of base backups, is refused before anything is stored.
 */
describe('tablespaces', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let location: string;
  let backupId: string;
  let middle: string;
  const layout = new RepositoryLayout('ts');

  const pgCtl = (pgdata: string, ...args: string[]) => runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, ...args], { reject: false, timeout: 120_000 });

  async function rows(port: number): Promise<number[]> {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      return (await client.query<{ id: number }>('SELECT id FROM spread ORDER BY id')).rows.map((r) => r.id);
    } finally {
      await client.end();
    }
  }

  /** restore --start, returns the rows of the table in the tablespace and where its file lives; stops the copy. */
  async function restoreAndRead(pgdata: string, extra: string[]): Promise<{ ids: number[]; tablespaceLink: string; json: Record<string, unknown> }> {
    const port = await freePort();
    const result = await runPgdrOk(['restore', '--pgdata', pgdata, '--start', '--port', String(port), '--archive-mode', 'off', '--json', ...extra, ...repoArgs], { timeoutMs: 180_000 });
    try {
      const oid = readdirSync(join(pgdata, 'pg_tblspc'))[0]!;
      return { ids: await rows(port), tablespaceLink: readlinkSync(join(pgdata, 'pg_tblspc', oid)), json: result.json() };
    } finally {
      await pgCtl(pgdata, '-m', 'fast', '-w', 'stop');
    }
  }

  beforeAll(async () => {
    repo = makeTempDir('ts-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'ts', '--no-progress'];
    server = await startPostgres({ name: 'ts', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'ts']) });
    location = join(makeTempDir('ts-location', { owner: 'service' }), 'ts1');
    mkdirSync(location);
    chownToServiceUser(location);
    await server.query(`CREATE TABLESPACE ts1 LOCATION '${location}'`);
    await server.query('CREATE TABLE spread (id int PRIMARY KEY) TABLESPACE ts1');
    await server.query('INSERT INTO spread SELECT generate_series(1, 100)');
    // The remote engine: what these tests check (one tar per tablespace, in-place tablespaces refused) is its.
    backupId = (await runPgdrOk(['backup', 'now', '--json', '--engine', 'basebackup', ...repoArgs], { env: server.libpqEnv(), timeoutMs: 180_000 })).json<{ backupId: string }>().backupId;
    await server.query('INSERT INTO spread SELECT generate_series(101, 150)');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    [{ at: middle }] = (await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)) as [{ at: string }];
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await server.query('INSERT INTO spread SELECT generate_series(151, 200)');
    await switchWalAndWaitForArchive(server);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('stores each tablespace as its own object, named in the manifest with its oid, name and location', () => {
    const manifest = JSON.parse(readFileSync(join(repo, ...layout.backupManifest(backupId).split('/')), 'utf8')) as { objects: { name: string; tablespace?: { name: string; location: string }; file?: string }[] };
    const tablespaces = manifest.objects.filter((o) => o.tablespace !== undefined);
    expect(tablespaces).toHaveLength(1);
    expect(tablespaces[0]!.name).toMatch(/^tablespace-\d+\.tar\.zst$/);
    expect(tablespaces[0]!.tablespace).toMatchObject({ name: 'ts1', location });
    expect(manifest.objects.map((o) => o.name)).toEqual(expect.arrayContaining(['base.tar.zst', 'backup_manifest.zst']));
  });

  it('PITR with --tablespace-map puts the tablespace in the mapped directory with exactly the rows of the target time', async () => {
    const parent = makeTempDir('ts-pitr', { owner: 'service' });
    const mapped = join(parent, 'moved-ts1');
    const restored = await restoreAndRead(join(parent, 'pgdata'), ['--target-time', middle, '--tablespace-map', `${location}=${mapped}`]);
    expect(restored.ids).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    expect(restored.tablespaceLink).toBe(mapped);
    expect(readdirSync(mapped).some((n) => /^PG_15_\d+$/.test(n))).toBe(true);
    expect(restored.json.tablespaces).toEqual([expect.objectContaining({ name: 'ts1', location: mapped })]);
  });

  it('maps by name too, and refuses a mapping that names no tablespace of the backup', async () => {
    const parent = makeTempDir('ts-byname', { owner: 'service' });
    const restored = await restoreAndRead(join(parent, 'pgdata'), ['--tablespace-map', `ts1=${join(parent, 'by-name')}`]);
    expect(restored.ids).toHaveLength(200);
    const wrong = await runPgdr(['restore', '--pgdata', join(parent, 'other'), '--tablespace-map', `nosuch=${join(parent, 'x')}`, ...repoArgs]);
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toMatch(/--tablespace-map nosuch names no tablespace of this backup/);
    expect(wrong.stderr).toMatch(/hint: its tablespaces: ts1/);
  });

  it('without a mapping, a tablespace returns to its old location: refused while that holds data, created when missing', async () => {
    const parent = makeTempDir('ts-original', { owner: 'service' });
    const refused = await runPgdr(['restore', '--pgdata', join(parent, 'pgdata'), ...repoArgs]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`tablespace ts1 ${location} is not empty`));
    expect(existsSync(join(parent, 'pgdata'))).toBe(false);

    // The production server is gone, its tablespace directory with it: the restore brings both back. (halt keeps the
    // server's files: the restored postgresql.conf still names its socket directory.)
    await server.halt();
    await runAsPostgres('rm', ['-rf', location]);
    const restored = await restoreAndRead(join(parent, 'pgdata'), []);
    expect(restored.ids).toHaveLength(200);
    expect(restored.tablespaceLink).toBe(location);
  });

  it('restore --force over a stopped cluster with a tablespace replaces both, and a damaged tablespace object leaves both as they were', async () => {
    const parent = makeTempDir('ts-force', { owner: 'service' });
    const pgdata = join(parent, 'pgdata');
    const moved = join(parent, 'ts');
    await restoreAndRead(pgdata, ['--tablespace-map', `ts1=${moved}`]);
    const before = { data: treeDigest(pgdata), ts: treeDigest(moved) };
    const object = join(repo, ...layout.backupObject(backupId, readdirSync(join(repo, ...layout.backupPrefix(backupId).split('/'))).find((n) => n.startsWith('tablespace-'))!).split('/'));
    const original = readFileSync(object);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)] = damaged[Math.floor(damaged.length / 2)]! ^ 0x33;
    writeFileSync(object, damaged);
    try {
      const failed = await runPgdr(['restore', '--pgdata', pgdata, '--force', '--tablespace-map', `ts1=${moved}`, ...repoArgs]);
      expect(failed.exitCode).toBe(5);
      expect(treeDigest(pgdata)).toEqual(before.data);
      expect(treeDigest(moved)).toEqual(before.ts);
      expect(readdirSync(parent).sort()).toEqual(['pgdata', 'ts']);
    } finally {
      writeFileSync(object, original);
    }
    const replaced = await restoreAndRead(pgdata, ['--force', '--target-time', middle, '--tablespace-map', `ts1=${moved}`]);
    expect(replaced.ids).toHaveLength(150);
    expect(readdirSync(parent).sort()).toEqual(['pgdata', 'ts']);
  });

  it('the Patroni bootstrap adapter takes a tablespace_map key as Patroni passes it', async () => {
    const parent = makeTempDir('ts-patroni', { owner: 'service' });
    const pgdata = join(parent, 'pgdata');
    await runPgdrOk(['patroni', 'bootstrap', `--datadir=${pgdata}`, '--scope=ts', `--tablespace_map=ts1=${join(parent, 'ts1')}`, ...repoArgs], { timeoutMs: 180_000 });
    expect(readFileSync(join(pgdata, 'tablespace_map'), 'utf8').trim()).toMatch(new RegExp(`^\\d+ ${join(parent, 'ts1')}$`));
  });

  it('a drill restores the tablespace into its scratch directory and passes', async () => {
    const scratch = makeTempDir('ts-drill', { owner: 'service' });
    const result = await runPgdr(['drill', '--scratch-dir', scratch, '--timeout', '300', '--json', ...repoArgs], { timeoutMs: 300_000 });
    const report = result.json<{ result: string; failures: string[] }>();
    expect(report.failures).toEqual([]);
    expect(report.result).toBe('passed');
    expect(readdirSync(scratch)).toEqual([]);
  });

  it('the basebackup engine refuses an in-place tablespace before anything is stored', async () => {
    const other = await startPostgres({ name: 'ts-inplace', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'inplace']) });
    // psql sends each statement on its own (CREATE TABLESPACE refuses a transaction block), in one session.
    await other.psql("SET allow_in_place_tablespaces = on;\nCREATE TABLESPACE here LOCATION '';\n");
    await other.query('CREATE TABLE lost (id int) TABLESPACE here');
    const result = await runPgdr(['backup', 'now', '--engine', 'basebackup', '--repo', `file://${repo}`, '--cluster', 'inplace', '--no-progress'], { env: other.libpqEnv(), timeoutMs: 120_000 });
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/in-place tablespace "here"/);
    expect(existsSync(join(repo, 'inplace', 'backups')) ? readdirSync(join(repo, 'inplace', 'backups')) : []).toEqual([]);
  });
});
