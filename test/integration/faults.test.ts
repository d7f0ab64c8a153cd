import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdr, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { descendantPids, runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin, pgdrBin } from '../harness/preflight.js';
import { amcheckCopy, quietPointInTime } from '../harness/restored-copy.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { largestDataObject } from '../harness/backups.js';
import { treeDigest } from '../harness/tree.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startS3FaultProxy, type S3FaultProxy } from '../harness/s3-fault-proxy.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';

/**
 * The fault suite: what pgdr survives, one `describe` per kind of fault, each against real PostgreSQL (and MinIO
 * where the fault is the store's). Read the `it` lines top to bottom for the list.
 */

interface BackupRow {
  backupId: string;
  status: string;
}

describe('restore never makes things worse', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let backupId: string;
  let work: string;
  let working: string;
  const layout = new RepositoryLayout('faults');

  const pgdr = (args: string[], env: Record<string, string> = {}) => runPgdr([...args, ...repoArgs, '--no-progress'], { env, timeoutMs: 180_000 });
  const objectPath = (id: string, name?: string) =>
    join(repo, ...layout.backupObject(id, name ?? largestDataObject(readFileSync(join(repo, ...layout.backupManifest(id).split('/'))))).split('/'));
  const pgCtl = (pgdata: string, ...args: string[]) => runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, ...args], { reject: false, timeout: 120_000 });

  beforeAll(async () => {
    repo = makeTempDir('faults-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'faults'];
    server = await startPostgres({ name: 'faults-restore', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs]) });
    await server.query('CREATE TABLE t (id int PRIMARY KEY, note text)');
    await server.query("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    backupId = (await runPgdrOk(['backup', 'now', '--json', ...repoArgs, '--no-progress'], { env: server.libpqEnv() })).json<{ backupId: string }>().backupId;
    await switchWalAndWaitForArchive(server);

    // A working data directory to restore over: a restore of that backup, recovered and stopped cleanly.
    work = makeTempDir('faults-work', { owner: 'service' });
    working = join(work, 'pgdata');
    const port = await freePort();
    await runPgdrOk(['restore', '--pgdata', working, '--target', 'latest', '--start', '--port', String(port), '--archive-mode', 'off', ...repoArgs, '--no-progress'], {
      timeoutMs: 180_000,
    });
    await pgCtl(working, '-m', 'fast', '-w', 'stop');
  });

  afterAll(async () => {
    await pgCtl(working, '-m', 'immediate', 'stop').catch(() => undefined);
    await stopAll();
  });

  it('a flipped byte in the backup fails restore --force with exit 5 and leaves the old data directory byte for byte', async () => {
    const before = treeDigest(working);
    const original = readFileSync(objectPath(backupId));
    const damaged = Buffer.from(original);
    const at = Math.floor(damaged.length / 2);
    damaged[at] = damaged[at]! ^ 0x5a;
    writeFileSync(objectPath(backupId), damaged);
    try {
      const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
      expect(result.exitCode).toBe(5);
      expect(result.stderr).toMatch(/failed its checksum/);
      expect(result.stderr).toMatch(/was left as it was/);
      expect(treeDigest(working)).toEqual(before);
      expect(readdirSync(work)).toEqual(['pgdata']);
    } finally {
      writeFileSync(objectPath(backupId), original);
    }
  });

  it('--force on a directory without PG_VERSION exits 2 and deletes nothing', async () => {
    const dir = join(makeTempDir('faults-home', { owner: 'service' }), 'home');
    mkdirSync(join(dir, 'documents'), { recursive: true });
    writeFileSync(join(dir, 'documents', 'thesis.txt'), 'years of work');
    chownToServiceUser(dir, { recursive: true });
    const before = treeDigest(dir);
    const result = await pgdr(['restore', '--pgdata', dir, '--force', '--target', 'latest']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/holds no PG_VERSION/);
    expect(result.stderr).toMatch(/nothing was deleted/);
    expect(result.stderr).toMatch(/^hint: /m);
    expect(treeDigest(dir)).toEqual(before);
  });

  it('--force while a server runs in the directory exits 2 and names its pid', async () => {
    const port = await freePort();
    const started = await pgCtl(working, '-w', '-o', `-p ${port} -c listen_addresses='' -c archive_mode=off`, '-l', join(work, 'server.log'), 'start');
    expect(started.exitCode).toBe(0);
    try {
      const before = treeDigest(join(working, 'base'));
      const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(/a PostgreSQL server \(pid \d+\) is running in it/);
      expect(treeDigest(join(working, 'base'))).toEqual(before);
    } finally {
      await pgCtl(working, '-m', 'fast', '-w', 'stop');
    }
  });

  it('a directory pgdr may not write to is exit 2, naming its owner and the user pgdr runs as', async () => {
    const locked = makeTempDir('faults-locked');
    chmodSync(locked, 0o755);
    const result = await pgdr(['restore', '--pgdata', join(locked, 'pgdata'), '--target', 'latest']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/permission denied \(.*owned by root \(uid 0\), mode 0755; pgdr runs as postgres \(uid \d+\)\)/);
    expect(readdirSync(locked)).toEqual([]);
  });

  it('a backup whose tar holds names that reach outside is exit 5 naming them, and nothing lands outside or in the target', async () => {
    const outside = makeTempDir('faults-outside', { owner: 'service' });
    const forged = makeTempDir('faults-forged', { owner: 'service' });
    const tarFile = join(forged, 'evil.tar');
    const script = [
      'import io, sys, tarfile',
      'out, outside = sys.argv[1], sys.argv[2]',
      "t = tarfile.open(out, 'w')",
      'def add(name, data=b"x", kind=tarfile.REGTYPE, link=""):',
      '    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link',
      '    if kind == tarfile.REGTYPE: ti.size = len(data); t.addfile(ti, io.BytesIO(data))',
      '    else: t.addfile(ti)',
      "add('PG_VERSION', b'15\\n')",
      "add('../escaped.txt')",
      "add(outside + '/absolute.txt')",
      "add('pg_tblspc/99', kind=tarfile.SYMTYPE, link=outside)",
      "add('pg_tblspc/99/through.txt', b'pwned')",
      't.close()',
    ].join('\n');
    await execa('python3', ['-c', script, tarFile, outside]);
    await execa('zstd', ['-q', '-3', '--check', tarFile, '-o', `${tarFile}.zst`]);
    const body = readFileSync(`${tarFile}.zst`);
    const manifest = JSON.parse(readFileSync(join(repo, ...layout.backupManifest(backupId).split('/')), 'utf8')) as Record<string, unknown>;
    const forgedId = '29991231T235959Z';
    const sha256 = (await execa('sha256sum', [`${tarFile}.zst`])).stdout.split(' ')[0];
    // A format-1 manifest (one tar for the data directory), whichever engine took the backup it is copied from.
    for (const field of ['engine', 'reference', 'chain', 'restoredBytes', 'fileCount', 'pageChecksumFailures']) delete manifest[field];
    Object.assign(manifest, {
      format: 1,
      type: 'full',
      backupId: forgedId,
      bytes: 10240,
      storedBytes: body.length,
      objects: [{ name: 'base.tar.zst', bytes: 10240, storedBytes: body.length, sha256, encoding: 'tar+zstd' }],
    });
    mkdirSync(join(repo, ...layout.backupPrefix(forgedId).split('/')), { recursive: true });
    writeFileSync(objectPath(forgedId, 'base.tar.zst'), body);
    writeFileSync(join(repo, ...layout.backupManifest(forgedId).split('/')), JSON.stringify(manifest));
    chownToServiceUser(join(repo, 'faults'), { recursive: true });

    const target = join(makeTempDir('faults-unsafe', { owner: 'service' }), 'pgdata');
    const result = await pgdr(['restore', '--pgdata', target, '--backup-id', forgedId, '--target', 'latest']);
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toMatch(/member names? that could write outside the data directory/);
    expect(result.stderr).toMatch(/\.\.\/escaped\.txt/);
    expect(result.stderr).toMatch(/absolute\.txt \(an absolute name\)/);
    expect(result.stderr).toMatch(/pg_tblspc\/99\/through\.txt \(it passes through the symlink pg_tblspc\/99\)/);
    expect(readdirSync(outside)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(join(target, '..'))).toEqual([]);
    await execa('rm', ['-rf', join(repo, ...layout.backupPrefix(forgedId).split('/'))]);
  });

  it('kill -9 during the unpack leaves the target as it was, and the next restore --force cleans up and succeeds', async () => {
    const before = treeDigest(working);
    // A zstd that waits before decompressing: long enough to kill pgdr while the staging directory exists.
    const bin = makeTempDir('faults-slow-zstd', { owner: 'service' });
    const slow = join(bin, 'zstd');
    writeFileSync(slow, '#!/bin/bash\ncase " $* " in *" -d "*) sleep 3;; esac\nexec zstd "$@"\n', { mode: 0o755 });
    const env = pgdrEnvironment({ PGDR_ZSTD_BIN: slow });
    const child = runAsPostgres(process.execPath, [pgdrBin, 'restore', '--pgdata', working, '--force', '--target', 'latest', ...repoArgs, '--no-progress'], {
      env,
      extendEnv: false,
      reject: false,
      cwd: env.HOME,
    });
    const staging = (): string[] => readdirSync(work).filter((n) => n.includes('pgdr-restore-'));
    await waitFor(() => staging().length > 0, 30_000, 'the staging directory');
    const nodePid = descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('restore'));
    process.kill(nodePid!, 'SIGKILL');
    await child;
    expect(treeDigest(working)).toEqual(before);

    const again = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toMatch(/left by an interrupted restore/);
    expect(readdirSync(work).filter((n) => n !== 'server.log')).toEqual(['pgdata']);
    expect(existsSync(join(working, 'recovery.signal'))).toBe(true);
  });

  it('restore --force replaces a stopped data directory and leaves nothing beside it', async () => {
    const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/old data directory is kept at .* until the new one is in place/);
    expect(result.stderr).toMatch(/removed the old data directory/);
    expect(readdirSync(work).filter((n) => n !== 'server.log')).toEqual(['pgdata']);
    const list = (await runPgdrOk(['backup', 'list', '--json', ...repoArgs])).json<BackupRow[]>();
    expect(list.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual([backupId]);
  });
});

describe('a store that ignores conditional writes is never trusted silently', () => {
  let minio: MinioServer;
  let proxy: S3FaultProxy;
  let etcd: EtcdCluster;
  let server: PostgresServer;
  let direct: ObjectStore;
  const layout = new RepositoryLayout('unsafe');
  const url = (): string => `s3://${minio.bucket}/faults`;
  const viaProxy = (args: string[], env: Record<string, string> = {}, timeoutMs = 180_000) =>
    runPgdr([...args, '--repo', url(), '--cluster', 'unsafe', '--no-progress'], { env: { ...proxy.env(), ...server.libpqEnv(), ...env }, timeoutMs });

  beforeAll(async () => {
    minio = await startMinio();
    proxy = await startS3FaultProxy(minio, 'ignore-conditional');
    etcd = await startEtcdCluster({ members: 1, name: 'faults-lock' });
    server = await startPostgres({
      name: 'faults-unsafe',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `s3://${minio.bucket}/faults`, '--cluster', 'unsafe']),
      env: proxy.env(),
    });
    await server.query("CREATE TABLE t AS SELECT g AS id, repeat('y', 500) AS note FROM generate_series(1, 20000) g");
    Object.assign(process.env, minio.env());
    direct = openStore(url(), { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    // The etcd a Patroni cluster keeps its state in: the leader key and its member entry, as Patroni writes them,
    // so that `backup now --etcd` finds this server as the leader there (and takes its lock in the same etcd).
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      await client.put('/service/faults/leader').value('pg1');
      await client.put('/service/faults/members/pg1').value(JSON.stringify({ conn_url: `postgres://127.0.0.1:${server.port}/postgres`, role: 'primary', state: 'running', timeline: 1 }));
    } finally {
      client.close();
    }
  });

  afterAll(async () => {
    await direct?.close();
    await stopAll();
  });

  it('probes the store and records the answer with its time; the same bucket without the faulty proxy honours them', async () => {
    const probed = (await viaProxy(['repo', 'probe', '--json'])).json<{ conditionalWrites: string; probedAt: string; location: string }>();
    expect(probed.conditionalWrites).toBe('ignored');
    expect(probed.location).toContain(proxy.endpoint);
    expect(Date.now() - Date.parse(probed.probedAt)).toBeLessThan(60_000);
    const record = JSON.parse((await direct.getBuffer(layout.storeProbe())).toString('utf8')) as { conditionalWrites: string };
    expect(record.conditionalWrites).toBe('ignored');
    const honest = await runPgdrOk(['repo', 'probe', '--json', '--repo', url(), '--cluster', 'unsafe-direct'], { env: minio.env() });
    expect(honest.json<{ conditionalWrites: string }>().conditionalWrites).toBe('honoured');
  });

  it('refuses backup now without etcd, naming the limitation and the setting that accepts the risk', async () => {
    const result = await viaProxy(['backup', 'now']);
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toMatch(/ignores conditional writes \(If-None-Match, probed /);
    expect(result.stderr).toMatch(/hint: .*--etcd.*--accept-unconditional-writes/);
    const keys: string[] = [];
    for await (const info of direct.list(layout.backupsPrefix())) keys.push(info.key);
    expect(keys).toEqual([]);
  });

  it('takes the lock in etcd instead: of two concurrent backups exactly one runs', async () => {
    const both = await Promise.all([
      viaProxy(['backup', 'now', '--json', '--max-rate', '8M'], etcd.env()),
      viaProxy(['backup', 'now', '--json', '--max-rate', '8M'], etcd.env()),
    ]);
    const codes = both.map((r) => r.exitCode).sort();
    expect(codes).toEqual([0, 3]);
    const loser = both.find((r) => r.exitCode === 3)!;
    expect(loser.stderr).toMatch(/locked in etcd .* for a base backup by/);
    expect(both.find((r) => r.exitCode === 0)!.stderr).toMatch(/taking the lock in etcd/);
    const list = (await viaProxy(['backup', 'list', '--json'])).json<BackupRow[]>();
    expect(list.filter((b) => b.status === 'complete')).toHaveLength(1);
    expect(list).toHaveLength(1);
  });

  it('a wal push of changed content under an existing name never replaces it', async () => {
    const [{ name }] = (await server.query<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
    await switchWalAndWaitForArchive(server);
    const work = makeTempDir('faults-walpush', { owner: 'service' });
    const copy = join(work, name);
    await runPgdrOk(['wal', 'fetch', name, copy, '--repo', url(), '--cluster', 'unsafe'], { env: minio.env() });
    const before = await direct.getBuffer(layout.walObject(name));
    const changed = readFileSync(copy);
    changed[8192 + 200] = changed[8192 + 200]! ^ 0xff;
    writeFileSync(copy, changed);
    const result = await viaProxy(['wal', 'push', copy]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toMatch(/already in .* with different content; nothing was overwritten/);
    expect((await direct.getBuffer(layout.walObject(name))).equals(before)).toBe(true);
  });

  it('--accept-unconditional-writes lets a lone pgdr go on without etcd, saying the lock is not exclusive', async () => {
    const result = await viaProxy(['backup', 'now', '--accept-unconditional-writes']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/WARNING: .* ignores conditional writes; the repository lock is not exclusive there/);
  });

  it('probes again once the record is older than the interval, and trusts a store that now honours them', async () => {
    proxy.mode = 'pass';
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const result = await viaProxy(['backup', 'now'], { PGDR_STORE_PROBE_INTERVAL: '1s' });
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/honours conditional writes/);
  });
});

describe('WAL archiving under write load, and a repository whose disk fills up', () => {
  let server: PostgresServer;
  let mount: string;
  let repoArgs: string[];
  let spool: string;
  const pgbench = (...args: string[]) =>
    runAsPostgres(pgBin('pgbench'), args, { env: { ...server.libpqEnv(), PGDATABASE: 'postgres' }, reject: false, timeout: 300_000 });
  const archiver = async () =>
    (await server.query<{ archived: string; failed: string; last: string | null }>('SELECT archived_count::text AS archived, failed_count::text AS failed, last_archived_wal AS last FROM pg_stat_archiver'))[0]!;

  beforeAll(async () => {
    mount = makeTempDir('faults-tmpfs');
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=400m,mode=0755', 'tmpfs', mount]);
    mkdirSync(join(mount, 'repo'));
    chownToServiceUser(join(mount, 'repo'));
    spool = makeTempDir('faults-spool', { owner: 'service' });
    repoArgs = ['--repo', `file://${mount}/repo`, '--cluster', 'load'];
    server = await startPostgres({
      name: 'faults-load',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs, '--spool-dir', spool]),
      settings: { max_wal_size: '256MB' },
    });
    const init = await pgbench('-i', '-q', '-s', '3');
    expect(init.exitCode).toBe(0);
    await runPgdrOk(['backup', 'now', ...repoArgs, '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
  });

  afterAll(async () => {
    await stopAll();
    await execa('umount', ['-l', mount]).catch(() => undefined);
  });

  it('archives every segment once under pgbench: no duplicate uploads, no markers or claims left in the spool', async () => {
    const run = await pgbench('-n', '-c', '4', '-j', '2', '-T', '25');
    expect(run.exitCode).toBe(0);
    await switchWalAndWaitForArchive(server, 180_000);
    // The pusher stops after a few idle seconds; by then it has swept what PostgreSQL no longer waits for.
    await waitFor(() => !existsSync(join(spool, 'load', 'pusher.pid')), 30_000, 'the background pusher to finish');
    const left = readdirSync(join(spool, 'load')).filter((f) => f.endsWith('.ok') || f.endsWith('.busy'));
    expect(left).toEqual([]);
    // Neither PostgreSQL's own calls (server log) nor the background pusher (its log) stored or compared a file twice.
    // A pusher starts only when PostgreSQL has files waiting behind the one it archives: there may have been none.
    expect(server.logTail(100_000).match(/already in the repository with identical content/g) ?? []).toEqual([]);
    const pusherLog = join(spool, 'load', 'pusher.log');
    expect((existsSync(pusherLog) ? readFileSync(pusherLog, 'utf8') : '').match(/identical content/g) ?? []).toEqual([]);
    expect(Number((await archiver()).failed)).toBe(0);
  });

  it('backup now --archive-wait 60 under write load waits for the archiver instead of failing early', async () => {
    const load = pgbench('-n', '-c', '4', '-j', '2', '-T', '30');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const backup = await runPgdr(['backup', 'now', '--archive-wait', '60', ...repoArgs, '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
    await load;
    expect(backup.stderr).not.toMatch(/not archiving/);
    expect(backup.exitCode).toBe(0);
  });

  it('a full repository: archiving fails with a clear error, then catches up with no gap once space returns, and PITR is row-exact', async () => {
    const used = Number((await execa('df', ['--output=used', '-B1', mount])).stdout.split('\n')[1]);
    await execa('mount', ['-o', `remount,size=${used + 6 * 1024 * 1024}`, mount]);
    const failedBefore = Number((await archiver()).failed);
    // pgbench's WAL compresses well; random text does not, so the few MiB left fill up within seconds.
    const load = pgbench('-n', '-c', '2', '-j', '2', '-T', '20');
    await server.query('CREATE TABLE filler (t text)');
    await server.query('INSERT INTO filler SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 400000)');
    expect((await load).exitCode).toBe(0);
    await waitFor(async () => Number((await archiver()).failed) > failedBefore, 60_000, 'archive_command to fail on the full disk');
    expect(server.logTail(2000)).toMatch(/the repository's file system is full/);
    const backup = await runPgdr(['backup', 'now', ...repoArgs, '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
    expect(backup.exitCode).toBe(3);
    expect(backup.stderr).toMatch(/the repository's file system is full/);
    expect(backup.stderr).not.toMatch(/unexpected error/);

    await execa('mount', ['-o', 'remount,size=2g', mount]);
    await server.query('CREATE TABLE after_full (id int)');
    await server.query('INSERT INTO after_full VALUES (42)');
    await switchWalAndWaitForArchive(server, 240_000);
    const [expected] = await server.query<{ n: string; s: string }>('SELECT count(*)::text AS n, coalesce(sum(delta), 0)::text AS s FROM pgbench_history');

    const verify = await runPgdr(['verify', '--quick', ...repoArgs], { timeoutMs: 180_000 });
    expect(verify.stdout + verify.stderr).not.toMatch(/missing-wal|segment .* missing/);
    const target = join(makeTempDir('faults-load-restore', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    await runPgdrOk(['restore', '--pgdata', target, '--target', 'latest', '--start', '--port', String(port), '--archive-mode', 'off', ...repoArgs, '--no-progress'], {
      timeoutMs: 300_000,
    });
    try {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string; s: string }>('SELECT count(*)::text AS n, coalesce(sum(delta), 0)::text AS s FROM pgbench_history');
        expect(rows[0]).toEqual(expected);
        expect((await client.query('SELECT id FROM after_full')).rows).toEqual([{ id: 42 }]);
      } finally {
        await client.end();
      }
    } finally {
      await pgCtlStop(target);
    }
  });
});

describe('kill -9 at each stage leaves the old state, or garbage that verify reports and expire removes', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let policy: string;
  let inserted = 1000;
  /** Far enough ahead that every leftover is past the garbage grace period. */
  const LATER = '2099-01-01T00:00:00Z';
  /** Arguments end with the repository and the cluster: a test names another cluster with `cluster`. */
  const withRepo = (args: string[], cluster = 'kill') => [...args, ...repoArgs, '--cluster', cluster, '--no-progress'];
  const pgdr = (args: string[], cluster?: string, env: Record<string, string> = {}) => runPgdr(withRepo(args, cluster), { env: { ...server.libpqEnv(), ...env }, timeoutMs: 180_000 });
  const pgdrOk = async (args: string[]) => {
    const result = await pgdr(args);
    if (result.exitCode !== 0) throw new Error(`pgdr ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
    return result;
  };
  const backups = async () => (await pgdrOk(['backup', 'list', '--json'])).json<BackupRow[]>();

  /** Runs pgdr with a failpoint set, waits until it stops there, and kills it with SIGKILL. */
  async function killAt(failpoint: string, args: string[], match?: string, cluster?: string): Promise<void> {
    const env = pgdrEnvironment({ ...server.libpqEnv(), PGDR_FAILPOINT: failpoint, ...(match === undefined ? {} : { PGDR_FAILPOINT_MATCH: match }) });
    const child = runAsPostgres(process.execPath, [pgdrBin, ...withRepo(args, cluster)], { env, extendEnv: false, reject: false, cwd: env.HOME, all: true });
    let output = '';
    child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output.includes(`failpoint ${failpoint} reached`), 120_000, `failpoint ${failpoint} (output so far: ${output})`);
    const node = descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgdrBin));
    process.kill(node!, 'SIGKILL');
    await child;
  }

  beforeAll(async () => {
    repo = makeTempDir('faults-kill-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`];
    server = await startPostgres({ name: 'faults-kill', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs, '--cluster', 'kill']) });
    await server.query('CREATE TABLE t (id int PRIMARY KEY)');
    await server.query('INSERT INTO t SELECT generate_series(1, 1000)');
    policy = join(makeTempDir('faults-kill-policy', { owner: 'service' }), 'policy.yaml');
    writeFileSync(policy, 'retention: { backups: { daily: 1, weekly: 0, monthly: 0 }, pitrWindow: 0d }\n');
  });

  afterAll(async () => {
    await stopAll();
  });

  it('wal push killed after writing its temp file: the retry stores the segment, verify notes the temp file, expire removes it', async () => {
    await switchWalAndWaitForArchive(server);
    const [{ name }] = (await server.query<{ name: string }>('SELECT last_archived_wal AS name FROM pg_stat_archiver')) as [{ name: string }];
    const copy = join(makeTempDir('faults-kill-wal', { owner: 'service' }), name);
    await pgdrOk(['wal', 'fetch', name, copy]);
    await killAt('fs-put:before-commit', ['wal', 'push', copy], '/wal/', 'kill-wal');
    const temps = readdirSync(join(repo, 'kill-wal', 'wal', name.slice(0, 8))).filter((f) => f.startsWith('.tmp-'));
    expect(temps).toHaveLength(1);
    expect((await pgdr(['wal', 'push', copy], 'kill-wal')).exitCode).toBe(0);
    const verify = (await pgdr(['verify', '--json'], 'kill-wal')).json<{ ok: boolean; notes: { kind: string; key: string }[] }>();
    expect(verify.ok).toBe(true);
    expect(verify.notes.filter((n) => n.kind === 'pending-write').map((n) => n.key)).toEqual([`kill-wal/wal/${name.slice(0, 8)}/${temps[0]}`]);
    const expire = (await pgdr(['expire', '--json', '--now', LATER, '--policy', policy], 'kill-wal')).json<{ garbage: { kind: string; verdict: string }[] }>();
    expect(expire.garbage).toEqual([expect.objectContaining({ kind: 'pending-write', verdict: 'delete' })]);
    expect(readdirSync(join(repo, 'kill-wal', 'wal', name.slice(0, 8))).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    const fetched = join(makeTempDir('faults-kill-wal2', { owner: 'service' }), 'seg');
    await runPgdrOk(withRepo(['wal', 'fetch', name, fetched], 'kill-wal'));
    expect(readFileSync(fetched).equals(readFileSync(copy))).toBe(true);
  });

  it('wal push to an encrypted repository killed right after the store: the retry exits 0 without an identity, a different file under the name exits 3', async () => {
    // A segment (the last archived file may be a .backup history file, which is never encrypted).
    const [{ name }] = (await server.query<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
    await switchWalAndWaitForArchive(server);
    const work = makeTempDir('faults-kill-enc', { owner: 'service' });
    const copy = join(work, name);
    await pgdrOk(['wal', 'fetch', name, copy]);
    const original = readFileSync(copy);
    const identity = join(work, 'key.txt');
    await runAsPostgres('age-keygen', ['-o', identity]);
    const recipient = (await execa('age-keygen', ['-y', identity])).stdout.trim();
    const spool = join(work, 'spool');
    // Public key only, as on a database host; the spool where the stored record lives.
    const push = ['wal', 'push', copy, '--encrypt-recipient', recipient, '--spool-dir', spool];
    await killAt('wal-push:after-store', push, name, 'kill-enc');
    const object = join(repo, 'kill-enc', 'wal', name.slice(0, 8), `${name}.zst`);
    const stored = readFileSync(object);
    expect(stored.subarray(0, 21).toString('latin1')).toBe('age-encryption.org/v1');
    expect(statSync(join(spool, 'kill-enc', `${name}.stored`)).mode & 0o777).toBe(0o600);

    // PostgreSQL's retry: no identity, and the stored bytes are the ones the killed push recorded for this file.
    const retry = await pgdr(push, 'kill-enc');
    expect(retry.exitCode, retry.stderr).toBe(0);
    expect(retry.stderr).toMatch(/with the very bytes an earlier push of this file stored/);
    expect(readFileSync(object).equals(stored)).toBe(true);

    // A different file under the same name is refused, and nothing is overwritten.
    const changed = Buffer.from(original);
    changed[8192 + 200] = changed[8192 + 200]! ^ 0xff;
    writeFileSync(copy, changed);
    const other = await pgdr(push, 'kill-enc');
    expect(other.exitCode, other.stderr).toBe(3);
    expect(other.stderr).toMatch(/already in .* with different content; nothing was overwritten/);
    // With the spool lost, pgdr cannot tell without the identity, and says how to compare; with it, it compares.
    rmSync(spool, { recursive: true, force: true });
    const lost = await pgdr(push, 'kill-enc');
    expect(lost.exitCode, lost.stderr).toBe(3);
    expect(lost.stderr).toMatch(/encrypted, and pgdr cannot tell whether it is this same file/);
    expect(lost.stderr).toMatch(/^hint: compare once with the identity: pgdr wal push .* --identity-file KEY/m);
    expect((await pgdr(push, 'kill-enc', { PGDR_IDENTITY_FILE: identity })).exitCode).toBe(3);
    writeFileSync(copy, original);
    const compared = await pgdr(push, 'kill-enc', { PGDR_IDENTITY_FILE: identity });
    expect(compared.exitCode, compared.stderr).toBe(0);
    expect(compared.stderr).toMatch(/already in the repository with identical content/);
    // That comparison recorded the stored bytes: PostgreSQL's next try, without the identity, succeeds.
    const next = await pgdr(push, 'kill-enc');
    expect(next.exitCode, next.stderr).toBe(0);
    expect(readFileSync(object).equals(stored)).toBe(true);
  });

  it('backup now killed while its data object is half written: no backup is listed, verify notes the partial object, expire removes it', async () => {
    const before = await backups();
    // One worker: the killed object is the only one in flight (the files engine writes --jobs objects at once).
    await killAt('fs-put:before-commit', ['backup', 'now', '--jobs', '1'], '/backups/');
    expect(await backups()).toEqual(before);
    const verify = (await pgdr(['verify', '--json'])).json<{ notes: { kind: string; detail: string }[] }>();
    const partial = verify.notes.filter((n) => n.kind === 'pending-write');
    expect(partial).toHaveLength(1);
    const expire = (await pgdr(['expire', '--json', '--now', LATER, '--policy', policy])).json<{ deleted: { garbage: number } }>();
    expect(expire.deleted.garbage).toBeGreaterThanOrEqual(1);
    expect((await pgdr(['verify', '--json'])).json<{ notes: { kind: string }[] }>().notes.filter((n) => n.kind === 'pending-write')).toEqual([]);
  });

  for (const stage of ['backup:before-wal-wait', 'backup:before-manifest']) {
    it(`backup now killed at ${stage}: the backup is incomplete, never complete; the next backup is complete and restores`, async () => {
      const before = (await backups()).filter((b) => b.status === 'complete');
      await killAt(stage, ['backup', 'now']);
      const after = await backups();
      expect(after.filter((b) => b.status === 'complete')).toEqual(before);
      expect(after.filter((b) => b.status === 'incomplete').length).toBeGreaterThanOrEqual(1);
      inserted += 100;
      await server.query('INSERT INTO t SELECT generate_series($1::int - 99, $1::int)', [inserted]);
      const next = (await pgdrOk(['backup', 'now', '--json'])).json<{ backupId: string }>().backupId;
      expect((await backups()).find((b) => b.backupId === next)?.status).toBe('complete');
    });
  }

  it('expire killed between a manifest and its data: the backup is incomplete, not complete; the next expire removes the rest', async () => {
    const complete = (await backups()).filter((b) => b.status === 'complete');
    expect(complete.length).toBeGreaterThanOrEqual(2);
    // The policy keeps only the newest; expire deletes the others newest first, so the kill hits the second newest.
    const doomed = complete[complete.length - 2]!.backupId;
    await killAt('expire:after-manifest-delete', ['expire', '--now', LATER, '--policy', policy]);
    const after = await backups();
    expect(after.find((b) => b.backupId === doomed)?.status).toBe('incomplete');
    const restoreList = after.filter((b) => b.status === 'complete').map((b) => b.backupId);
    expect(restoreList).not.toContain(doomed);
    // The lock of the killed expire names a pid that is gone: the next run takes it over at once.
    const again = (await pgdrOk(['expire', '--json', '--now', LATER, '--policy', policy])).json<{ garbage: { id: string; verdict: string }[] }>();
    expect(again.garbage).toEqual(expect.arrayContaining([expect.objectContaining({ id: doomed, verdict: 'delete' })]));
    expect((await backups()).find((b) => b.backupId === doomed)).toBeUndefined();
    const target = join(makeTempDir('faults-kill-restore', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    await pgdrOk(['restore', '--pgdata', target, '--target', 'latest', '--start', '--port', String(port), '--archive-mode', 'off']);
    try {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        expect((await client.query('SELECT count(*)::int AS n FROM t')).rows[0]).toEqual({ n: inserted });
      } finally {
        await client.end();
      }
    } finally {
      await pgCtlStop(target);
    }
  });

  it('restore --force killed between the two renames of its swap: the old data directory is kept whole, and the next restore says where', async () => {
    const parent = makeTempDir('faults-kill-swap', { owner: 'service' });
    const target = join(parent, 'pgdata');
    await pgdrOk(['restore', '--pgdata', target, '--target', 'latest']);
    const before = treeDigest(target);
    await killAt('restore:mid-swap', ['restore', '--pgdata', target, '--force', '--target', 'latest']);
    expect(existsSync(target)).toBe(false);
    const kept = readdirSync(parent).find((n) => n.includes('pgdr-replaced-'))!;
    expect(treeDigest(join(parent, kept))).toEqual(before);
    const refused = await pgdr(['restore', '--pgdata', target, '--target', 'latest']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(join(parent, kept));
    expect(refused.stderr).toMatch(/hint: move it back/);
    await execa('mv', [join(parent, kept), target]);
    expect(treeDigest(target)).toEqual(before);
  });

  it('the age child killed mid-stream: wal push and backup now (both engines) commit nothing, expire removes what is left, the next runs succeed', async () => {
    const work = makeTempDir('faults-dying-age', { owner: 'service' });
    // An age that encrypts the first 256 KiB it is given and then dies by SIGKILL, as a kill -9 mid-stream leaves it.
    const dying = join(work, 'age');
    writeFileSync(dying, '#!/bin/bash\ncase " $* " in *" -e "*) head -c 262144 | age "$@"; kill -9 $$;; esac\nexec age "$@"\n', { mode: 0o755 });
    chownToServiceUser(dying);
    const identity = join(work, 'key.txt');
    await runAsPostgres('age-keygen', ['-o', identity]);
    const recipient = (await execa('age-keygen', ['-y', identity])).stdout.trim();
    const dyingAge = { PGDR_AGE_BIN: dying };

    const [{ name }] = (await server.query<{ name: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
    await switchWalAndWaitForArchive(server);
    const copy = join(work, name);
    await pgdrOk(['wal', 'fetch', name, copy]);
    const push = ['wal', 'push', copy, '--encrypt-recipient', recipient, '--spool-dir', join(work, 'spool')];
    const walDir = join(repo, 'kill-age', 'wal', name.slice(0, 8));
    const failedPush = await pgdr(push, 'kill-age', dyingAge);
    expect(failedPush.exitCode).toBe(4);
    expectAgeBlamed(failedPush.stderr);
    expect(existsSync(walDir) ? readdirSync(walDir) : []).toEqual([]);
    const pushed = await pgdr(push, 'kill-age');
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    expect(readFileSync(join(walDir, `${name}.zst`)).subarray(0, 21).toString('latin1')).toBe('age-encryption.org/v1');

    const before = await backups();
    for (const engine of ['basebackup', 'files']) {
      const failed = await pgdr(['backup', 'now', '--engine', engine, '--jobs', '1', '--encrypt-recipient', recipient], undefined, dyingAge);
      expect(failed.exitCode, failed.stderr).toBe(4);
      expectAgeBlamed(failed.stderr);
      // Nothing committed: no complete backup more; at most an incomplete one (objects without a manifest).
      const after = await backups();
      expect(after.filter((b) => b.status === 'complete')).toEqual(before.filter((b) => b.status === 'complete'));
    }
    const leftovers = (await backups()).filter((b) => b.status !== 'complete');
    const verify = (await pgdr(['verify', '--json'])).json<{ ok: boolean; notes: { kind: string }[] }>();
    expect(verify.ok).toBe(true);
    // Whatever the two runs left is garbage that verify notes and expire removes: afterwards nothing is left.
    expect(verify.notes.filter((n) => n.kind === 'incomplete-backup' || n.kind === 'pending-write').length).toBeGreaterThanOrEqual(leftovers.length);
    await pgdrOk(['expire', '--json', '--now', LATER, '--policy', policy]);
    expect((await backups()).filter((b) => b.status !== 'complete')).toEqual([]);
    expect((await pgdr(['verify', '--json'])).json<{ notes: { kind: string }[] }>().notes.filter((n) => n.kind === 'incomplete-backup' || n.kind === 'pending-write')).toEqual([]);

    const next = await pgdr(['backup', 'now', '--json', '--encrypt-recipient', recipient]);
    expect(next.exitCode, next.stderr).toBe(0);
    const id = next.json<{ backupId: string }>().backupId;
    expect((await backups()).find((b) => b.backupId === id)?.status).toBe('complete');
    expect(JSON.parse(readFileSync(join(repo, 'kill', 'backups', id, 'manifest.json'), 'utf8')).encryption.recipients).toEqual([recipient]);
  });
});

describe('files engine: a backup killed mid-read, a write-back error, a delta restore killed before pg_control', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let full: string;
  const pgdr = (args: string[], env: Record<string, string> = {}) => runPgdr([...args, ...repoArgs], { env: { ...server.libpqEnv(), ...env }, timeoutMs: 180_000 });
  const pgdrOk = async (args: string[], env: Record<string, string> = {}) => {
    const result = await pgdr(args, env);
    if (result.exitCode !== 0) throw new Error(`pgdr ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
    return result;
  };
  const backupNow = async (...args: string[]) => (await pgdrOk(['backup', 'now', '--engine', 'files', '--jobs', '2', '--json', ...args])).json<{ backupId: string; reference: string | null }>();
  const backups = async () => (await pgdrOk(['backup', 'list', '--json'])).json<BackupRow[]>();
  const STATE_SQL = "SELECT count(*)::int AS n, coalesce(sum(hashtext(id::text || ':' || note)), 0)::text AS digest FROM t";
  type State = { n: number; digest: string };
  const state = async (): Promise<State> => (await server.query<State>(STATE_SQL))[0]!;

  const pointInTime = () => quietPointInTime(server);

  /** The copy's rows and pg_amcheck's verdict, read from a copy running on `port`. */
  async function readCopy(port: number): Promise<{ state: State; amcheck: number }> {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      const copy = (await client.query<State>(STATE_SQL)).rows[0]!;
      return { state: copy, amcheck: (await amcheckCopy(port)).exitCode };
    } finally {
      await client.end();
    }
  }

  /** A `sync` that notes each call and whether pg_control existed then, and fails the calls numbered in `failCalls`. */
  function syncWrapper(pgdata: string, failCalls: number[] = []): { bin: string; calls: () => string[] } {
    const tools = makeTempDir('faults-files-sync', { owner: 'service' });
    const log = join(tools, 'calls');
    const bin = join(tools, 'sync');
    writeFileSync(log, '');
    chownToServiceUser(log);
    writeFileSync(
      bin,
      [
        '#!/bin/sh',
        `echo "$* control=$(test -e '${pgdata}/global/pg_control' && echo yes || echo no)" >> '${log}'`,
        `n=$(wc -l < '${log}')`,
        ...failCalls.map((n) => `if [ "$n" -eq ${n} ]; then echo "sync: error syncing '$3': Input/output error" >&2; exit 1; fi`),
        'exec sync "$@"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    return { bin, calls: () => readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) };
  }

  beforeAll(async () => {
    repo = makeTempDir('faults-files-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'ffaults', '--no-progress'];
    server = await startPostgres({ name: 'faults-files', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'ffaults']) });
    await server.query('CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL)');
    await server.query('CREATE INDEX ON t (note)');
    await server.query("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 60000) g");
    await server.query('CHECKPOINT');
    full = (await backupNow('--type', 'full')).backupId;
  });

  afterAll(async () => {
    await stopAll();
  });

  it('backup now --engine files killed mid-read leaves nothing listed as complete, and the next incr builds on the last complete backup', async () => {
    const before = (await backups()).filter((b) => b.status === 'complete').map((b) => b.backupId);
    const [{ path }] = (await server.query<{ path: string }>("SELECT pg_relation_filepath('t') AS path")) as [{ path: string }];
    const env = pgdrEnvironment({ ...server.libpqEnv(), PGDR_FAILPOINT: 'files:after-first-chunk', PGDR_FAILPOINT_MATCH: path });
    const child = runAsPostgres(process.execPath, [pgdrBin, 'backup', 'now', '--engine', 'files', '--type', 'incr', '--jobs', '1', ...repoArgs], { env, extendEnv: false, reject: false, cwd: env.HOME, all: true });
    let output = '';
    child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output.includes('failpoint files:after-first-chunk reached'), 120_000, `the backup to reach ${path}: ${output}`);
    process.kill(descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgdrBin))!, 'SIGKILL');
    await child;
    const after = await backups();
    expect(after.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual(before);
    // What the killed backup stored is at most an incomplete backup (on a local directory, usually only .tmp files).
    expect(after.filter((b) => b.status !== 'complete' && b.status !== 'incomplete')).toEqual([]);

    // The server ended the killed session's backup; the next one starts at once and builds on the last complete one.
    await server.query("UPDATE t SET note = note || ' after kill' WHERE id % 7 = 0");
    const next = await backupNow('--type', 'incr');
    expect(next.reference).toBe(before.at(-1));
    const at = await pointInTime();
    const expected = await state();
    await server.query('DELETE FROM t WHERE id % 7 = 1');
    await switchWalAndWaitForArchive(server);
    const pgdata = join(makeTempDir('faults-files-pitr', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    await pgdrOk(['restore', '--pgdata', pgdata, '--target-time', at, '--start', '--port', String(port), '--archive-mode', 'off']);
    try {
      expect(await readCopy(port)).toEqual({ state: expected, amcheck: 0 });
    } finally {
      await pgCtlStop(pgdata);
    }
  });

  it('a write-back error reported when a restore makes its files durable (a sync that fails) fails it with exit 3, and nothing appears at the target', async () => {
    const parent = makeTempDir('faults-files-eio', { owner: 'service' });
    const pgdata = join(parent, 'pgdata');
    // The first sync is the one before the swap: what it reports must stop the copy from being put in place.
    const sync = syncWrapper(pgdata, [1]);
    const failed = await pgdr(['restore', '--pgdata', pgdata, '--backup-id', full, '--jobs', '2'], { PGDR_SYNC_BIN: sync.bin });
    expect(failed.exitCode, failed.stderr).toBe(3);
    expect(failed.stderr).toMatch(/sync --file-system.*Input\/output error/);
    expect(sync.calls().length).toBeGreaterThanOrEqual(1);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('restore --delta killed just before it writes pg_control: everything else is durable, the directory will not start, and the same restore finishes it', async () => {
    await server.query("UPDATE t SET note = note || ' current' WHERE id % 100 = 0");
    const current = await backupNow('--type', 'incr');
    const at = await pointInTime();
    const target = await state();
    // Writes the archive never sees: the primary dies with them (the copy must not keep them).
    await server.query("INSERT INTO t SELECT g, 'lost' FROM generate_series(80001, 80100) g");
    await switchWalAndWaitForArchive(server);
    await server.query("INSERT INTO t VALUES (90001, 'never archived')");
    await server.halt('immediate');
    const pgdata = server.pgdata;
    const port = await freePort();
    const deltaArgs = ['restore', '--pgdata', pgdata, '--delta', '--target-time', at, '--backup-id', current.backupId, '--jobs', '2', ...repoArgs];

    const sync = syncWrapper(pgdata);
    const killedEnv = pgdrEnvironment({ PGDR_FAILPOINT: 'restore:before-control-file', PGDR_SYNC_BIN: sync.bin });
    const killed = runAsPostgres(process.execPath, [pgdrBin, ...deltaArgs], { env: killedEnv, extendEnv: false, reject: false, cwd: killedEnv.HOME, all: true });
    let output = '';
    killed.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output.includes('failpoint restore:before-control-file reached'), 180_000, `the delta restore to reach pg_control: ${output}`);
    // Everything but pg_control is in place and was made durable first (syncfs of the directory's file system)...
    expect(existsSync(join(pgdata, 'backup_label'))).toBe(true);
    expect(existsSync(join(pgdata, 'recovery.signal'))).toBe(true);
    expect(existsSync(join(pgdata, 'global', 'pg_control'))).toBe(false);
    const syncsBefore = sync.calls();
    for (const line of syncsBefore) expect(line).toMatch(/^--file-system -- \S+ control=no$/);
    // At least once when the old pg_control is gone (before any file changes), once when all but the new one is written.
    expect(syncsBefore.filter((line) => line === `--file-system -- ${pgdata} control=no`).length).toBeGreaterThanOrEqual(2);
    process.kill(descendantPids(killed.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgdrBin))!, 'SIGKILL');
    await killed;
    // ...and without pg_control the half-restored directory cannot start.
    const refused = await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-o', `-p ${port}`, '-w', '-t', '30', '-l', join(makeTempDir('faults-files-start', { owner: 'service' }), 'start.log'), 'start'], {
      reject: false,
      timeout: 60_000,
    });
    expect(refused.exitCode).not.toBe(0);

    // The same restore again finishes the job; pg_control is written last and made durable too.
    const again = syncWrapper(pgdata);
    const result = await runPgdrOk([...deltaArgs, '--start', '--port', String(port), '--archive-mode', 'off'], { timeoutMs: 180_000, env: { PGDR_SYNC_BIN: again.bin } });
    const syncsAfter = again.calls().filter((line) => line.startsWith(`--file-system -- ${pgdata} `));
    expect(syncsAfter.at(-2)).toMatch(/control=no$/);
    expect(syncsAfter.at(-1)).toMatch(/control=yes$/);
    try {
      expect(result.stderr).toMatch(/restore --delta: \d+ of \d+ same-size files already match/);
      expect(await readCopy(port)).toEqual({ state: target, amcheck: 0 });
    } finally {
      await pgCtlStop(pgdata);
    }
  });
});

describe('a store that hangs instead of refusing: every command gives up within s3Timeout x s3Attempts, and nothing is lost', () => {
  let minio: MinioServer;
  let proxy: S3FaultProxy;
  let server: PostgresServer;
  // A hung request fails after 2 s of silence and is tried twice: the bound is about 2 x 2 s plus a short backoff.
  const timeouts = { PGDR_S3_TIMEOUT: '2s', PGDR_S3_ATTEMPTS: '2' };
  const BOUND_MS = 15_000;
  let repoArgs: string[];
  const archiver = async () =>
    (await server.query<{ failed: number; last: string | null }>('SELECT failed_count::int AS failed, last_archived_wal AS last FROM pg_stat_archiver'))[0]!;

  beforeAll(async () => {
    minio = await startMinio();
    proxy = await startS3FaultProxy(minio, 'pass');
    repoArgs = ['--repo', `s3://${minio.bucket}/hang`, '--cluster', 'hang', '--no-progress'];
    server = await startPostgres({
      name: 'faults-hang',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `s3://${minio.bucket}/hang`, '--cluster', 'hang']),
      env: { ...proxy.env(), ...timeouts },
    });
    await server.query('CREATE TABLE t (id int PRIMARY KEY)');
    await server.query('INSERT INTO t SELECT generate_series(1, 500)');
    await runPgdrOk(['backup', 'now', ...repoArgs], { env: { ...proxy.env(), ...timeouts, ...server.libpqEnv() }, timeoutMs: 180_000 });
    await switchWalAndWaitForArchive(server);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('wal push gives up with a clear error; PostgreSQL retries, and archiving catches up once the store answers', async () => {
    const before = await archiver();
    proxy.mode = 'stall';
    await server.query('INSERT INTO t SELECT generate_series(501, 600)');
    await server.query('SELECT pg_switch_wal()');
    const stalledAt = Date.now();
    await waitFor(async () => (await archiver()).failed > before.failed, 60_000, 'archive_command to give up');
    expect(Date.now() - stalledAt).toBeLessThan(BOUND_MS + 5_000);
    expect(server.logTail(200)).toMatch(/cannot reach the S3 endpoint .*TimeoutError|S3 kept failing/);
    proxy.mode = 'pass';
    await switchWalAndWaitForArchive(server, 120_000);
    const verify = await runPgdr(['verify', '--quick', ...repoArgs], { env: minio.env(), timeoutMs: 120_000 });
    expect(verify.exitCode).toBe(0);
  });

  it('backup now gives up with exit 3 naming the endpoint, within the bound', async () => {
    proxy.mode = 'stall';
    try {
      const started = Date.now();
      const result = await runPgdr(['backup', 'now', ...repoArgs], { env: { ...proxy.env(), ...timeouts, ...server.libpqEnv() }, timeoutMs: 120_000 });
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      expect(result.exitCode).toBe(3);
      expect(result.stderr).toContain(proxy.endpoint);
      expect(result.stderr).toMatch(/^hint: /m);
    } finally {
      proxy.mode = 'pass';
    }
  });

  it('restore gives up with exit 3 within the bound and leaves the target as it was', async () => {
    const parent = makeTempDir('faults-hang-restore', { owner: 'service' });
    proxy.mode = 'stall';
    try {
      const started = Date.now();
      const result = await runPgdr(['restore', '--pgdata', join(parent, 'pgdata'), '--target', 'latest', ...repoArgs], { env: { ...proxy.env(), ...timeouts }, timeoutMs: 120_000 });
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      expect(result.exitCode).toBe(3);
      expect(result.stderr).toMatch(/cannot reach the S3 endpoint|S3 kept failing/);
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      proxy.mode = 'pass';
    }
  });
});

/** The error names age's death, not the broken pipe it left zstd with, and no install hint. */
function expectAgeBlamed(stderr: string): void {
  expect(stderr).toMatch(/^pgdr: age (failed: )?was killed by SIGKILL/m);
  expect(stderr).toMatch(/^hint: age was killed by SIGKILL, which pgdr did not send/m);
  expect(stderr).not.toMatch(/SIGPIPE|install the/);
}

async function pgCtlStop(pgdata: string): Promise<void> {
  await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'fast', '-w', 'stop'], { reject: false, timeout: 120_000 });
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
