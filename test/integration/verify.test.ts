import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';

/**
 * Issue 4's verify acceptance on MinIO: a repository built with the real CLI (archive_command = pgdr wal push, two
 * `pgdr backup now`, writes and WAL switches) verifies clean, and each kind of damage is reported with what it
 * breaks: a deleted WAL segment, a flipped byte in a base backup object, a missing manifest object, a foreign object.
 * Each damage is undone before the next, so every run shows exactly one problem.
 */
interface VerifyJson {
  ok: boolean;
  checked: Record<string, number>;
  problems: { kind: string; key: string; detail: string; breaks: string[] }[];
  objects: { backupId: string; name: string; status: string }[];
}

describe('pgdr verify on a MinIO repository', () => {
  let minio: MinioServer;
  let server: PostgresServer;
  let store: ObjectStore;
  let env: Record<string, string>;
  const layout = new RepositoryLayout('verify');
  const backups: string[] = [];
  let repoArgs: string[];

  const verify = (args: string[] = []) => runPgdr(['verify', ...args, ...repoArgs], { env, timeoutMs: 120_000 });

  beforeAll(async () => {
    minio = await startMinio();
    const url = `s3://${minio.bucket}/pgdr`;
    repoArgs = ['--repo', url, '--cluster', 'verify', '--no-progress'];
    // The test reads and damages the repository directly, through the same driver pgdr uses.
    Object.assign(process.env, minio.env());
    store = openStore(url, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    server = await startPostgres({
      name: 'verify',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', url, '--cluster', 'verify']),
      env: minio.env(),
    });
    env = { ...minio.env(), ...server.libpqEnv() };
    await server.query('CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
    for (let round = 0; round < 2; round++) {
      await server.query('INSERT INTO events (id) SELECT g FROM generate_series($1::int, $1::int + 999) g', [round * 1000]);
      // The remote engine: the object names below (base.tar.zst, backup_manifest.zst) are its.
      const backup = await runPgdrOk(['backup', 'now', '--json', '--engine', 'basebackup', ...repoArgs], { env, timeoutMs: 180_000 });
      backups.push(backup.json<{ backupId: string }>().backupId);
      await switchWalAndWaitForArchive(server);
    }
    // WAL after both backups: what a missing segment keeps them from reaching.
    for (let i = 0; i < 3; i++) {
      await server.query('INSERT INTO events (id) SELECT g FROM generate_series($1::int, $1::int + 99) g', [10_000 + i * 100]);
      await switchWalAndWaitForArchive(server);
    }
    // Nothing is written after this: the repository stays as built.
    await server.stop();
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });


  async function walSegments(): Promise<string[]> {
    const names: string[] = [];
    for await (const info of store.list(layout.walPrefix())) {
      const name = info.key.slice(info.key.lastIndexOf('/') + 1, -'.zst'.length);
      if (/^[0-9A-F]{24}$/.test(name)) names.push(name);
    }
    return names.sort();
  }

  /** Damages the repository, runs verify, and puts everything back. */
  async function withDamage(damage: () => Promise<() => Promise<void>>, check: () => Promise<void>): Promise<void> {
    const undo = await damage();
    try {
      await check();
    } finally {
      await undo();
    }
  }

  it('passes on a healthy repository, with and without --quick', async () => {
    const result = await verify(['--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<VerifyJson>();
    expect(report.ok).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.checked.backups).toBe(2);
    // Each backup: base.tar.zst and PostgreSQL's backup_manifest.zst.
    expect(report.checked.backupObjects).toBe(4);
    expect(report.checked.bytesHashed).toBeGreaterThan(0);
    expect(report.checked.walSegmentsNeeded).toBeGreaterThanOrEqual(5);
    expect(report.checked.foreignObjects).toBe(0);
    expect(report.objects.map((o) => o.status)).toEqual(['ok', 'ok', 'ok', 'ok']);
    // Where the time went, for the scale bench's split between hashing and the rest.
    const timings = (report as VerifyJson & { timings: Record<string, number> }).timings;
    expect(Object.keys(timings)).toEqual(['listing', 'manifests', 'backupObjects', 'wal', 'rest', 'total']);
    for (const seconds of Object.values(timings)) expect(seconds).toBeGreaterThanOrEqual(0);
    expect(timings.total).toBeGreaterThanOrEqual(timings.backupObjects!);

    const quick = await verify(['--quick', '--json']);
    expect(quick.exitCode, quick.stderr).toBe(0);
    expect(quick.json<VerifyJson>().checked.bytesHashed).toBe(0);

    const human = await verify();
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain('verify: OK, no problems found');
  });

  it('reports a deleted WAL segment with the backups it keeps from later moments', async () => {
    const segments = await walSegments();
    // The second-newest segment: after both backups stopped, before the end of the archive.
    const victim = segments[segments.length - 2]!;
    await withDamage(
      async () => {
        const key = layout.walObject(victim);
        const saved = await store.getBuffer(key);
        await store.delete([key]);
        return async () => void (await store.put(key, { kind: 'buffer', data: saved }));
      },
      async () => {
        const result = await verify(['--json']);
        expect(result.exitCode, result.stderr).toBe(5);
        const report = result.json<VerifyJson>();
        expect(report.ok).toBe(false);
        expect(report.problems).toHaveLength(1);
        const [problem] = report.problems;
        expect(problem!.kind).toBe('missing-wal');
        expect(problem!.key).toBe(layout.walObject(victim));
        expect(problem!.breaks).toEqual([...backups].sort());
        expect(problem!.detail).toMatch(
          new RegExp(`^backups ${backups[0]} and ${backups[1]} cannot reach \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2} UTC: segment ${victim} missing$`),
        );
        expect(result.stderr).toMatch(/verify found 1 problem .*affecting 2 backups\nhint: /);

        const human = await verify();
        expect(human.exitCode).toBe(5);
        expect(human.stdout).toContain(`missing-wal: ${problem!.detail}`);
      },
    );
  });

  it('reports a flipped byte in a base backup object (and --quick, which reads no object, does not)', async () => {
    const key = layout.backupObject(backups[0]!, 'base.tar.zst');
    await withDamage(
      async () => {
        const saved = await store.getBuffer(key);
        const damaged = Buffer.from(saved);
        const at = Math.floor(damaged.length / 2);
        damaged[at] = damaged[at]! ^ 0x01;
        await store.put(key, { kind: 'buffer', data: damaged });
        return async () => void (await store.put(key, { kind: 'buffer', data: saved }));
      },
      async () => {
        const result = await verify(['--json']);
        expect(result.exitCode, result.stderr).toBe(5);
        const report = result.json<VerifyJson>();
        expect(report.problems).toEqual([
          {
            kind: 'checksum-mismatch',
            key,
            detail: expect.stringMatching(new RegExp(`^backup ${backups[0]} cannot be restored: base.tar.zst fails its checksum \\(sha256 [0-9a-f]{16}…, the manifest says [0-9a-f]{16}…\\)$`)),
            breaks: [backups[0]],
          },
        ]);
        expect(report.objects.find((o) => o.backupId === backups[0])?.status).toBe('checksum-mismatch');
        const quick = await verify(['--quick', '--json']);
        expect(quick.exitCode, quick.stderr).toBe(0);
      },
    );
  });

  it('reports an object a manifest names but the repository lost', async () => {
    const key = layout.backupObject(backups[1]!, 'base.tar.zst');
    await withDamage(
      async () => {
        const saved = await store.getBuffer(key);
        await store.delete([key]);
        return async () => void (await store.put(key, { kind: 'buffer', data: saved }));
      },
      async () => {
        const result = await verify(['--quick', '--json']);
        expect(result.exitCode, result.stderr).toBe(5);
        expect(result.json<VerifyJson>().problems).toEqual([
          { kind: 'missing-object', key, detail: `backup ${backups[1]} cannot be restored: its object base.tar.zst is missing`, breaks: [backups[1]] },
        ]);
      },
    );
  });

  it('reports objects that no manifest names', async () => {
    const strays = [`${layout.root}notes/readme.txt`, layout.backupObject(backups[0]!, 'extra.tar.zst')];
    await withDamage(
      async () => {
        for (const key of strays) await store.put(key, { kind: 'buffer', data: Buffer.from('not pgdr\n') });
        return async () => store.delete(strays);
      },
      async () => {
        const result = await verify(['--json']);
        expect(result.exitCode, result.stderr).toBe(5);
        const report = result.json<VerifyJson>();
        expect(report.checked.foreignObjects).toBe(2);
        expect(report.problems.map((p) => [p.kind, p.key, p.breaks])).toEqual(
          [...strays].sort().map((key) => ['foreign-object', key, []]),
        );
        expect(report.problems[0]!.detail).toMatch(/is named by no manifest and is not a pgdr WAL, lock or report object$/);
      },
    );
    const clean = await verify(['--quick']);
    expect(clean.exitCode, clean.stderr).toBe(0);
  });

  it('reports a manifest that does not validate, and notes (without failing) a backup that has no manifest yet', async () => {
    const manifestKey = layout.backupManifest(backups[0]!);
    const leftover = layout.backupObject('20000101T000000Z', 'base.tar.zst');
    await withDamage(
      async () => {
        const saved = await store.getBuffer(manifestKey);
        await store.put(manifestKey, { kind: 'buffer', data: Buffer.from('{"format": 1, "backupId": "truncated') });
        return async () => void (await store.put(manifestKey, { kind: 'buffer', data: saved }));
      },
      async () => {
        const result = await verify(['--quick', '--json']);
        expect(result.exitCode, result.stderr).toBe(5);
        expect(result.json<VerifyJson>().problems).toEqual([
          {
            kind: 'invalid-manifest',
            key: manifestKey,
            detail: `backup ${backups[0]} cannot be restored: manifest of backup ${backups[0]} is not valid JSON`,
            breaks: [backups[0]],
          },
        ]);
      },
    );
    await withDamage(
      async () => {
        await store.put(leftover, { kind: 'buffer', data: Buffer.from('half a backup') });
        return async () => store.delete([leftover]);
      },
      async () => {
        const result = await verify(['--quick', '--json']);
        expect(result.exitCode, result.stderr).toBe(0);
        const report = result.json<VerifyJson & { notes: { kind: string; detail: string }[] }>();
        expect(report.notes.map((n) => n.kind)).toEqual(['incomplete-backup']);
        expect(report.notes[0]!.detail).toMatch(/^backup 20000101T000000Z has 1 objects but no manifest/);
      },
    );
  });
});
