import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { takeBackup } from '../../src/backup/take-backup.js';
import { parsePolicy } from '../../src/config/policy.js';
import { serializeEtcdSnapshotManifest } from '../../src/etcd/manifest.js';
import { acquireLock } from '../../src/repo/lock.js';
import { repositoryLocker } from '../../src/repo/lock.js';
import { newBackupId, RepositoryLayout } from '../../src/repo/layout.js';
import { serializeManifest } from '../../src/repo/manifest.js';
import { runExpire, type ExpireReport } from '../../src/retention/expire.js';
import { openStore } from '../../src/storage/open-store.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { makeTempDir } from '../harness/temp.js';
import { backup as fixtureBackup, segmentName } from '../unit/retention/fixtures.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';

/**
 * Issue 4's retention acceptance, against real PostgreSQL and MinIO: twelve real base backups made over a simulated
 * five weeks (the clock is injected into takeBackup; nothing sleeps) expire to exactly the tiers the policy names;
 * PITR from the oldest kept backup still reaches a moment after the newest; expire beside a running backup (the
 * test holds the backup lock, as `pgdr backup now` does) fails without deleting anything, or waits with
 * --lock-wait. The same repository, copied into a local directory, expires the same way through the fs driver,
 * where interrupted uploads can be aged by hand to check the grace period.
 */

const CLUSTER = 'expire';
const layout = new RepositoryLayout(CLUSTER);

/** Five weeks of April and May 2024, two backups on May 14: the same history as test/unit/retention/plan.test.ts. */
const HISTORY = [
  '2024-04-10T02:00:00Z',
  '2024-04-20T02:00:00Z',
  '2024-04-28T02:00:00Z',
  '2024-05-01T02:00:00Z',
  '2024-05-05T02:00:00Z',
  '2024-05-08T02:00:00Z',
  '2024-05-12T02:00:00Z',
  '2024-05-13T02:00:00Z',
  '2024-05-14T02:00:00Z',
  '2024-05-14T14:00:00Z',
  '2024-05-15T02:00:00Z',
  '2024-05-16T02:00:00Z',
];
const NOW = '2024-05-16T12:00:00Z';
const POLICY_YAML = `retention:
  backups: { daily: 3, weekly: 2, monthly: 2, yearly: 0 }
  pitrWindow: 7d
  garbageGrace: 24h
`;

/** What the policy keeps at NOW, by the backup's start time; everything else goes. */
const EXPECTED: Record<string, string> = {
  '2024-04-28T02:00:00Z': 'keep (monthly 2024-04)',
  '2024-05-08T02:00:00Z': 'keep (PITR window)',
  '2024-05-12T02:00:00Z': 'keep (weekly 2024-W19)',
  '2024-05-14T14:00:00Z': 'keep (daily 2024-05-14)',
  '2024-05-15T02:00:00Z': 'keep (daily 2024-05-15)',
  '2024-05-16T02:00:00Z': 'keep (daily 2024-05-16, weekly 2024-W20, monthly 2024-05)',
};
/** An upload that died: objects, no manifest. */
const GARBAGE_ID = '20240515T090000Z';

/** A clock that starts at `iso` and then runs at the real clock's pace, so a backup's stop follows its start. */
function clockFrom(iso: string): () => Date {
  const base = Date.parse(iso);
  const realStart = Date.now();
  return () => new Date(base + (Date.now() - realStart));
}

async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

function walName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1).replace(/\.zst$/, '');
}

describe('pgdr expire on a month of real backups', () => {
  let minio: MinioServer;
  let server: PostgresServer;
  let store: ObjectStore;
  let repoUrl: string;
  let policyFile: string;
  /** backupId by simulated start time. */
  const ids = new Map<string, string>();
  /** The whole repository right after the backups, copied into a local directory for the fs-driver run. */
  let fsRoot: string;
  let fsStore: ObjectStore;
  let dryRun: ExpireReport;

  const cli = (args: string[], timeoutMs = 120_000) =>
    runPgdr([...args, '--repo', repoUrl, '--cluster', CLUSTER, '--no-progress'], { env: { ...minio.env(), ...server.libpqEnv() }, timeoutMs });
  const expireArgs = () => ['expire', '--policy', policyFile, '--now', NOW, '--json'];

  beforeAll(async () => {
    minio = await startMinio();
    repoUrl = `s3://${minio.bucket}/pgdr`;
    store = openStore(repoUrl, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    // The S3 driver takes credentials only from the environment (never from options), as pgdr itself does.
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey, AWS_REGION: minio.region });
    const dir = makeTempDir('expire-policy', { owner: 'service' });
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, POLICY_YAML, { mode: 0o644 });
    server = await startPostgres({
      name: 'expire',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', repoUrl, '--cluster', CLUSTER]),
      env: minio.env(),
    });
    await server.query('CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
  });

  afterAll(async () => {
    await store?.close();
    await fsStore?.close();
    await stopAll();
  });

  async function insert(id: number): Promise<string> {
    await server.query('INSERT INTO events (id) VALUES ($1)', [id]);
    const [row] = await server.query<{ now: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
    return row!.now;
  }


  it('takes twelve real backups over a simulated five weeks', async () => {
    for (const [i, start] of HISTORY.entries()) {
      await insert(i + 1);
      await server.query('SELECT pg_switch_wal()');
      const { manifest } = await takeBackup({
        store,
        layout,
        lock: repositoryLocker(store, layout),
        endpoint: { host: server.host, port: server.port, user: 'postgres' },
        compressLevel: 1,
        compressThreads: 1,
        lockWaitMs: 0,
        archiveWaitMs: 60_000,
        progress: false,
        log: () => undefined,
        now: clockFrom(start),
      });
      expect(manifest.startTime.slice(0, 16)).toBe(start.slice(0, 16));
      ids.set(start, manifest.backupId);
    }
    // An interrupted upload: data but no manifest.
    await store.put(layout.backupObject(GARBAGE_ID, 'base.tar.zst'), { kind: 'buffer', data: Buffer.from('half a backup') });

    const list = (await runPgdrOk(['backup', 'list', '--json', '--repo', repoUrl, '--cluster', CLUSTER], { env: minio.env() })).json<{ backupId: string; status: string }[]>();
    expect(list.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual([...ids.values()]);
    expect(list.find((b) => b.backupId === GARBAGE_ID)?.status).toBe('incomplete');

    // Keep the full history for the fs-driver run below.
    fsRoot = makeTempDir('expire-fs-repo');
    fsStore = openStore(`file://${fsRoot}`);
    for (const key of await listKeys(store, layout.root)) {
      await fsStore.put(key, { kind: 'buffer', data: await store.getBuffer(key) });
    }
  });

  it('--dry-run lists every backup with its verdict and the WAL it would remove, deletes nothing, and needs no lock', async () => {
    const before = await listKeys(store, layout.root);
    // A dry run only reads, so a running backup does not stop it.
    const lock = await acquireLock(store, layout, 'backup', 'a base backup (held by the test)');
    try {
      const result = await cli(['expire', '--policy', policyFile, '--now', NOW, '--dry-run', '--json']);
      expect(result.exitCode, result.stderr).toBe(0);
      dryRun = result.json<ExpireReport>();
    } finally {
      await lock.release();
    }
    expect(dryRun.dryRun).toBe(true);
    expect(dryRun.now).toBe('2024-05-16T12:00:00.000Z');
    expect(dryRun.backups).toEqual(
      HISTORY.map((start) => ({ backupId: ids.get(start), type: 'full', verdict: EXPECTED[start] ? 'keep' : 'delete', reason: EXPECTED[start] ?? 'delete', neededBy: [], missingChain: [], retainedUntil: null })),
    );
    // WAL before the oldest kept backup (the monthly one of April) goes, on timeline 1; it starts where that backup does.
    const oldestKept = ids.get('2024-04-28T02:00:00Z')!;
    expect(dryRun.walKeptFrom?.backupId).toBe(oldestKept);
    expect(dryRun.wal).toHaveLength(1);
    expect(dryRun.wal[0]).toMatchObject({ timeline: 1, to: expect.stringMatching(/^00000001/) });
    expect(dryRun.wal[0]!.to < dryRun.walKeptFrom!.segment).toBe(true);
    expect(dryRun.wal[0]!.files).toBeGreaterThanOrEqual(4);
    // The interrupted upload was written (really) after the simulated now: within the grace period.
    expect(dryRun.garbage).toEqual([expect.objectContaining({ kind: 'backup', id: GARBAGE_ID, verdict: 'keep' })]);
    expect(dryRun.deleted.objects).toBe(0);
    expect(await listKeys(store, layout.root)).toEqual(before);

    const human = await cli(['expire', '--policy', policyFile, '--now', NOW, '--dry-run']);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain(`${ids.get('2024-04-28T02:00:00Z')}  full  keep (monthly 2024-04)`);
    expect(human.stdout).toContain(`${ids.get('2024-04-10T02:00:00Z')}  full  delete`);
    expect(human.stdout).toMatch(/timeline 1: 00000001\S+ \.\. 00000001\S+ \(\d+ files\)/);
  });

  it('fails clearly and deletes nothing while a backup holds the lock', async () => {
    const before = await listKeys(store, layout.root);
    const lock = await acquireLock(store, layout, 'backup', 'a base backup');
    try {
      const result = await cli(expireArgs());
      expect(result.exitCode).toBe(3);
      expect(result.json()).toEqual({ error: expect.stringMatching(/^expire did not start, nothing was deleted/), hint: expect.any(String), exitCode: 3 });
      expect(result.stderr).toMatch(/^pgdr: expire did not start, nothing was deleted: cluster "expire" is locked for a base backup by \S+ pid \d+/m);
      expect(result.stderr).toMatch(/^hint: .*--lock-wait/m);
    } finally {
      await lock.release();
    }
    expect(await listKeys(store, layout.root)).toEqual(before);
  });

  it('waits for the lock with --lock-wait, then expires to exactly the tiers the policy names', async () => {
    const walBefore = (await listKeys(store, layout.walPrefix())).map(walName);
    const lock = await acquireLock(store, layout, 'backup', 'a base backup');
    const running = cli([...expireArgs(), '--lock-wait', '60']);
    // The "backup" finishes a moment later; expire must not have touched anything meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await listKeys(store, layout.root)).filter((k) => k.endsWith('/manifest.json'))).toHaveLength(HISTORY.length);
    await lock.release();
    const result = await running;
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<ExpireReport>();
    expect(report.dryRun).toBe(false);
    expect(report.backups).toEqual(dryRun.backups);
    expect(report.wal).toEqual(dryRun.wal);
    expect(report.deleted).toMatchObject({ backups: HISTORY.length - Object.keys(EXPECTED).length, walFiles: dryRun.wal[0]!.files, garbage: 0 });

    // Exactly the kept backups remain, complete; the deleted ones left no object behind.
    const list = (await cli(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
    const keptIds = HISTORY.filter((s) => EXPECTED[s]).map((s) => ids.get(s)!);
    expect(list.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual(keptIds);
    expect(list.filter((b) => b.status !== 'complete').map((b) => b.backupId)).toEqual([GARBAGE_ID]);
    for (const start of HISTORY.filter((s) => !EXPECTED[s])) {
      expect(await listKeys(store, layout.backupPrefix(ids.get(start)!))).toEqual([]);
    }

    // WAL: everything before the oldest kept backup's start went, everything from it on stayed.
    const keptFrom = report.walKeptFrom!.segment;
    const walAfter = (await listKeys(store, layout.walPrefix())).map(walName);
    expect(walAfter).toEqual(walBefore.filter((n) => n.slice(8, 24) >= keptFrom.slice(8)));
    expect(walBefore.length - walAfter.length).toBe(report.deleted.walFiles);

    // Expiring again at the same moment changes nothing.
    const again = await cli(expireArgs());
    expect(again.exitCode, again.stderr).toBe(0);
    const second = again.json<ExpireReport>();
    expect(second.backups.every((b) => b.verdict === 'keep')).toBe(true);
    expect(second.wal).toEqual([]);
    expect(second.deleted.objects).toBe(0);
  });

  it('PITR from the oldest kept backup still reaches a moment after the newest one', async () => {
    await insert(100);
    const target = await insert(101);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await insert(102);
    await switchWalAndWaitForArchive(server);

    const dir = makeTempDir('expire-restore', { owner: 'service' });
    const pgdata = join(dir, 'pgdata');
    const port = await freePort();
    const pgCtl = (args: string[]) => runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, ...args], { reject: false, timeout: 60_000 });
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await pgCtl(['-m', 'immediate', 'stop']);
    });
    try {
      const oldestKept = ids.get('2024-04-28T02:00:00Z')!;
      const restored = await cli(
        ['restore', '--pgdata', pgdata, '--backup-id', oldestKept, '--target-time', target, '--start', '--port', String(port), '--archive-mode', 'off', '--json'],
        300_000,
      );
      expect(restored.exitCode, restored.stderr).toBe(0);
      expect(restored.json<{ backupId: string }>().backupId).toBe(oldestKept);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ id: number }>('SELECT id FROM events ORDER BY id');
        expect(rows.map((r) => r.id)).toEqual([...HISTORY.map((_, i) => i + 1), 100, 101]);
      } finally {
        await client.end();
      }
    } finally {
      await pgCtl(['-m', 'fast', '-w', 'stop']);
      unregister();
    }
  });

  it('expires the same repository the same way through the fs driver, and removes interrupted uploads past the grace period', async () => {
    const policy = parsePolicy(POLICY_YAML, 'policy.yaml');
    // Age one interrupted upload past the 24 h grace period (as of NOW) and leave another inside it.
    const youngId = '20240516T110000Z';
    await fsStore.put(layout.backupObject(youngId, 'base.tar.zst'), { kind: 'buffer', data: Buffer.from('still streaming') });
    const setMtime = (key: string, iso: string) => utimesSync(join(fsRoot, key), new Date(iso), new Date(iso));
    setMtime(layout.backupObject(GARBAGE_ID, 'base.tar.zst'), '2024-05-15T09:05:00Z');
    setMtime(layout.backupObject(youngId, 'base.tar.zst'), '2024-05-16T11:05:00Z');

    const lines: string[] = [];
    const report = await runExpire({ store: fsStore, layout, lock: repositoryLocker(fsStore, layout), policy, dryRun: false, lockWaitMs: 0, now: new Date(NOW), log: (m) => lines.push(m) });
    expect(report.backups).toEqual(dryRun.backups);
    expect(report.wal).toEqual(dryRun.wal);
    expect(report.garbage.map((g) => [g.id, g.verdict])).toEqual([
      [GARBAGE_ID, 'delete'],
      [youngId, 'keep'],
    ]);
    expect(report.garbage[0]!.reason).toBe('delete (no manifest; last written 1d2h55m ago, past the 1d grace period)');
    expect(await listKeys(fsStore, layout.backupPrefix(GARBAGE_ID))).toEqual([]);
    expect(await listKeys(fsStore, layout.backupPrefix(youngId))).toHaveLength(1);
    const manifests = (await listKeys(fsStore, layout.backupsPrefix())).filter((k) => k.endsWith('/manifest.json'));
    expect(manifests).toEqual(HISTORY.filter((s) => EXPECTED[s]).map((s) => layout.backupManifest(ids.get(s)!)));
    expect(lines.some((l) => l.includes(`interrupted backup ${GARBAGE_ID}`))).toBe(true);
    // The lock it took is gone again.
    expect(await listKeys(fsStore, layout.locksPrefix())).toEqual([]);
  });
});

describe('pgdr expire on a local directory: commit order, damaged manifests and etcd snapshots', () => {
  let root: string;
  let fs: ObjectStore;

  beforeAll(() => {
    root = makeTempDir('expire-fs-order');
    fs = openStore(`file://${root}`);
  });
  afterAll(async () => {
    await fs?.close();
  });

  const put = (key: string, data: string | Buffer) => fs.put(key, { kind: 'buffer', data: Buffer.isBuffer(data) ? data : Buffer.from(data) });
  const age = (key: string, iso: string) => utimesSync(join(root, key), new Date(iso), new Date(iso));

  function etcdManifest(snapshotId: string, startTime: string): Buffer {
    return serializeEtcdSnapshotManifest({
      format: 1,
      snapshotId,
      cluster: CLUSTER,
      startTime,
      stopTime: startTime,
      revision: 42,
      totalKeys: 10,
      member: { name: 'etcd1', id: 'abc123', endpoint: 'http://127.0.0.1:2379' },
      etcdClusterId: 'def456',
      etcdVersion: '3.4.23',
      dbSize: 20480,
      object: 'snapshot.db.zst',
      compression: { algorithm: 'zstd', level: 3 },
      bytes: 20512,
      storedBytes: 900,
      sha256: 'a'.repeat(64),
      snapshotSha256: 'b'.repeat(64),
      databaseSha256: 'c'.repeat(64),
      pgdrVersion: '0.1.0',
    });
  }

  it('removes a manifest before its backup\'s data, so an interrupted expire leaves garbage, never a complete-looking backup', async () => {
    const backups = ['2024-05-01T02:00:00Z', '2024-05-02T02:00:00Z', '2024-05-03T02:00:00Z'].map((start, i) => ({
      ...fixtureBackup({ start, startPos: 10 + 3 * i, stopPos: 11 + 3 * i }),
      cluster: CLUSTER,
    }));
    for (const m of backups) {
      await put(layout.backupObject(m.backupId, 'base.tar.zst'), 'data');
      await put(layout.backupManifest(m.backupId), serializeManifest(m));
    }
    for (let pos = 8; pos < 20; pos++) await put(layout.walObject(segmentName(1, pos)), 'wal');
    const policy = parsePolicy('retention: { backups: { daily: 1, weekly: 0, monthly: 0 }, pitrWindow: 0d }', 'p.yaml');

    // A store that fails to delete the data of the oldest backup: the fault a crash or an outage would cause.
    const victim = backups[0]!.backupId;
    const deletes: string[] = [];
    const faulty: ObjectStore = {
      location: fs.location,
      put: (key, body, options) => fs.put(key, body, options),
      get: (key, options) => fs.get(key, options),
      getBuffer: (key) => fs.getBuffer(key),
      head: (key) => fs.head(key),
      list: (prefix, options) => fs.list(prefix, options),
      listPrefixes: (prefix) => fs.listPrefixes(prefix),
      listPendingWrites: (prefix) => fs.listPendingWrites(prefix),
      abortPendingWrite: (write) => fs.abortPendingWrite(write),
      close: () => fs.close(),
      delete: async (keys) => {
        deletes.push(...keys);
        if (keys.some((k) => k === layout.backupObject(victim, 'base.tar.zst'))) throw new Error('injected: storage went away');
        return fs.delete(keys);
      },
    };
    const now = new Date('2024-05-03T12:00:00Z');
    await expect(runExpire({ store: faulty, layout, lock: repositoryLocker(faulty, layout), policy, dryRun: false, lockWaitMs: 0, now, log: () => undefined })).rejects.toThrow(/injected/);
    expect(deletes.indexOf(layout.backupManifest(victim))).toBeLessThan(deletes.indexOf(layout.backupObject(victim, 'base.tar.zst')));
    // Newest first: a backup built on an older one (a diff or incr) never outlives what it is restored from.
    expect(deletes.indexOf(layout.backupManifest(backups[1]!.backupId))).toBeLessThan(deletes.indexOf(layout.backupManifest(victim)));
    expect(await listKeys(fs, layout.locksPrefix())).toEqual([]);

    // The half-deleted backup is now an interrupted upload, not a backup restore could choose.
    let report = await runExpire({ store: fs, layout, lock: repositoryLocker(fs, layout), policy, dryRun: true, lockWaitMs: 0, now, log: () => undefined });
    expect(report.backups.map((b) => b.backupId)).toEqual([backups[2]!.backupId]);
    expect(report.garbage).toEqual([expect.objectContaining({ kind: 'backup', id: victim })]);

    // Once past the grace period it goes as garbage.
    age(layout.backupObject(victim, 'base.tar.zst'), '2024-05-01T02:10:00Z');
    report = await runExpire({ store: fs, layout, lock: repositoryLocker(fs, layout), policy, dryRun: false, lockWaitMs: 0, now, log: () => undefined });
    expect(report.backups.map((b) => `${b.backupId} ${b.reason}`)).toEqual([`${backups[2]!.backupId} keep (daily 2024-05-03)`]);
    expect(report.garbage.map((g) => [g.id, g.verdict])).toEqual([[victim, 'delete']]);
    expect(await listKeys(fs, layout.backupsPrefix())).toEqual([layout.backupObject(backups[2]!.backupId, 'base.tar.zst'), layout.backupManifest(backups[2]!.backupId)]);
    expect((await listKeys(fs, layout.walPrefix())).map(walName)[0]).toBe(backups[2]!.startWal);
  });

  it('removes no WAL while a backup manifest does not validate, and expires etcd snapshots by their own tiers', async () => {
    const damagedId = '20240401T020000Z';
    await put(layout.backupObject(damagedId, 'base.tar.zst'), 'data');
    await put(layout.backupManifest(damagedId), '{"format": 1, "this is": "not a manifest"}');
    // The one backup the previous test left; the newer one below replaces it as "daily".
    const kept = layout.backupManifest('20240503T020000Z');
    expect(await fs.head(kept)).not.toBeNull();
    const newer = { ...fixtureBackup({ start: '2024-05-04T02:00:00Z', startPos: 30, stopPos: 31 }), cluster: CLUSTER };
    await put(layout.backupObject(newer.backupId, 'base.tar.zst'), 'data');
    await put(layout.backupManifest(newer.backupId), serializeManifest(newer));
    for (let pos = 20; pos < 32; pos++) await put(layout.walObject(segmentName(1, pos)), 'wal');

    const snapshots = ['2024-05-01T00:00:00Z', '2024-05-02T00:00:00Z', '2024-05-02T12:00:00Z', '2024-05-03T00:00:00Z'].map((t) => ({ id: newBackupId(new Date(t)), t }));
    for (const s of snapshots) {
      await put(layout.etcdSnapshotObject(s.id, 'snapshot.db.zst'), 'snapshot');
      await put(layout.etcdSnapshotManifest(s.id), etcdManifest(s.id, s.t));
    }
    const interrupted = '20240502T060000Z';
    await put(layout.etcdSnapshotObject(interrupted, 'snapshot.db.zst'), 'half');
    age(layout.etcdSnapshotObject(interrupted, 'snapshot.db.zst'), '2024-05-02T06:00:00Z');

    const policy = parsePolicy(
      'retention: { backups: { daily: 1, weekly: 0, monthly: 0 }, pitrWindow: 0d, etcdSnapshots: { daily: 2, weekly: 0, monthly: 0 } }',
      'p.yaml',
    );
    const now = new Date('2024-05-04T12:00:00Z');
    const report = await runExpire({ store: fs, layout, lock: repositoryLocker(fs, layout), policy, dryRun: false, lockWaitMs: 0, now, log: () => undefined });
    expect(report.invalid).toEqual([expect.objectContaining({ kind: 'backup', id: damagedId })]);
    expect(report.walSkipped).toMatch(/manifest of backup 20240401T020000Z does not validate/);
    expect(report.wal).toEqual([]);
    expect(report.deleted.walFiles).toBe(0);
    // The damaged backup stays; the older good one goes.
    expect(await listKeys(fs, layout.backupPrefix(damagedId))).toHaveLength(2);
    expect(await fs.head(kept)).toBeNull();
    expect(report.etcdSnapshots).toEqual([
      { snapshotId: snapshots[0]!.id, verdict: 'delete', reason: 'delete', retainedUntil: null },
      { snapshotId: snapshots[1]!.id, verdict: 'delete', reason: 'delete', retainedUntil: null },
      { snapshotId: snapshots[2]!.id, verdict: 'keep', reason: 'keep (daily 2024-05-02)', retainedUntil: null },
      { snapshotId: snapshots[3]!.id, verdict: 'keep', reason: 'keep (daily 2024-05-03)', retainedUntil: null },
    ]);
    expect(report.garbage).toEqual([expect.objectContaining({ kind: 'etcd-snapshot', id: interrupted, verdict: 'delete' })]);
    const etcdLeft = await listKeys(fs, layout.etcdPrefix());
    expect(etcdLeft).toEqual(snapshots.slice(2).flatMap((s) => [layout.etcdSnapshotManifest(s.id), layout.etcdSnapshotObject(s.id, 'snapshot.db.zst')]));

    // With the damaged manifest gone (moved away by an operator after pgdr verify), WAL expires again.
    await fs.delete([layout.backupManifest(damagedId)]);
    const after = await runExpire({ store: fs, layout, lock: repositoryLocker(fs, layout), policy, dryRun: false, lockWaitMs: 0, now, log: () => undefined });
    expect(after.walSkipped).toBeNull();
    expect(after.walKeptFrom?.segment).toBe(newer.startWal);
    expect((await listKeys(fs, layout.walPrefix())).map(walName)[0]).toBe(newer.startWal);
  });
});
