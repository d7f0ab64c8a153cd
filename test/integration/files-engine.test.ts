import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin, pgdrBin } from '../harness/preflight.js';
import { amcheckCopy, quietPointInTime } from '../harness/restored-copy.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';

/**
 * The files engine (issue 10): full, incr and diff backups read from the data directory by N workers, each restored
 * to exact rows at a point in time; a tablespace inside a files-engine backup; a relation changed while the backup
 * reads it; and a delta restore of a stopped former primary. What the engine survives (kill -9 mid-backup, a write-back
 * error, a delta restore killed before pg_control) is in the fault suite, test/integration/faults.test.ts.
 */
interface BackupJson {
  backupId: string;
  type: string;
  engine: string;
  reference: string | null;
  bytes: number;
  storedBytes: number;
  stopLsn: string;
}

describe('files engine', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let tsLocation: string;

  const env = () => server.libpqEnv();
  const backup = async (...args: string[]) =>
    (await runPgdrOk(['backup', 'now', '--json', '--jobs', '2', ...args, ...repoArgs], { env: env(), timeoutMs: 180_000 })).json<BackupJson>();

  const pointInTime = () => quietPointInTime(server);

  /** The rows a restored copy holds, in a form that compares exactly: every table's count and content hash. */
  const STATE_SQL = `
    SELECT (SELECT count(*) FROM events)::int AS events,
           (SELECT coalesce(sum(hashtext(id::text || ':' || note)), 0)::text FROM events) AS events_hash,
           (SELECT count(*) FROM docs)::int AS docs,
           (SELECT coalesce(sum(hashtext(body::text)), 0)::text FROM docs) AS docs_hash,
           (SELECT count(*) FROM spread)::int AS spread`;
  type State = { events: number; events_hash: string; docs: number; docs_hash: string; spread: number };
  const state = async (): Promise<State> => (await server.query<State>(STATE_SQL))[0]!;

  /** Restores with --start into a new directory, returns the restored state, pg_amcheck's verdict, and stops the copy. */
  async function restoreAndRead(args: string[]): Promise<{ state: State; amcheck: number; pgdata: string; log: string }> {
    const parent = makeTempDir('files-restore', { owner: 'service' });
    const pgdata = join(parent, 'pgdata');
    const port = await freePort();
    const result = await runPgdrOk(
      ['restore', '--pgdata', pgdata, '--start', '--port', String(port), '--archive-mode', 'off', '--jobs', '2', '--tablespace-map', `ts1=${join(parent, 'ts1')}`, ...args, ...repoArgs],
      { timeoutMs: 180_000 },
    );
    try {
      return { ...(await readCopy(port)), pgdata, log: result.stderr };
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'fast', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  }

  async function readCopy(port: number): Promise<{ state: State; amcheck: number }> {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await client.connect();
    let copy: State;
    try {
      copy = (await client.query<State>(STATE_SQL)).rows[0]!;
    } finally {
      await client.end();
    }
    return { state: copy, amcheck: (await amcheckCopy(port)).exitCode };
  }

  beforeAll(async () => {
    repo = makeTempDir('files-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'files', '--no-progress'];
    server = await startPostgres({ name: 'files', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'files']) });
    tsLocation = join(makeTempDir('files-ts', { owner: 'service' }), 'ts1');
    await runAsPostgres('mkdir', [tsLocation]);
    chownToServiceUser(tsLocation);
    await server.query(`CREATE TABLESPACE ts1 LOCATION '${tsLocation}'`);
    // Short log-like rows with several indexes, wide JSON rows, and a table in the tablespace.
    await server.query('CREATE TABLE events (id int PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())');
    await server.query('CREATE INDEX ON events (note)');
    await server.query('CREATE INDEX ON events (at)');
    await server.query("INSERT INTO events (id, note) SELECT g, 'event ' || g FROM generate_series(1, 60000) g");
    await server.query('CREATE TABLE docs (id int PRIMARY KEY, body jsonb NOT NULL)');
    await server.query("INSERT INTO docs SELECT g, jsonb_build_object('id', g, 'tags', ARRAY['a', 'b', g::text], 'text', repeat(md5(g::text), 8)) FROM generate_series(1, 5000) g");
    await server.query('CREATE TABLE spread (id int PRIMARY KEY) TABLESPACE ts1');
    await server.query('INSERT INTO spread SELECT generate_series(1, 1000)');
    await server.query('CHECKPOINT');
  });

  afterAll(async () => {
    await stopAll();
  });

  let full: BackupJson;
  let incr: BackupJson;
  const expected: { at: string; state: State }[] = [];

  it('takes a full backup with the files engine where the data directory is readable, and restores it to exact rows', async () => {
    full = await backup();
    expect(full).toMatchObject({ type: 'full', engine: 'files', reference: null });
    const manifest = JSON.parse(readFileSync(join(repo, 'files', 'backups', full.backupId, 'manifest.json'), 'utf8')) as { format: number; objects: { name: string; content?: string; tablespace?: { name: string } }[] };
    expect(manifest.format).toBe(2);
    expect(manifest.objects.some((o) => o.content === 'file-list')).toBe(true);
    expect(manifest.objects.some((o) => o.tablespace?.name === 'ts1')).toBe(true);
    await server.query("INSERT INTO events (id, note) SELECT g, 'after full ' || g FROM generate_series(60001, 60100) g");
    const at = await pointInTime();
    expected.push({ at, state: await state() });
    await server.query("INSERT INTO events (id, note) VALUES (99999, 'too late')");
    await switchWalAndWaitForArchive(server);
    const restored = await restoreAndRead(['--target-time', at, '--backup-id', full.backupId]);
    expect(restored.state).toEqual(expected[0]!.state);
    expect(restored.amcheck).toBe(0);
    expect(readlinkSync(join(restored.pgdata, 'pg_tblspc', readdirSync(join(restored.pgdata, 'pg_tblspc'))[0]!))).toMatch(/ts1$/);
  });

  it('an incr after updating 5% of the rows stores a fraction of the full, and PITRs to exact rows', async () => {
    await server.query("UPDATE events SET note = note || ' updated' WHERE id <= 3000");
    await server.query("UPDATE spread SET id = id + 100000 WHERE id <= 50");
    incr = await backup('--type', 'incr');
    expect(incr).toMatchObject({ type: 'incr', engine: 'files', reference: full.backupId });
    expect(incr.storedBytes).toBeLessThan(full.storedBytes * 0.3);
    await server.query("INSERT INTO events (id, note) SELECT g, 'after incr ' || g FROM generate_series(70001, 70050) g");
    const at = await pointInTime();
    expected.push({ at, state: await state() });
    await server.query("DELETE FROM events WHERE id > 70040");
    await switchWalAndWaitForArchive(server);
    const restored = await restoreAndRead(['--target-time', at]);
    expect(restored.log).toMatch(new RegExp(`from ${full.backupId}, ${incr.backupId}`));
    expect(restored.state).toEqual(expected[1]!.state);
    expect(restored.amcheck).toBe(0);
  });

  it('a diff builds on the full, not on the incr, and PITRs to exact rows', async () => {
    await server.query("UPDATE docs SET body = body || '{\"changed\": true}' WHERE id % 50 = 0");
    const diff = await backup('--type', 'diff');
    expect(diff).toMatchObject({ type: 'diff', reference: full.backupId });
    const at = await pointInTime();
    expected.push({ at, state: await state() });
    await server.query('DELETE FROM docs WHERE id <= 10');
    await switchWalAndWaitForArchive(server);
    const restored = await restoreAndRead(['--target-time', at, '--backup-id', diff.backupId]);
    expect(restored.state).toEqual(expected[2]!.state);
    expect(restored.amcheck).toBe(0);
  });

  it('a relation rewritten while the backup reads it (the file changes between two reads) still restores consistently', async () => {
    const [{ path }] = (await server.query<{ path: string }>("SELECT pg_relation_filepath('events') AS path")) as [{ path: string }];
    const release = join(makeTempDir('files-release', { owner: 'service' }), 'go');
    const env = pgdrEnvironment({ ...server.libpqEnv(), PGDR_FAILPOINT: 'files:after-first-chunk', PGDR_FAILPOINT_MATCH: path, PGDR_FAILPOINT_RELEASE: release });
    const child = runAsPostgres(process.execPath, [pgdrBin, 'backup', 'now', '--json', '--type', 'incr', '--jobs', '1', ...repoArgs], { env, extendEnv: false, reject: false, cwd: env.HOME, all: true });
    let output = '';
    child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output.includes('failpoint files:after-first-chunk reached'), 120_000, `the backup to pause in ${path}: ${output}`);
    // The first 1 MB of the table is read; now every page of it changes, and reaches the disk before the rest is read.
    await server.query("UPDATE events SET note = note || ' during backup'");
    await server.query('CHECKPOINT');
    writeFileSync(release, '');
    const result = await child;
    expect(result.exitCode, output).toBe(0);
    const at = await pointInTime();
    expected.push({ at, state: await state() });
    await server.query("UPDATE events SET note = 'after' WHERE id <= 10");
    await switchWalAndWaitForArchive(server);
    const restored = await restoreAndRead(['--target-time', at]);
    expect(restored.state).toEqual(expected[3]!.state);
    expect(restored.amcheck).toBe(0);
  });

  it('the Patroni replica adapter takes delta: true and brings a kept data directory up to the newest backup', async () => {
    const parent = makeTempDir('files-replica', { owner: 'service' });
    const datadir = join(parent, 'pgdata');
    await runPgdrOk(['restore', '--pgdata', datadir, '--backup-id', full.backupId, '--tablespace-map', `ts1=${join(parent, 'ts1')}`, ...repoArgs], { timeoutMs: 180_000 });
    const rebuilt = await runPgdrOk(['patroni', 'create-replica', '--scope=files', '--role=replica', `--datadir=${datadir}`, '--keep_data=true', '--delta=true', `--tablespace_map=ts1=${join(parent, 'ts1')}`, '--json', ...repoArgs], { timeoutMs: 180_000 });
    expect(rebuilt.stderr).toMatch(/restore --delta: \d+ of \d+ same-size files already match the backup/);
    const newest = (await runPgdrOk(['backup', 'list', '--json', ...repoArgs])).json<{ backupId: string; status: string }[]>().filter((b) => b.status === 'complete').at(-1)!;
    expect(rebuilt.json<{ backupId: string; purpose: string }>()).toMatchObject({ backupId: newest.backupId, purpose: 'replica' });
    expect(readFileSync(join(datadir, 'backup_label'), 'utf8')).toMatch(new RegExp(`LABEL: pgdr ${newest.backupId}`));
  });

  it('delta restore of the stopped former primary onto the current backup rewrites only what differs, then PITRs to exact rows', async () => {
    const current = await backup('--type', 'incr');
    const at = await pointInTime();
    const target = await state();
    // Writes the archive never sees: the primary dies with them (the copy must not keep them).
    await server.query("INSERT INTO events (id, note) SELECT g, 'lost' FROM generate_series(80001, 80100) g");
    await switchWalAndWaitForArchive(server);
    await server.query("INSERT INTO events (id, note) VALUES (90001, 'never archived')");
    await server.halt('immediate');
    const pgdata = server.pgdata;
    const port = await freePort();
    const deltaArgs = ['restore', '--pgdata', pgdata, '--delta', '--target-time', at, '--backup-id', current.backupId, '--jobs', '2', ...repoArgs];

    const result = await runPgdrOk([...deltaArgs, '--start', '--port', String(port), '--archive-mode', 'off', '--json'], { timeoutMs: 180_000 });
    try {
      const kept = /restore --delta: (\d+) of (\d+) same-size files already match/.exec(result.stderr);
      expect(kept, result.stderr).not.toBeNull();
      expect(Number(kept![1])).toBeGreaterThan(Number(kept![2]) * 0.5);
      const copy = await readCopy(port);
      expect(copy.state).toEqual(target);
      expect(copy.amcheck).toBe(0);
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'fast', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  });
});

describe('files engine with an in-place tablespace', () => {
  afterAll(async () => {
    await stopAll();
  });

  it('backs it up with the data directory (its files live in pg_tblspc) and restores its rows', async () => {
    const repo = makeTempDir('files-inplace-repo', { owner: 'service' });
    const repoArgs = ['--repo', `file://${repo}`, '--cluster', 'inplace', '--no-progress'];
    const server = await startPostgres({ name: 'files-inplace', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'inplace']) });
    // psql sends each statement on its own (CREATE TABLESPACE refuses a transaction block), in one session.
    await server.psql("SET allow_in_place_tablespaces = on;\nCREATE TABLESPACE here LOCATION '';\n");
    await server.query('CREATE TABLE kept (id int PRIMARY KEY) TABLESPACE here');
    await server.query('INSERT INTO kept SELECT generate_series(1, 500)');
    const result = await runPgdrOk(['backup', 'now', '--json', '--engine', 'files', ...repoArgs], { env: server.libpqEnv(), timeoutMs: 180_000 });
    expect(result.json<BackupJson>().engine).toBe('files');
    await server.query('INSERT INTO kept SELECT generate_series(501, 600)');
    await switchWalAndWaitForArchive(server);
    const pgdata = join(makeTempDir('files-inplace-restore', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    await runPgdrOk(['restore', '--pgdata', pgdata, '--start', '--port', String(port), '--archive-mode', 'off', ...repoArgs], { timeoutMs: 180_000 });
    try {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        expect((await client.query<{ n: string }>('SELECT count(*) AS n FROM kept')).rows[0]!.n).toBe('600');
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'fast', '-w', 'stop'], { reject: false, timeout: 60_000 });
    }
  });
});

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
