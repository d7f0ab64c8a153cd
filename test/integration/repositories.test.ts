import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { descendantPids, runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgdrBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';

/**
 * Several repositories (issue 9, point 2) on two real MinIO servers, each with its own keys, named in the config file
 * with a credentials file per repository and no AWS_* variable anywhere: WAL reaches both; one stopped for a minute
 * under write load delays archiving and loses nothing (PITR to latest from each gives the same rows, and a segment
 * missing from one is fetched from the other); a backup with two repositories receiving backups and no --repo is
 * refused; `pgdr copy` fills a fresh repository, a second run copies nothing, a copy killed before a manifest leaves
 * no half backup and the rerun completes it; a missing profile is one line naming the repository.
 */
describe('several repositories on two MinIO servers', () => {
  let minioA: MinioServer;
  let minioB: MinioServer;
  let server: PostgresServer;
  let config: string;
  let credentials: string;
  let badConfig: string;
  const cluster = 'multi';
  const layout = new RepositoryLayout(cluster);
  const stores: Record<string, ObjectStore> = {};

  const pgdr = (args: string[], timeoutMs = 240_000) => runPgdr([...args, '--config', config, '--no-progress'], { env: server.libpqEnv(), timeoutMs });
  const pgdrOk = (args: string[], timeoutMs = 240_000) => runPgdrOk([...args, '--config', config, '--no-progress'], { env: server.libpqEnv(), timeoutMs });

  async function walKeys(store: ObjectStore): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of store.list(layout.walTimelinePrefix('00000001'))) keys.push(o.key);
    return keys;
  }

  async function sourceIds(): Promise<number> {
    const [row] = await server.query<{ n: string }>('SELECT count(*)::text AS n FROM load');
    return Number(row!.n);
  }

  /** PITR to the end of the archive from one repository; returns the rows the restored server holds. */
  async function restoreLatest(repo: string): Promise<number> {
    const dir = makeTempDir(`multi-restore-${repo}`, { owner: 'service' });
    const pgdata = join(dir, 'pgdata');
    const port = await freePort();
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'immediate', 'stop']).catch(() => undefined);
    });
    try {
      await pgdrOk(['restore', '--repo', repo, '--pgdata', pgdata, '--target', 'latest', '--start', '--port', String(port), '--archive-mode', 'off', '--json']);
      // What the restored server was told to run: this config file and this repository first, no credentials.
      const auto = readFileSync(join(pgdata, 'postgresql.auto.conf'), 'utf8');
      expect(auto).toContain(`--repo ${repo}`);
      expect(auto).toContain(`--config ${config}`);
      expect(auto).not.toMatch(/secret|AWS_/i);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM load');
        return Number(rows[0]!.n);
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      unregister();
    }
  }

  beforeAll(async () => {
    [minioA, minioB] = await Promise.all([startMinio(), startMinio()]);
    await minioB.createBucket('pgdr-copy');
    const dir = makeTempDir('multi-config', { owner: 'service' });
    credentials = join(dir, 'credentials');
    writeFileSync(
      credentials,
      `[a]\naws_access_key_id = ${minioA.accessKey}\naws_secret_access_key = ${minioA.secretKey}\n\n` +
        `[b]\naws_access_key_id = ${minioB.accessKey}\naws_secret_access_key = ${minioB.secretKey}\n`,
      { mode: 0o600 },
    );
    chownToServiceUser(credentials);
    const entry = (name: string, minio: MinioServer, bucket: string, profile: string, receives: string) =>
      `  - name: ${name}\n    url: s3://${bucket}/pg\n    s3Endpoint: ${minio.endpoint}\n    s3ForcePathStyle: true\n    s3Region: us-east-1\n` +
      `    credentials: { file: ${credentials}, profile: ${profile} }\n    receives: ${receives}\n`;
    config = join(dir, 'pgdr.yaml');
    writeFileSync(
      config,
      `cluster: ${cluster}\nengine: basebackup\ns3Attempts: 2\nrepositories:\n` +
        entry('a', minioA, minioA.bucket, 'a', '[wal, backups, etcd]') +
        entry('b', minioB, minioB.bucket, 'b', '[wal, backups]') +
        entry('c', minioB, 'pgdr-copy', 'b', '[]') +
        entry('d', minioA, minioA.bucket, 'a', '[]').replace('/pg\n', '/copy-killed\n') +
        entry('e', minioB, 'pgdr-copy', 'b', '[backups]').replace('/pg\n', '/offsite\n'),
    );
    chownToServiceUser(config);
    // Apart: wal fetch asks every configured repository before it calls a file missing, and one it cannot open fails it.
    badConfig = join(dir, 'bad.yaml');
    writeFileSync(badConfig, `cluster: ${cluster}\nrepositories:\n${entry('bad', minioA, minioA.bucket, 'nope', '[]')}`);
    chownToServiceUser(badConfig);
    for (const [name, minio, bucket, url] of [
      ['a', minioA, minioA.bucket, 'pg'],
      ['b', minioB, minioB.bucket, 'pg'],
      ['c', minioB, 'pgdr-copy', 'pg'],
      ['d', minioA, minioA.bucket, 'copy-killed'],
    ] as const) {
      stores[name] = openStore(`s3://${bucket}/${url}`, {
        s3Endpoint: minio.endpoint,
        s3ForcePathStyle: true,
        s3Region: 'us-east-1',
        s3Credentials: { repository: name, file: credentials, profile: name === 'c' ? 'b' : name === 'd' ? 'a' : name },
      });
    }
    // No AWS_* variable: each repository's keys come from its profile.
    server = await startPostgres({ name: 'multi', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--config', config]) });
    await server.query('CREATE TABLE load (id bigserial PRIMARY KEY, note text)');
    await server.query("INSERT INTO load (note) SELECT 'before' FROM generate_series(1, 1000)");
  }, 180_000);

  afterAll(async () => {
    await Promise.all(Object.values(stores).map((s) => s.close()));
    await stopAll();
  });

  it('wal push stores each segment in both repositories; a backup with two receiving backups and no --repo is refused', async () => {
    await switchWalAndWaitForArchive(server);
    const [{ name }] = (await server.query<{ name: string }>('SELECT last_archived_wal AS name FROM pg_stat_archiver')) as [{ name: string }];
    for (const store of [stores.a!, stores.b!]) expect(await walKeys(store)).toContain(layout.walObject(name));

    const refused = await pgdr(['backup', 'now']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('pgdr backup now: the config file names several repositories that receive backups (a, b, e) and no --repo picks one');
    expect(refused.stderr).not.toContain('engine');
    await pgdrOk(['backup', 'now', '--repo', 'a']);
    await pgdrOk(['backup', 'now', '--repo', 'b']);
    expect((await pgdrOk(['backup', 'list', '--repo', 'b', '--json'])).json<unknown[]>()).toHaveLength(1);
  });

  it('one repository stopped for a minute under write load delays archiving and loses nothing; PITR from each gives the same rows', async () => {
    const archiver = async () => (await server.query<{ last: string | null; failed: string }>('SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver'))[0]!;
    const before = await archiver();
    minioB.kill();
    const outage: string[] = [];
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      await server.query("INSERT INTO load (note) SELECT 'outage' FROM generate_series(1, 2000)");
      const [{ walfile }] = (await server.query<{ walfile: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS walfile')) as [{ walfile: string }];
      outage.push(walfile);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
    }
    const during = await archiver();
    // Archiving stopped at the first segment of the outage: PostgreSQL kept retrying it.
    expect(Number(during.failed)).toBeGreaterThan(Number(before.failed));
    expect(during.last === null || during.last < outage[1]!).toBe(true);

    await minioB.start();
    await switchWalAndWaitForArchive(server, 240_000);
    const rows = await sourceIds();
    // The retries sent the stuck segment to b only: a's copy was recorded in the spool, not sent again.
    expect(server.logTail(5000)).toMatch(/is in a already; storing it in b/);
    expect(server.logTail(5000)).toMatch(/repository b: cannot reach the S3 endpoint/);
    const [a, b] = await Promise.all([walKeys(stores.a!), walKeys(stores.b!)]);
    for (const segment of outage) {
      expect(a).toContain(layout.walObject(segment));
      expect(b).toContain(layout.walObject(segment));
    }

    expect(await restoreLatest('a')).toBe(rows);
    // A segment b lacks (deleted by hand) is fetched from a: wal fetch falls back to the next repository.
    await stores.b!.delete([layout.walObject(outage[5]!)]);
    expect(await restoreLatest('b')).toBe(rows);
  }, 900_000);

  it('pgdr copy fills a fresh repository, a second run copies nothing, and a PITR from the copy is exact', async () => {
    const first = (await pgdrOk(['copy', '--from', 'a', '--to', 'c', '--json'])).json<{ copied: number; skipped: number; backups: { copied: number } }>();
    expect(first.copied).toBeGreaterThan(10);
    expect(first.backups.copied).toBe(1);
    const second = (await pgdrOk(['copy', '--from', 'a', '--to', 'c', '--json'])).json<{ copied: number; skipped: number }>();
    expect(second).toMatchObject({ copied: 0, skipped: first.copied + first.skipped });
    expect(await walKeys(stores.c!)).toEqual(await walKeys(stores.a!));
    expect(await restoreLatest('c')).toBe(await sourceIds());
  }, 600_000);

  it('a copy killed before a backup manifest shows no backup there; the rerun completes it and verify passes', async () => {
    const env = pgdrEnvironment({ ...server.libpqEnv(), PGDR_FAILPOINT: 'copy:before-manifest' });
    const child = runAsPostgres(process.execPath, [pgdrBin, 'copy', '--from', 'a', '--to', 'd', '--config', config, '--no-progress'], { env, extendEnv: false, reject: false, cwd: env.HOME, all: true });
    let output = '';
    child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + 180_000;
    while (!output.includes('failpoint copy:before-manifest reached')) {
      if (Date.now() > deadline) throw new Error(`the copy never reached its failpoint: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const node = descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgdrBin));
    process.kill(node!, 'SIGKILL');
    await child;
    const listed = (await pgdrOk(['backup', 'list', '--repo', 'd', '--json'])).json<{ status: string }[]>();
    expect(listed.every((b) => b.status !== 'complete')).toBe(true);

    const rerun = (await pgdrOk(['copy', '--from', 'a', '--to', 'd', '--json'])).json<{ copied: number; skipped: number; backups: { copied: number } }>();
    expect(rerun.backups.copied).toBe(1);
    expect(rerun.skipped).toBeGreaterThan(0);
    await pgdrOk(['verify', '--repo', 'd']);
  }, 600_000);

  it('a daily full into a repository that receives no WAL copies its WAL there: verify passes, gaps between backups are notes; health covers each', async () => {
    const first = (await pgdrOk(['backup', 'now', '--repo', 'e', '--json'])).json<{ backupId: string }>();
    await server.query("INSERT INTO load (note) SELECT 'between' FROM generate_series(1, 2000)");
    await switchWalAndWaitForArchive(server);
    await switchWalAndWaitForArchive(server);
    const second = (await pgdrOk(['backup', 'now', '--repo', 'e', '--json'])).json<{ backupId: string }>();
    expect(second.backupId > first.backupId).toBe(true);
    const verify = (await pgdrOk(['verify', '--repo', 'e', '--json'])).json<{ ok: boolean; notes: { kind: string }[] }>();
    expect(verify.ok).toBe(true);
    expect(verify.notes.some((n) => n.kind === 'wal-between-backups')).toBe(true);

    const health = await pgdr(['health', '--json', '--check', 'backup-age,wal-archive']);
    const report = health.json<{ exitCode: number; repositories: { name: string; checks: { check: string; status: string; message: string }[] }[] }>();
    expect(report.repositories.map((r) => r.name)).toEqual(['a', 'b', 'c', 'd', 'e']);
    const e = report.repositories.find((r) => r.name === 'e')!;
    expect(e.checks.find((c) => c.check === 'wal-archive')).toMatchObject({ status: 'SKIPPED', message: expect.stringContaining('repository e does not receive WAL') });
    expect(e.checks.find((c) => c.check === 'backup-age')!.status).toBe('OK');
    expect(report.repositories.find((r) => r.name === 'a')!.checks.find((c) => c.check === 'wal-archive')!.status).toBe('OK');
  }, 600_000);

  it('a repository whose credentials profile does not exist is one clear line naming it', async () => {
    const result = await runPgdr(['backup', 'list', '--repo', 'bad', '--config', badConfig], { env: server.libpqEnv() });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`pgdr: repository bad: its credentials file ${credentials} has no profile [nope]`);
    expect(result.stderr.trim().split('\n')).toHaveLength(2);
  });
});
