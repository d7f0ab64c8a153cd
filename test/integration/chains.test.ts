import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBackupManifest } from '../../src/repo/catalog.js';
import { parseFileList, serializeFileList } from '../../src/repo/file-list.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import { serializeManifest, type BackupManifest } from '../../src/repo/manifest.js';
import type { ExpireReport } from '../../src/retention/expire.js';
import { openStore } from '../../src/storage/open-store.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { sha256Hex } from '../../src/stream/checksum.js';
import { zstdCompressBuffer, zstdDecompressBuffer } from '../../src/stream/zstd.js';
import type { VerifyProblem } from '../../src/verify/problems.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';

/**
 * Backup chains end to end, on real PostgreSQL 15 with the files engine (pgdr reads the data directory as the postgres
 * OS user): a full, two incrs and a diff; verify checks their chains and file lists; expire keeps what a kept diff or
 * incr is restored from and says so; the diff restores from its full after the incrs are gone; a file list that names
 * a part outside its chain fails a full verify; a chain member deleted by hand makes verify exit 5 naming the chain.
 */
const CLUSTER = 'chains';
const layout = new RepositoryLayout(CLUSTER);

interface BackupJson {
  backupId: string;
  type: string;
  engine: string;
  reference: string | null;
  stopLsn: string;
  stopTime: string;
}

interface VerifyJson {
  ok: boolean;
  checked: Record<string, number>;
  problems: VerifyProblem[];
}

describe('backup chains with the files engine', () => {
  let server: PostgresServer;
  let store: ObjectStore;
  let repoDir: string;
  let policyDir: string;
  const taken: Record<'full' | 'incr1' | 'incr2' | 'diff', BackupJson> = {} as never;
  /** count(*) and sum(v) of the table right after the diff: what a restore of the diff to its stop must show. */
  let atDiff = '';

  const pgdr = (args: string[], timeoutMs = 180_000) =>
    runPgdr([...args, '--repo', `file://${repoDir}`, '--cluster', CLUSTER, '--no-progress'], { env: server.libpqEnv(), timeoutMs });
  const pgdrJson = async <T>(args: string[]): Promise<T> => {
    const result = await runPgdrOk([...args, '--json', '--repo', `file://${repoDir}`, '--cluster', CLUSTER, '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
    return result.json<T>();
  };
  const manifest = (id: string): Promise<BackupManifest> => readBackupManifest(store, layout, id);
  const repoPath = (key: string): string => join(repoDir, ...key.split('/'));

  function writePolicy(name: string, yaml: string): string {
    const file = join(policyDir, name);
    writeFileSync(file, yaml);
    chownToServiceUser(file);
    return file;
  }

  async function tableState(): Promise<string> {
    const [row] = await server.query<{ state: string }>("SELECT count(*)::text || ' rows, sum ' || sum(v)::text AS state FROM items");
    return row!.state;
  }

  async function backup(type: 'full' | 'incr' | 'diff'): Promise<BackupJson> {
    const result = await pgdrJson<BackupJson>(['backup', 'now', '--engine', 'files', '--type', type, '--jobs', '2']);
    await switchWalAndWaitForArchive(server);
    return result;
  }

  beforeAll(async () => {
    repoDir = makeTempDir('chains-repo', { owner: 'service' });
    policyDir = makeTempDir('chains-policy', { owner: 'service' });
    store = openStore(`file://${repoDir}`, {});
    server = await startPostgres({
      name: 'chains',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repoDir}`, '--cluster', CLUSTER]),
    });
    await server.query('CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)');
    await server.query("INSERT INTO items SELECT g, 0, repeat('x', 200) FROM generate_series(1, 40000) g");
    await server.query('CHECKPOINT');
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });

  it('takes a full, two incrs and a diff, each built on the backup it should be', async () => {
    taken.full = await backup('full');
    await server.query('UPDATE items SET v = v + 1 WHERE id BETWEEN 1 AND 2000');
    taken.incr1 = await backup('incr');
    await server.query('UPDATE items SET v = v + 1 WHERE id BETWEEN 10001 AND 12000');
    taken.incr2 = await backup('incr');
    await server.query('UPDATE items SET v = v + 1 WHERE id % 100 = 3'); // every page of the table: the diff holds them all
    await server.query("INSERT INTO items SELECT g, 7, 'new' FROM generate_series(40001, 41000) g");
    taken.diff = await backup('diff');
    atDiff = await tableState();

    expect(Object.values(taken).map((b) => [b.type, b.engine])).toEqual([
      ['full', 'files'],
      ['incr', 'files'],
      ['incr', 'files'],
      ['diff', 'files'],
    ]);
    expect(taken.full.reference).toBeNull();
    expect(taken.incr1.reference).toBe(taken.full.backupId);
    expect(taken.incr2.reference).toBe(taken.incr1.backupId);
    expect(taken.diff.reference).toBe(taken.full.backupId);
    expect((await manifest(taken.incr2.backupId)).chain).toEqual([taken.full.backupId, taken.incr1.backupId]);
    expect((await manifest(taken.diff.backupId)).chain).toEqual([taken.full.backupId]);
    // An incr stores what changed (a twentieth of one table's rows), not the database again.
    const full = await manifest(taken.full.backupId);
    const incr1 = await manifest(taken.incr1.backupId);
    expect(incr1.storedBytes).toBeLessThan(full.storedBytes / 4);
    expect(incr1.objects.some((o) => o.content === 'blocks')).toBe(true);

    const report = await pgdrJson<VerifyJson>(['verify']);
    expect(report.problems).toEqual([]);
    expect(report.checked.chains).toBe(3);
    expect(report.checked.fileLists).toBe(4);
    const quick = await pgdrJson<VerifyJson>(['verify', '--quick']);
    expect(quick.ok).toBe(true);
    expect(quick.checked.chains).toBe(3);
    expect(quick.checked.fileLists).toBe(0);
  });

  it('expire --dry-run keeps the full and the middle incr of a kept incr, and says which backups need them', async () => {
    // The PITR window starts exactly where incr2 stopped: incr2 is the backup a restore to that moment starts from.
    const policy = writePolicy('window.yaml', 'retention:\n  backups: { daily: 1, weekly: 0, monthly: 0 }\n  pitrWindow: 1d\n');
    const now = new Date(Date.parse(taken.incr2.stopTime) + 86_400_000).toISOString();
    const report = await pgdrJson<ExpireReport>(['expire', '--dry-run', '--policy', policy, '--now', now]);
    const { full, incr1, incr2, diff } = taken;
    expect(report.backups.map((b) => [b.backupId, b.type, b.reason])).toEqual([
      [full.backupId, 'full', `keep (needed by ${diff.backupId} (diff), ${incr2.backupId} (incr))`],
      [incr1.backupId, 'incr', `keep (needed by ${incr2.backupId} (incr))`],
      [incr2.backupId, 'incr', 'keep (PITR window)'],
      [diff.backupId, 'diff', `keep (daily ${diff.backupId.slice(0, 4)}-${diff.backupId.slice(4, 6)}-${diff.backupId.slice(6, 8)})`],
    ]);
    expect(report.backups[0]!.neededBy).toEqual([incr2.backupId, diff.backupId]);
    expect(report.walKeptFrom?.backupId).toBe(full.backupId);

    const human = await pgdr(['expire', '--dry-run', '--policy', policy, '--now', now]);
    expect(human.exitCode, human.stderr).toBe(0);
    expect(human.stdout).toContain(`${incr1.backupId}  incr  keep (needed by ${incr2.backupId} (incr))`);
  });

  it('expire with a policy that would drop the full keeps it while the diff needs it, and the diff restores from it', async () => {
    const policy = writePolicy('daily-1.yaml', 'retention:\n  backups: { daily: 1, weekly: 0, monthly: 0 }\n  pitrWindow: 0s\n');
    const now = new Date(Date.parse(taken.diff.stopTime) + 3_600_000).toISOString();
    const { full, incr1, incr2, diff } = taken;
    const dryRun = await pgdrJson<ExpireReport>(['expire', '--dry-run', '--policy', policy, '--now', now]);
    expect(dryRun.backups.map((b) => [b.backupId, b.reason])).toEqual([
      [full.backupId, `keep (needed by ${diff.backupId} (diff))`],
      [incr1.backupId, 'delete'],
      [incr2.backupId, 'delete'],
      [diff.backupId, expect.stringMatching(/^keep \(daily \d{4}-\d{2}-\d{2}\)$/)],
    ]);

    const report = await pgdrJson<ExpireReport>(['expire', '--policy', policy, '--now', now]);
    expect(report.deleted.backups).toBe(2);
    // WAL from the full's start stays: restore and verify treat the full as a complete backup like any other.
    expect(report.walKeptFrom).toEqual({ segment: (await manifest(full.backupId)).startWal, backupId: full.backupId });
    const list = await pgdrJson<{ backupId: string; status: string }[]>(['backup', 'list']);
    expect(list.map((b) => b.backupId)).toEqual([full.backupId, diff.backupId]);
    expect((await pgdrJson<VerifyJson>(['verify'])).problems).toEqual([]);

    // The diff is restored from the full and itself alone, to the moment it stopped.
    const dir = makeTempDir('chains-restore', { owner: 'service' });
    const pgdata = join(dir, 'pgdata');
    const port = await freePort();
    const pgCtl = pgBin('pg_ctl');
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await runAsPostgres(pgCtl, ['-D', pgdata, '-m', 'immediate', 'stop']).catch(() => undefined);
    });
    try {
      const restored = await pgdrJson<{ backupId: string }>([
        'restore',
        '--pgdata',
        pgdata,
        '--backup-id',
        diff.backupId,
        '--target-lsn',
        diff.stopLsn,
        '--start',
        '--port',
        String(port),
        '--archive-mode',
        'off',
      ]);
      expect(restored.backupId).toBe(diff.backupId);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ state: string }>("SELECT count(*)::text || ' rows, sum ' || sum(v)::text AS state FROM items");
        expect(rows[0]!.state).toBe(atDiff);
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres(pgCtl, ['-D', pgdata, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      unregister();
    }
  });

  it('a full verify finds a file list that names a part outside its chain; --quick does not read file lists', async () => {
    const { incr1, diff } = taken;
    const diffManifest = await manifest(diff.backupId);
    const listObject = diffManifest.objects.find((o) => o.content === 'file-list')!;
    const listKey = layout.backupObject(diff.backupId, listObject.name);
    const manifestKey = layout.backupManifest(diff.backupId);
    const originalList = readFileSync(repoPath(listKey));
    const originalManifest = readFileSync(repoPath(manifestKey));
    // The file list is rewritten consistently (its manifest entry matches), but one file now comes from incr1,
    // which is not in the diff's chain (and is gone).
    const entries = parseFileList((await zstdDecompressBuffer(originalList)).toString('utf8'), 'test');
    const victim = entries.find((e) => e.type === 'file' && e.path === 'PG_VERSION')!;
    if (victim.type !== 'file') throw new Error('PG_VERSION is not a file');
    victim.parts = [{ backup: incr1.backupId, object: victim.parts[0]!.object }];
    const tampered = await zstdCompressBuffer(serializeFileList(entries), { level: 3, threads: 1 });
    const objects = diffManifest.objects.map((o) => (o.name === listObject.name ? { ...o, storedBytes: tampered.length, sha256: sha256Hex(tampered) } : o));
    const storedBytes = objects.reduce((sum, o) => sum + o.storedBytes, 0);
    writeFileSync(repoPath(listKey), tampered);
    writeFileSync(repoPath(manifestKey), serializeManifest({ ...diffManifest, objects, storedBytes }));
    try {
      const result = await pgdr(['verify', '--json']);
      expect(result.exitCode).toBe(5);
      const problems = result.json<VerifyJson>().problems;
      expect(problems).toEqual([
        {
          kind: 'file-list-mismatch',
          key: listKey,
          detail: `backup ${diff.backupId} cannot be restored: its file list does not match its chain (1 problem): PG_VERSION part 1 is in backup ${incr1.backupId}, which is not in its chain`,
          breaks: [diff.backupId],
        },
      ]);
      const quick = await pgdr(['verify', '--quick', '--json']);
      expect(quick.exitCode, quick.stdout).toBe(0);
    } finally {
      writeFileSync(repoPath(listKey), originalList);
      writeFileSync(repoPath(manifestKey), originalManifest);
    }
    expect((await pgdr(['verify'])).exitCode).toBe(0);
  });

  it('a full deleted by hand makes verify exit 5 naming the broken chain, and expire keeps what cannot be restored', async () => {
    const { full, diff } = taken;
    rmSync(repoPath(layout.backupPrefix(full.backupId)), { recursive: true, force: true });

    for (const args of [[], ['--quick']]) {
      const result = await pgdr(['verify', ...args, '--json']);
      expect(result.exitCode).toBe(5);
      const problems = result.json<VerifyJson>().problems;
      expect(problems.filter((p) => p.kind === 'broken-chain')).toEqual([
        {
          kind: 'broken-chain',
          key: layout.backupManifest(full.backupId),
          detail: `backup ${diff.backupId} cannot be restored: it builds on backup ${full.backupId}, which is not in the repository (removed by hand, or never copied here)`,
          breaks: [diff.backupId],
        },
      ]);
    }
    const human = await pgdr(['verify']);
    expect(human.exitCode).toBe(5);
    expect(human.stdout).toContain(`broken-chain: backup ${diff.backupId} cannot be restored: it builds on backup ${full.backupId}`);
    expect(human.stderr).toMatch(/verify found \d+ problems? in .* affecting 1 backup/);

    // health does not count a backup that cannot be restored as the newest backup.
    const health = await pgdr(['health', '--check', 'backup-age', '--json']);
    const ageCheck = health.json<{ checks: { check: string; status: string; message: string }[] }>().checks[0]!;
    expect(ageCheck).toMatchObject({ check: 'backup-age', status: 'CRITICAL', message: 'no base backup in the repository can be restored: 1 build(s) on a backup that is gone' });
    expect(health.exitCode).toBe(2);

    const policy = join(policyDir, 'daily-1.yaml');
    const report = await pgdrJson<ExpireReport>(['expire', '--policy', policy, '--now', new Date(Date.parse(diff.stopTime) + 30 * 86_400_000).toISOString()]);
    expect(report.backups).toEqual([
      {
        backupId: diff.backupId,
        type: 'diff',
        verdict: 'keep',
        reason: `keep (cannot be restored: it builds on ${full.backupId}, which the repository does not hold as complete; kept until someone looks, run pgdr verify)`,
        neededBy: [],
        missingChain: [full.backupId],
        retainedUntil: null,
      },
    ]);
    expect(report.deleted.backups).toBe(0);
  });
});
