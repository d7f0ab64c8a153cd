import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk, pgdrEnvironment } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { descendantPids, runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgdrBin } from '../harness/preflight.js';
import { makeTempDir } from '../harness/temp.js';
import pg from 'pg';
import { openStore } from '../../src/storage/open-store.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { largestDataObject } from '../harness/backups.js';

/**
 * Issue 2's acceptance, run once against the embedded default (a local directory) and once against MinIO:
 * backup, PITR by time / LSN / restore point / latest, WAL push conflicts, an interrupted backup, a damaged object,
 * and (MinIO) the object store going away mid-backup.
 */
type RepoKind = 'fs' | 's3';

interface Rows {
  ids: number[];
}

function coreEngineSuite(kind: RepoKind): void {
  describe(`core engine on a ${kind === 'fs' ? 'local directory' : 'MinIO (S3)'} repository`, () => {
    let minio: MinioServer | undefined;
    let repoArgs: string[] = [];
    let storeEnv: Record<string, string> = {};
    let server: PostgresServer;
    let store: ObjectStore;
    let repoDir = '';
    const layout = new RepositoryLayout('core');

    const pgdr = (args: string[], timeoutMs = 180_000) =>
      runPgdr([...args, ...repoArgs, '--cluster', 'core', '--no-progress'], { env: { ...storeEnv, ...server.libpqEnv() }, timeoutMs });
    const pgdrOk = (args: string[]) => runPgdrOk([...args, ...repoArgs, '--cluster', 'core', '--no-progress'], { env: { ...storeEnv, ...server.libpqEnv() }, timeoutMs: 180_000 });

    beforeAll(async () => {
      if (kind === 's3') {
        minio = await startMinio();
        // The CronJob's way: the remote engine into S3. The local-directory suite runs the files engine (auto).
        storeEnv = { ...minio.env(), PGDR_ENGINE: 'basebackup' };
        repoArgs = ['--repo', `s3://${minio.bucket}/pgdr-tests`];
        // The test process reads the repository directly too (to damage objects), through the same driver.
        Object.assign(process.env, storeEnv);
        store = openStore(`s3://${minio.bucket}/pgdr-tests`, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
      } else {
        const dir = makeTempDir('repo', { owner: 'service' });
        repoDir = dir;
        repoArgs = ['--repo', `file://${dir}`];
        store = openStore(`file://${dir}`, {});
      }
      server = await startPostgres({
        name: `core-${kind}`,
        archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs, '--cluster', 'core']),
        env: storeEnv,
      });
      await server.query('CREATE TABLE events (id int PRIMARY KEY, note text, at timestamptz NOT NULL DEFAULT clock_timestamp())');
    });

    afterAll(async () => {
      await store?.close();
      await stopAll();
    });

    async function insert(id: number): Promise<string> {
      await server.query('INSERT INTO events (id, note) VALUES ($1, $2)', [id, `row ${id}`]);
      const [row] = await server.query<{ now: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
      return row!.now;
    }


    /** Rewrites an object in place, as bit rot would: same owner and mode on disk, same key in the bucket. */
    async function overwriteObject(key: string, data: Buffer): Promise<void> {
      if (kind === 'fs') writeFileSync(join(repoDir, ...key.split('/')), data);
      else await store.put(key, { kind: 'buffer', data });
    }

    /** Restores with `pgdr restore ... --start`, returns the ids in the restored table, and stops the copy. */
    async function restoreAndRead(targetArgs: string[]): Promise<Rows & { json: Record<string, unknown> }> {
      const dir = makeTempDir(`restore-${kind}`, { owner: 'service' });
      const pgdata = join(dir, 'pgdata');
      const port = await freePort();
      const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
        await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'immediate', 'stop']).catch(() => undefined);
      });
      try {
        const result = await pgdrOk(['restore', '--pgdata', pgdata, ...targetArgs, '--start', '--port', String(port), '--archive-mode', 'off', '--json']);
        const json = result.json<Record<string, unknown>>();
        const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
        await client.connect();
        try {
          const { rows } = await client.query<{ id: number }>('SELECT id FROM events ORDER BY id');
          return { ids: rows.map((r) => r.id), json };
        } finally {
          await client.end();
        }
      } finally {
        await runAsPostgres('/usr/lib/postgresql/15/bin/pg_ctl', ['-D', pgdata, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
        unregister();
      }
    }

    it('takes a backup and restores exactly the rows committed before the middle of three known times', async () => {
      const backup = await pgdrOk(['backup', 'now', '--json']);
      const manifest = backup.json<Record<string, unknown>>();
      expect(manifest.backupId).toMatch(/^\d{8}T\d{6}Z$/);
      expect(manifest.timeline).toBe(1);
      expect(manifest.startLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(Number(manifest.storedBytes)).toBeGreaterThan(0);
      expect(Number(manifest.storedBytes)).toBeLessThan(Number(manifest.bytes));
      expect(manifest.source).toBe(`127.0.0.1:${server.port}`);

      await sleep(1100);
      await insert(1);
      await sleep(1100);
      const middle = await insert(2);
      await sleep(1100);
      await insert(3);
      await switchWalAndWaitForArchive(server);

      const restored = await restoreAndRead(['--target-time', middle]);
      expect(restored.ids).toEqual([1, 2]);
      expect(restored.json.backupId).toBe(manifest.backupId);
      expect(restored.json.pgdata).toMatch(/pgdata$/);
    });

    it('restores to a target LSN and to a named restore point', async () => {
      await insert(10);
      const [{ lsn }] = (await server.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
      await insert(11);
      await server.query(`SELECT pg_create_restore_point('before-13')`);
      await insert(13);
      await switchWalAndWaitForArchive(server);

      expect((await restoreAndRead(['--target-lsn', lsn])).ids).toEqual([1, 2, 3, 10]);
      expect((await restoreAndRead(['--target-name', 'before-13'])).ids).toEqual([1, 2, 3, 10, 11]);
    });

    it('restores everything with --target latest after several WAL switches', async () => {
      for (const id of [20, 21, 22]) {
        await insert(id);
        await server.query('SELECT pg_switch_wal()');
      }
      await insert(23);
      await switchWalAndWaitForArchive(server);
      expect((await restoreAndRead(['--target', 'latest'])).ids).toEqual([1, 2, 3, 10, 11, 13, 20, 21, 22, 23]);
    });

    it('refuses a target time without a zone and a target before the oldest backup', async () => {
      const noZone = await pgdr(['restore', '--pgdata', '/tmp/never-used-pgdr', '--target-time', '2026-01-01 10:00:00']);
      expect(noZone.exitCode).toBe(2);
      expect(noZone.stderr).toMatch(/has no time zone/);
      expect(noZone.stderr).toMatch(/hint:/);
      const tooOld = await pgdr(['restore', '--pgdata', '/tmp/never-used-pgdr', '--target-time', '2001-01-01T00:00:00Z']);
      expect(tooOld.exitCode).toBe(2);
      expect(tooOld.stderr).toMatch(/before/);
      expect(existsSync('/tmp/never-used-pgdr')).toBe(false);
    });

    it('accepts an identical WAL re-push and refuses a changed segment under an existing name, leaving it unchanged', async () => {
      await insert(30);
      const [{ last }] = (await server.query<{ last: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS last')) as [{ last: string }];
      await switchWalAndWaitForArchive(server);
      const work = makeTempDir(`walpush-${kind}`, { owner: 'service' });
      const copy = join(work, last);
      await pgdrOk(['wal', 'fetch', last, copy]);
      const original = readFileSync(copy);
      expect(original.length).toBe(16 * 1024 * 1024);
      const storedBefore = await store.getBuffer(layout.walObject(last));

      const again = await pgdr(['wal', 'push', copy]);
      expect(again.exitCode).toBe(0);

      const changed = Buffer.from(original);
      changed[8192 + 100] = (changed[8192 + 100]! ^ 0xff) & 0xff;
      writeFileSync(copy, changed);
      const conflict = await pgdr(['wal', 'push', copy]);
      expect(conflict.exitCode).toBe(3);
      expect(conflict.stderr).toMatch(/different content; nothing was overwritten/);
      expect(conflict.stderr).toMatch(/hint:/);
      expect((await store.getBuffer(layout.walObject(last))).equals(storedBefore)).toBe(true);

      const fetchedAfter = join(work, 'after');
      await pgdrOk(['wal', 'fetch', last, fetchedAfter]);
      expect(readFileSync(fetchedAfter).equals(original)).toBe(true);

      const missing = await pgdr(['wal', 'fetch', '0000000100000000000000FE', join(work, 'nope')]);
      expect(missing.exitCode).toBe(1);
    });

    it('leaves no complete backup behind when a backup is killed, and the next backup still works', async () => {
      const before = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      // --max-rate keeps the backup running long enough to kill it in the middle of the stream.
      const env = pgdrEnvironment({ ...storeEnv, ...server.libpqEnv() });
      const child = runAsPostgres(process.execPath, [pgdrBin, 'backup', 'now', '--max-rate', '512k', ...repoArgs, '--cluster', 'core', '--no-progress'], {
        env,
        extendEnv: false,
        reject: false,
        cwd: env.HOME,
      });
      await waitFor(async () => (await store.head(layout.lock('backup'))) !== null, 30_000, 'the backup lock');
      await sleep(1500);
      const nodePid = descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('backup'));
      expect(nodePid).toBeDefined();
      process.kill(nodePid!, 'SIGKILL');
      await child;

      const after = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      const completeBefore = before.filter((b) => b.status === 'complete').map((b) => b.backupId);
      expect(after.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual(completeBefore);

      const next = await pgdrOk(['backup', 'now', '--json']);
      const nextId = next.json<{ backupId: string }>().backupId;
      const final = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      expect(final.find((b) => b.backupId === nextId)?.status).toBe('complete');
    });

    it("stops zstd and the server's backup with it when pgdr gets SIGTERM (a CronJob deadline)", async () => {
      const env = pgdrEnvironment({ ...storeEnv, ...server.libpqEnv() });
      const child = runAsPostgres(process.execPath, [pgdrBin, 'backup', 'now', '--max-rate', '512k', '--lock-wait', '60', ...repoArgs, '--cluster', 'core', '--no-progress'], {
        env,
        extendEnv: false,
        reject: false,
        cwd: env.HOME,
      });
      const cmdline = (pid: number) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          return '';
        }
      };
      // The server's side of a backup: a walsender running BASE_BACKUP, or the session that called pg_backup_start.
      const walsenders = async () =>
        Number(
          (
            await server.query<{ n: string }>(
              "SELECT count(*)::text AS n FROM pg_stat_activity WHERE (backend_type = 'walsender' AND query LIKE 'BASE_BACKUP%') OR query LIKE '%pg_backup_start%' AND pid <> pg_backend_pid()",
            )
          )[0]!.n,
        );
      await waitFor(async () => descendantPids(child.pid!).some((pid) => cmdline(pid).startsWith('zstd')) && (await walsenders()) === 1, 30_000, "zstd and the server's backup");
      await sleep(1000);
      const tree = descendantPids(child.pid!);
      const nodePid = tree.find((pid) => cmdline(pid).includes('backup'))!;
      const compressors = tree.filter((pid) => cmdline(pid).startsWith('zstd'));
      process.kill(nodePid, 'SIGTERM');
      await child;
      await waitFor(async () => compressors.every((pid) => cmdline(pid) === '') && (await walsenders()) === 0, 5_000, 'zstd and the walsender to stop with pgdr');
    });

    it('names zstd as the cause when the compressor fails mid-stream', async () => {
      // A zstd that decompresses normally but abandons every compression after 1 MB (backup now compresses nothing else).
      const bin = makeTempDir('fake-zstd', { owner: 'service' });
      const fake = join(bin, 'zstd');
      writeFileSync(
        fake,
        '#!/bin/bash\ncase " $* " in *" -d "*) exec zstd "$@";; esac\nhead -c 1000000 >/dev/null; echo "zstd: simulated failure" >&2; exit 1\n',
        { mode: 0o755 },
      );
      const before = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      const failed = await runPgdr(['backup', 'now', ...repoArgs, '--cluster', 'core', '--no-progress'], {
        env: { ...storeEnv, ...server.libpqEnv(), PGDR_ZSTD_BIN: fake },
        timeoutMs: 120_000,
      });
      expect(failed.exitCode).toBe(4);
      expect(failed.stderr).toMatch(/zstd exited with code 1: zstd: simulated failure/);
      const after = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      expect(after.filter((b) => b.status === 'complete')).toEqual(before.filter((b) => b.status === 'complete'));
    });

    if (kind === 's3') {
      it('wal fetch turns a storage error into exit 126 for PostgreSQL, so recovery stops instead of promoting early', async () => {
        const dest = join(makeTempDir('fetch-error', { owner: 'service' }), 'RECOVERYXLOG');
        const unreachable = ['--repo', `s3://${minio!.bucket}/pgdr-tests`, '--cluster', 'core', '--s3-endpoint', 'http://127.0.0.1:9'];
        const plain = await runPgdr(['wal', 'fetch', '000000010000000000000002', dest, ...unreachable], { env: storeEnv });
        expect(plain.exitCode).toBe(3);
        const forRecovery = await runPgdr(['wal', 'fetch', '000000010000000000000002', dest, '--abort-recovery-on-error', ...unreachable], { env: storeEnv });
        expect(forRecovery.exitCode).toBe(126);
        expect(forRecovery.stderr).toMatch(/cannot reach the S3 endpoint/);
        const missing = await pgdr(['wal', 'fetch', '0000000100000000000000FD', dest, '--abort-recovery-on-error']);
        expect(missing.exitCode).toBe(1);
      });

      it('fails with a clear storage error, not a hang, when MinIO stops during a backup', async () => {
        const env = pgdrEnvironment({ ...storeEnv, ...server.libpqEnv() });
        const started = Date.now();
        const child = runAsPostgres(process.execPath, [pgdrBin, 'backup', 'now', '--max-rate', '1M', ...repoArgs, '--cluster', 'core', '--no-progress'], {
          env,
          extendEnv: false,
          reject: false,
          cwd: env.HOME,
          timeout: 240_000,
        });
        await waitFor(async () => (await store.head(layout.lock('backup'))) !== null, 30_000, 'the backup lock');
        await sleep(1000);
        minio!.kill();
        const result = await child;
        const seconds = (Date.now() - started) / 1000;
        expect(result.timedOut).toBe(false);
        expect(seconds).toBeLessThan(200);
        expect(result.exitCode).toBe(3);
        expect(String(result.stderr)).toMatch(/cannot reach the S3 endpoint|S3/);
        expect(String(result.stderr)).toMatch(/hint:/);
        await minio!.start();
        const list = (await pgdrOk(['backup', 'list', '--json'])).json<{ status: string }[]>();
        expect(list.every((b) => b.status === 'complete' || b.status === 'incomplete')).toBe(true);
      });
    }

    it('detects a damaged backup object by its checksum at restore and leaves nothing half-restored', async () => {
      const list = (await pgdrOk(['backup', 'list', '--json'])).json<{ backupId: string; status: string }[]>();
      const newest = list.filter((b) => b.status === 'complete').at(-1)!;
      const key = layout.backupObject(newest.backupId, largestDataObject(await store.getBuffer(layout.backupManifest(newest.backupId))));
      const original = await store.getBuffer(key);
      const damaged = Buffer.from(original);
      const at = Math.floor(damaged.length / 2);
      damaged[at] = (damaged[at]! ^ 0x5a) & 0xff;
      await overwriteObject(key, damaged);
      try {
        const dir = makeTempDir(`damaged-${kind}`, { owner: 'service' });
        const pgdata = join(dir, 'pgdata');
        const result = await pgdr(['restore', '--pgdata', pgdata, '--target', 'latest']);
        expect(result.exitCode).toBe(5);
        expect(result.stderr).toMatch(/failed its checksum/);
        expect(result.stderr).toMatch(new RegExp(newest.backupId));
        expect(result.stderr).toMatch(/hint: .*--backup-id/);
        expect(existsSync(pgdata) ? readdirSync(pgdata) : []).toEqual([]);
      } finally {
        await overwriteObject(key, original);
      }
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

coreEngineSuite('fs');
coreEngineSuite('s3');
