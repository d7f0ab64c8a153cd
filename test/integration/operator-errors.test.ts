import { largestDataObject } from '../harness/backups.js';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin, pgdrBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { RepositoryLayout } from '../../src/repo/layout.js';

/**
 * What an operator in a hurry meets: pgdr connecting the way libpq does, setup errors that are not mistaken for a
 * failover, the leader found through etcd alone, restore points that pick the right backup, private files, a TLS
 * failure that names the fix, and output that behaves in a pipe and under --json.
 */
describe('pgdr behaves like libpq and its errors point the right way', () => {
  let server: PostgresServer;
  let etcd: EtcdCluster;
  let repo: string;
  let repoArgs: string[];
  const layout = new RepositoryLayout('ops');

  beforeAll(async () => {
    repo = makeTempDir('ops-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'ops', '--no-progress'];
    server = await startPostgres({ name: 'ops', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'ops']) });
    await server.query('CREATE TABLE t (id int PRIMARY KEY)');
    // A role that needs a password pgdr is not given: a setup error, not an outage.
    await server.query("CREATE ROLE app LOGIN PASSWORD 'secret'");
    const hba = join(server.pgdata, 'pg_hba.conf');
    const rest = readFileSync(hba, 'utf8');
    await execa('bash', ['-c', `printf 'host all app 127.0.0.1/32 scram-sha-256\\n' > '${hba}.new' && cat '${hba}' >> '${hba}.new' && mv '${hba}.new' '${hba}' && chown postgres: '${hba}'`]);
    expect(readFileSync(hba, 'utf8').endsWith(rest)).toBe(true);
    await server.query('SELECT pg_reload_conf()');
    etcd = await startEtcdCluster({ members: 1, name: 'ops-dcs' });
    // The leader key and member entry Patroni keeps in etcd, naming this server.
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      await client.put('/service/ops/leader').value('pg1');
      await client.put('/service/ops/members/pg1').value(JSON.stringify({ conn_url: `postgres://127.0.0.1:${server.port}/postgres`, role: 'primary', state: 'running', timeline: 1 }));
    } finally {
      client.close();
    }
  });

  afterAll(async () => {
    await stopAll();
  });

  it('with neither PGUSER nor --pg-user (and USER unset), connects as the OS user, as libpq does', async () => {
    const result = await runPgdr(['backup', 'now', '--etcd', etcd.endpoints.join(','), '--json', ...repoArgs], { env: { USER: '', LOGNAME: '' }, timeoutMs: 120_000 });
    expect(result.stderr).not.toMatch(/no leader|found no/);
    expect(result.exitCode).toBe(0);
  });

  it('a role without its password is a setup error at once, not a failover waited out for --leader-wait', async () => {
    const started = Date.now();
    const result = await runPgdr(['backup', 'now', '--etcd', etcd.endpoints.join(','), '--pg-user', 'app', '--leader-wait', '60', ...repoArgs], { timeoutMs: 120_000 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/as app refused the connection/);
    expect(result.stderr).toMatch(/hint: a setup problem, not an outage/);
  });

  it('health finds the leader through etcd alone and judges WAL archiving there', async () => {
    const result = await runPgdr(['health', '--etcd', etcd.endpoints.join(','), '--check', 'wal-archive', '--json', ...repoArgs], { timeoutMs: 60_000 });
    const report = result.json<{ checks: { check: string; status: string; message: string }[] }>();
    const check = report.checks.find((c) => c.check === 'wal-archive')!;
    expect(check.status, check.message).not.toBe('SKIPPED');
    expect(check.status, check.message).not.toBe('UNKNOWN');
  });

  it('base backup objects and their directories are private to the repository owner (0600/0700)', async () => {
    const list = (await runPgdrOk(['backup', 'list', '--json', ...repoArgs])).json<{ backupId: string; status: string }[]>();
    const id = list.filter((b) => b.status === 'complete').at(-1)!.backupId;
    const object = join(repo, ...layout.backupObject(id, largestDataObject(readFileSync(join(repo, ...layout.backupManifest(id).split('/'))))).split('/'));
    expect(statSync(object).mode & 0o777).toBe(0o600);
    expect(statSync(join(object, '..')).mode & 0o777).toBe(0o700);
    expect(statSync(join(repo, ...layout.backupManifest(id).split('/'))).mode & 0o777).toBe(0o600);
  });

  it('--target-name picks the backup that finished before a restore point pgdr created, and the rows are exact', async () => {
    await server.query('INSERT INTO t SELECT generate_series(1, 10)');
    const point = (await runPgdrOk(['restore-point', 'create', 'before-b', '--json', ...repoArgs], { env: server.libpqEnv() })).json<{ lsn: string }>();
    expect(point.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    await server.query('INSERT INTO t SELECT generate_series(11, 20)');
    const later = (await runPgdrOk(['backup', 'now', '--json', ...repoArgs], { env: server.libpqEnv(), timeoutMs: 120_000 })).json<{ backupId: string }>().backupId;
    await server.query('INSERT INTO t SELECT generate_series(21, 30)');
    await switchWalAndWaitForArchive(server);
    const again = await runPgdr(['restore-point', 'create', 'before-b', ...repoArgs], { env: server.libpqEnv() });
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/recorded already/);

    const target = join(makeTempDir('ops-named', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    const restored = await runPgdrOk(['restore', '--pgdata', target, '--target-name', 'before-b', '--start', '--port', String(port), '--archive-mode', 'off', '--json', ...repoArgs], {
      timeoutMs: 180_000,
    });
    expect(restored.json<{ backupId: string }>().backupId).not.toBe(later);
    expect(restored.stderr).toMatch(/before restore point "before-b"/);
    try {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        expect((await client.query('SELECT count(*)::int AS n FROM t')).rows[0]).toEqual({ n: 10 });
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', target, '-m', 'fast', '-w', 'stop'], { reject: false });
    }
  });

  it('`pgdr <command> --help | head` ends quietly, and --json failures are one JSON document on stdout', async () => {
    for (const command of ['backup now', 'restore', 'restore cluster', 'wal fetch']) {
      const piped = await execa('bash', ['-o', 'pipefail', '-c', `${process.execPath} ${pgdrBin} ${command} --help | head -1`], { reject: false });
      expect(piped.exitCode, command).toBe(0);
      expect(piped.stderr, command).toBe('');
    }
    const failed = await runPgdr(['restore', '--pgdata', '/tmp/never-pgdr', '--target-time', '2026-01-01 10:00:00', '--json', ...repoArgs]);
    expect(failed.exitCode).toBe(2);
    expect(failed.json()).toEqual({ error: expect.stringMatching(/has no time zone/), hint: expect.any(String), exitCode: 2 });
    const unknown = await runPgdr(['backup', 'lsit', '--json']);
    expect(unknown.json()).toEqual({ error: expect.stringMatching(/unknown command 'lsit'/), hint: expect.any(String), exitCode: 2 });
  });

  describe('an S3 endpoint whose certificate this machine does not trust', () => {
    let minio: MinioServer;
    beforeAll(async () => {
      minio = await startMinio({ tls: true });
    });

    it('fails with exit 3 naming NODE_EXTRA_CA_CERTS, and works once the CA is given there', async () => {
      const args = ['backup', 'list', '--repo', `s3://${minio.bucket}/tls`, '--cluster', 'tls'];
      const refused = await runPgdr(args, { env: minio.env() });
      expect(refused.exitCode).toBe(3);
      expect(refused.stderr).toMatch(/TLS to the S3 endpoint https:\/\/127\.0\.0\.1:\d+ failed: its certificate is not signed by a CA this machine trusts/);
      expect(refused.stderr).toMatch(/hint: .*NODE_EXTRA_CA_CERTS/);
      // The CA file must be readable by the user pgdr runs as (postgres), like every file in its environment.
      const ca = join(makeTempDir('ops-ca', { owner: 'service' }), 'ca.pem');
      writeFileSync(ca, readFileSync(minio.caFile!));
      chownToServiceUser(ca);
      const trusted = await runPgdr(args, { env: { ...minio.env(), NODE_EXTRA_CA_CERTS: ca } });
      expect(trusted.stderr).toBe('');
      expect(trusted.exitCode).toBe(0);
    });
  });
});

