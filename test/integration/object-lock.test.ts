import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectLockConfigurationCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { makeTempDir } from '../harness/temp.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ExpireReport } from '../../src/retention/expire.js';
import { createS3Store } from '../../src/storage/s3-store.js';

/**
 * Issue 9, point 3: a repository in a MinIO bucket with Object Lock. pgdr writes backups, WAL and manifests under
 * governance retention (short dates: the policy keeps nothing past a second, the margin is MARGIN_SECONDS), leaves
 * lock objects and state unlocked, and: expire leaves a retained backup (and its WAL) alone and says until when; a
 * plain S3 delete of that object version with the same credentials is refused; PITR still restores exact rows;
 * once the date has passed, expire removes the backup with every version of its objects.
 */
const MARGIN_SECONDS = 45;
const PREFIX = 'locked';

describe('S3 Object Lock (MinIO bucket with Object Lock)', () => {
  let minio: MinioServer;
  let server: PostgresServer;
  let s3: S3Client;
  let lockedBucket = '';
  let env: Record<string, string> = {};
  const layout = new RepositoryLayout('ol');

  const repoArgs = () => ['--repo', `s3://${lockedBucket}/${PREFIX}`, '--cluster', 'ol'];
  const pgdr = (args: string[], extraEnv: Record<string, string> = {}) =>
    runPgdr([...args, ...repoArgs(), '--no-progress'], { env: { ...env, ...server.libpqEnv(), ...extraEnv }, timeoutMs: 180_000 });
  const pgdrOk = (args: string[]) => runPgdrOk([...args, ...repoArgs(), '--no-progress'], { env: { ...env, ...server.libpqEnv() }, timeoutMs: 180_000 });
  const head = (key: string) => s3.send(new HeadObjectCommand({ Bucket: lockedBucket, Key: `${PREFIX}/${key}` }));

  beforeAll(async () => {
    minio = await startMinio();
    lockedBucket = `${minio.bucket}-lock`;
    // The driver test below reaches MinIO from this process, through the SDK's credential chain.
    Object.assign(process.env, minio.env());
    await minio.createBucket(lockedBucket, { objectLock: true });
    s3 = new S3Client({
      endpoint: minio.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    });
    const policyDir = makeTempDir('object-lock-policy', { owner: 'service' });
    const policy = join(policyDir, 'policy.yaml');
    // Nothing is kept by a tier; the window is a second: the older of two backups is the policy's to delete at once.
    writeFileSync(
      policy,
      'retention:\n  backups: { daily: 0, weekly: 0, monthly: 0, yearly: 0 }\n  pitrWindow: 1s\n  etcdSnapshots: { daily: 0, weekly: 0, monthly: 0, yearly: 0 }\n',
      { mode: 0o644 },
    );
    env = {
      ...minio.env(),
      PGDR_ENGINE: 'basebackup',
      PGDR_POLICY: policy,
      PGDR_OBJECT_LOCK_MODE: 'governance',
      PGDR_OBJECT_LOCK_MARGIN: `${MARGIN_SECONDS}s`,
      // What B2 and R2 need: no SDK CRC32 checksums, so Object Lock uploads go with Content-MD5.
      PGDR_S3_REQUEST_CHECKSUMS: 'when_required',
    };
    server = await startPostgres({
      name: 'object-lock',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs()]),
      env,
    });
    await server.query('CREATE TABLE events (id int PRIMARY KEY)');
  });

  afterAll(async () => {
    s3?.destroy();
    await stopAll();
  });

  it('repo probe reports the bucket\'s Object Lock, and refuses Object Lock settings on a bucket without it', async () => {
    const probe = (await pgdrOk(['repo', 'probe', '--json'])).json<{ objectLock: { enabled: boolean; defaultRetention: unknown; pgdr: string } }>();
    expect(probe.objectLock).toMatchObject({ enabled: true, defaultRetention: null, pgdr: 'governance' });

    const plain = await runPgdr(['repo', 'probe', '--repo', `s3://${minio.bucket}/plain`, '--cluster', 'ol', '--json'], { env: { ...env } });
    expect(plain.exitCode).toBe(2);
    expect(plain.stderr).toMatch(/has no Object Lock/);
    expect(plain.stderr).toMatch(/hint: .*Object Lock enabled/);
    // A write with retention into that bucket is refused with the same advice (exit 2), not a raw S3 error.
    const backup = await runPgdr(['backup', 'now', '--repo', `s3://${minio.bucket}/plain`, '--cluster', 'ol', '--no-progress'], { env: { ...env, ...server.libpqEnv() } });
    expect(backup.exitCode).toBe(2);
    expect(backup.stderr).toMatch(/has no Object Lock, but pgdr is set to write with retention/);
  });

  it('refuses a bucket with a default retention, which would lock pgdr\'s lock objects too', async () => {
    const bucket = `${minio.bucket}-dflt`;
    await minio.createBucket(bucket, { objectLock: true });
    await s3.send(
      new PutObjectLockConfigurationCommand({
        Bucket: bucket,
        ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } },
      }),
    );
    const probe = await runPgdr(['repo', 'probe', '--repo', `s3://${bucket}/x`, '--cluster', 'ol'], { env: { ...env } });
    expect(probe.exitCode).toBe(2);
    expect(probe.stderr).toMatch(/has a default Object Lock retention \(governance, 1 day\)/);
    expect(probe.stderr).toMatch(/hint: remove the default retention/);
  });

  let first = '';
  let second = '';
  let target = '';
  let expected: number[] = [];

  it('writes backups, manifests, WAL and cluster.json under retention; locks and state stay unlocked', async () => {
    first = (await pgdrOk(['backup', 'now', '--json'])).json<{ backupId: string }>().backupId;
    const firstWritten = Date.now();
    await server.query('INSERT INTO events SELECT generate_series(1, 10)');
    await sleep(1100); // backup ids have a resolution of one second
    second = (await pgdrOk(['backup', 'now', '--json'])).json<{ backupId: string }>().backupId;
    await server.query('INSERT INTO events SELECT generate_series(11, 20)');
    const [row] = await server.query<{ now: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
    target = row!.now;
    expected = Array.from({ length: 20 }, (_, i) => i + 1);
    await sleep(50);
    await server.query('INSERT INTO events SELECT generate_series(21, 30)');
    await switchWalAndWaitForArchive(server);

    const manifest = await head(layout.backupManifest(first));
    expect(manifest.ObjectLockMode).toBe('GOVERNANCE');
    const until = manifest.ObjectLockRetainUntilDate!.getTime();
    // The write-time lock: the policy's horizon (1 s) plus the margin, from when it was written.
    expect(until).toBeGreaterThan(firstWritten + (MARGIN_SECONDS - 30) * 1000);
    expect(until).toBeLessThan(firstWritten + (MARGIN_SECONDS + 5) * 1000);
    expect((await head(layout.backupObject(first, 'base.tar.zst'))).ObjectLockMode).toBe('GOVERNANCE');
    expect((await head(layout.walObject('000000010000000000000001'))).ObjectLockMode).toBe('GOVERNANCE');
    expect((await head(layout.clusterInfo())).ObjectLockMode).toBe('GOVERNANCE');
    // Mutable state is written without retention, so pgdr can rewrite and delete it.
    const probe = await head(layout.storeProbe());
    expect(probe.ObjectLockMode).toBeUndefined();
    // The backup lock was taken and released (deleted, every version) on this bucket.
    const locks = await s3.send(new ListObjectVersionsCommand({ Bucket: lockedBucket, Prefix: `${PREFIX}/${layout.locksPrefix()}` }));
    expect([...(locks.Versions ?? []), ...(locks.DeleteMarkers ?? [])]).toEqual([]);
  });

  it('a repository with objectLockMode: off beside a locked one: a backup into it (with the WAL it needs) carries no retention', async () => {
    const dir = makeTempDir('object-lock-repos', { owner: 'service' });
    const config = join(dir, 'pgdr.yaml');
    const endpoint = `s3Endpoint: ${minio.endpoint}\n    s3Region: us-east-1\n    s3ForcePathStyle: true`;
    // The global Object Lock (PGDR_OBJECT_LOCK_MODE=governance in env) applies to "locked"; "offsite" turns it off.
    writeFileSync(
      config,
      `repositories:\n  - name: locked\n    url: s3://${lockedBucket}/${PREFIX}\n    ${endpoint}\n    receives: [wal, backups]\n` +
        `  - name: offsite\n    url: s3://${minio.bucket}/offsite\n    ${endpoint}\n    objectLockMode: "off"\n    receives: [backups]\n`,
      { mode: 0o644 },
    );
    const result = await runPgdr(['backup', 'now', '--repo', 'offsite', '--config', config, '--cluster', 'ol', '--no-progress', '--json'], {
      env: { ...env, ...server.libpqEnv() },
      timeoutMs: 180_000,
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const { backupId } = result.json<{ backupId: string }>();
    const offsite = (key: string) => s3.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: `offsite/${key}` }));
    expect((await offsite(layout.backupManifest(backupId))).ObjectLockMode).toBeUndefined();
    expect((await offsite(layout.backupObject(backupId, 'base.tar.zst'))).ObjectLockMode).toBeUndefined();
    expect(result.stderr).toMatch(/copied \d+ WAL file\(s\) it needs from repository locked/);
  });

  it('a plain S3 delete of a retained object version, with the same credentials, is refused', async () => {
    const key = `${PREFIX}/${layout.backupManifest(first)}`;
    const { VersionId } = await s3.send(new HeadObjectCommand({ Bucket: lockedBucket, Key: key }));
    expect(VersionId).toBeTruthy();
    await expect(s3.send(new DeleteObjectCommand({ Bucket: lockedBucket, Key: key, VersionId }))).rejects.toThrow(/WORM|retention|Access Denied/i);
    expect((await head(layout.backupManifest(first))).VersionId).toBe(VersionId);
  });

  it('expire leaves the retained backup and its WAL alone, says when they become deletable, and extends what it keeps', async () => {
    const before = (await head(layout.backupManifest(second))).ObjectLockRetainUntilDate!.getTime();
    // The PITR window is 1 s: until the second backup ended that long ago, a restore to the window's start needs the first.
    await sleep(1500);
    const result = await pgdr(['expire', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<ExpireReport>();
    const verdict = report.backups.find((b) => b.backupId === first)!;
    expect(verdict.verdict, JSON.stringify(verdict)).toBe('delete');
    expect(Date.parse(verdict.retainedUntil!)).toBe((await head(layout.backupManifest(first))).ObjectLockRetainUntilDate!.getTime());
    expect(report.deleted.backups).toBe(0);
    expect(report.walRetained?.files).toBeGreaterThan(0);
    expect(report.deleted.walFiles).toBe(0);
    // The newest backup stays while it is the newest: its lock moves along with the clock (here: 1 s + the margin).
    expect(report.objectLock?.bucket).toBe(true);
    const extended = report.objectLock!.extended.find((e) => e.backupId === second)!;
    expect(extended.objects).toBeGreaterThanOrEqual(2);
    const after = (await head(layout.backupManifest(second))).ObjectLockRetainUntilDate!.getTime();
    expect(after).toBeGreaterThan(before);
    expect(after).toBe(Date.parse(extended.retainUntil));
    expect((await head(layout.backupObject(second, 'base.tar.zst'))).ObjectLockRetainUntilDate!.getTime()).toBe(after);

    const text = await pgdr(['expire', '--dry-run']);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`${first} .*delete: retained \\(Object Lock\\) until \\S+, deletable then`));
    expect(text.stdout).toMatch(/WAL files? (is|are) under Object Lock retention and left alone: deletable from \S+, all of them from \S+/);
    const list = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
    expect(list.map((b) => [b.backupId, b.status])).toEqual([[first, 'complete'], [second, 'complete']]);
  });

  it('verify reports the retain-until dates of each backup and of the WAL', async () => {
    const result = await pgdr(['verify', '--quick', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<{ retention: { backups: { backupId: string; objects: number; short: number; earliest: string; latest: string }[]; wal: { objects: number; short: number } } }>();
    expect(report.retention.backups.map((b) => b.backupId)).toEqual([first, second]);
    for (const b of report.retention.backups) {
      expect(b.short).toBe(0);
      expect(b.earliest <= b.latest).toBe(true);
    }
    expect(report.retention.wal.objects).toBeGreaterThan(0);
    expect(report.retention.wal.short).toBe(0);
  });

  it('PITR from the locked repository restores exactly the rows committed before the target', async () => {
    const dir = makeTempDir('object-lock-restore', { owner: 'service' });
    const pgdata = join(dir, 'pgdata');
    const port = await freePort();
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'immediate', 'stop']).catch(() => undefined);
    });
    try {
      await pgdrOk(['restore', '--pgdata', pgdata, '--target-time', target, '--start', '--port', String(port), '--archive-mode', 'off']);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ id: number }>('SELECT id FROM events ORDER BY id');
        expect(rows.map((r) => r.id)).toEqual(expected);
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      unregister();
    }
  });

  it('once the retention has passed, expire deletes the backup with every version of its objects', async () => {
    const until = (await head(layout.backupManifest(first))).ObjectLockRetainUntilDate!.getTime();
    await sleep(Math.max(0, until - Date.now() + 1500));
    const report = (await pgdrOk(['expire', '--json'])).json<ExpireReport>();
    expect(report.backups.find((b) => b.backupId === first)).toMatchObject({ verdict: 'delete', retainedUntil: null });
    expect(report.deleted.backups).toBe(1);
    expect(report.deleted.walFiles).toBeGreaterThan(0);
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: lockedBucket, Prefix: `${PREFIX}/${layout.backupPrefix(first)}` }));
    expect([...(versions.Versions ?? []), ...(versions.DeleteMarkers ?? [])]).toEqual([]);
    const list = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string }[]>();
    expect(list.map((b) => b.backupId)).toEqual([second]);
  });

  it('the S3 driver puts files, buffers and multipart streams with retention, in either checksum mode', async () => {
    for (const requestChecksums of ['when_required', 'when_supported'] as const) {
      const store = createS3Store({
        bucket: lockedBucket,
        prefix: `driver-${requestChecksums}`,
        endpoint: minio.endpoint,
        forcePathStyle: true,
        partSizeBytes: 5 * 1024 * 1024,
        requestChecksums,
        objectLock: true,
      });
      try {
        const retention = { mode: 'governance' as const, retainUntil: new Date(Date.now() + 60_000) };
        const data = Buffer.alloc(11 * 1024 * 1024, 7);
        const file = join(makeTempDir('object-lock-file'), 'body');
        writeFileSync(file, data.subarray(0, 1000));
        await store.put('buffer', { kind: 'buffer', data: data.subarray(0, 1000) }, { retention });
        await store.put('file', { kind: 'file', path: file }, { retention });
        await store.put('stream', { kind: 'stream', open: () => Readable.from([data]), oneShot: true }, { retention });
        for (const key of ['buffer', 'file', 'stream']) {
          const info = await store.head(key);
          expect(info?.retention?.mode, `${requestChecksums} ${key}`).toBe('governance');
          expect(Math.abs(info!.retention!.retainUntil.getTime() - retention.retainUntil.getTime())).toBeLessThan(1000);
        }
        expect((await store.head('stream'))?.size).toBe(data.length);
        // Retention can be extended; a delete of a retained object is refused in pgdr's words.
        const later = new Date(retention.retainUntil.getTime() + 60_000);
        await store.extendRetention!('buffer', { mode: 'governance', retainUntil: later });
        expect(Math.abs((await store.head('buffer'))!.retention!.retainUntil.getTime() - later.getTime())).toBeLessThan(1000);
        await expect(store.delete(['file'])).rejects.toThrow(/under Object Lock retention/);
        expect(await store.head('file')).not.toBeNull();
      } finally {
        await store.close();
      }
    }
  });
});
