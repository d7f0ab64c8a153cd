import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { makeTempDir, chownToServiceUser } from '../harness/temp.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';
import type { DrillReport } from '../../src/verify/drill-report.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';

/**
 * Issue 4's drill acceptance on a local-directory repository built with the real CLI: `pgdr drill` restores into a
 * scratch directory, runs pg_amcheck and the policy's SQL checks, records a report with the RTO and removes the
 * copy; --random-target restores to a point inside the window; a repository missing a WAL segment fails the drill,
 * which says why and still stores its report.
 */
describe('pgdr drill on a local-directory repository', () => {
  let server: PostgresServer;
  let store: ObjectStore;
  let repoArgs: string[];
  let policyFile: string;
  /** For random targets: bounds that hold at any point after the backup (it holds 800 rows). */
  let anyPointPolicyFile: string;
  let scratchParent: string;
  const layout = new RepositoryLayout('drill');

  const drill = (args: string[], policy = policyFile) =>
    runPgdr(['drill', ...args, ...repoArgs, '--policy', policy, '--scratch-dir', scratchParent, '--timeout', '300'], { timeoutMs: 300_000 });

  beforeAll(async () => {
    const repo = makeTempDir('drill-repo', { owner: 'service' });
    const url = `file://${repo}`;
    repoArgs = ['--repo', url, '--cluster', 'drill', '--no-progress'];
    store = openStore(url);
    scratchParent = makeTempDir('drill-scratch', { owner: 'service' });
    const policyDir = makeTempDir('drill-policy', { owner: 'service' });
    policyFile = join(policyDir, 'policy.yaml');
    writeFileSync(
      policyFile,
      [
        'drill:',
        '  amcheck: true',
        '  checks:',
        '    - name: orders restored',
        '      sql: SELECT count(*) FROM orders',
        '      expect: { min: 1000 }',
        '    - name: orders fresh',
        '      sql: SELECT max(created_at) FROM orders',
        '      expect: { maxAgeSeconds: 3600 }',
        '',
      ].join('\n'),
    );
    anyPointPolicyFile = join(policyDir, 'any-point.yaml');
    writeFileSync(
      anyPointPolicyFile,
      ['drill:', '  checks:', '    - name: backup rows present', '      sql: SELECT count(*) FROM orders', '      expect: { min: 800, max: 1100 }', ''].join('\n'),
    );
    chownToServiceUser(policyFile);
    chownToServiceUser(anyPointPolicyFile);

    server = await startPostgres({ name: 'drill', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', url, '--cluster', 'drill']) });
    await server.query('CREATE TABLE orders (id int PRIMARY KEY, note text, created_at timestamptz NOT NULL DEFAULT clock_timestamp())');
    await server.query(`CREATE INDEX orders_created ON orders (created_at)`);
    await server.query(`INSERT INTO orders (id, note) SELECT g, 'before the backup' FROM generate_series(1, 800) g`);
    await runPgdrOk(['backup', 'now', ...repoArgs], { env: server.libpqEnv(), timeoutMs: 180_000 });
    for (let i = 0; i < 3; i++) {
      await server.query(`INSERT INTO orders (id, note) SELECT g, 'after the backup' FROM generate_series($1::int, $1::int + 99) g`, [1000 + i * 100]);
      await switchWalAndWaitForArchive(server);
    }
    await server.stop();
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });


  /** No scratch directory left behind, and no process (a postmaster) running in one. */
  function expectNoScratchLeft(): void {
    expect(readdirSync(scratchParent)).toEqual([]);
    const running = readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => commandLine(Number(pid)).includes(scratchParent));
    expect(running).toEqual([]);
  }

  it('restores the newest backup, runs pg_amcheck and the policy checks, and stores a report with the RTO', async () => {
    const result = await drill(['--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<DrillReport>();
    expect(report.result).toBe('passed');
    expect(report.mode).toBe('newest');
    expect(report.target).toBe('latest (end of the archived WAL)');
    expect(report.drillId).toMatch(/^\d{8}T\d{6}Z$/);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rtoSeconds).toBeLessThan(120);
    expect(report.wal.ok).toBe(true);
    expect(report.amcheck).toEqual({ ok: true, detail: 'pg_amcheck --all found no corruption' });
    expect(report.checks).toEqual([
      { name: 'orders restored', ok: true, detail: 'value 1100 is at least 1000' },
      { name: 'orders fresh', ok: true, detail: expect.stringMatching(/^value .* is at most 3600 s old/) },
    ]);
    expect(report.recovered?.timeline).toBe(2);
    expect(report.error).toBeUndefined();
    expect(report.failures).toEqual([]);
    expect(result.stderr).toMatch(/usable after [\d.]+ s/);
    expectNoScratchLeft();

    const stored = JSON.parse((await store.getBuffer(layout.drillReport(report.drillId))).toString('utf8')) as DrillReport;
    expect(stored).toEqual(report);
  });

  it('restores to a random point within the window', async () => {
    const result = await drill(['--random-target', '--json'], anyPointPolicyFile);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = result.json<DrillReport>();
    expect(report.mode).toBe('random');
    expect(report.result).toBe('passed');
    expect(report.target).toMatch(/^LSN [0-9A-F]+\/[0-9A-F]+$/);
    expect(report.checks).toEqual([{ name: 'backup rows present', ok: true, detail: expect.stringMatching(/^value \d+ is at least 800 and at most 1100$/) }]);
    expect(report.amcheck.ok).toBe(true);
    expectNoScratchLeft();
  });

  it('fails a drill whose WAL has a gap, says why, and still stores the report', async () => {
    const segments: string[] = [];
    for await (const info of store.list(layout.walPrefix())) {
      const name = info.key.slice(info.key.lastIndexOf('/') + 1, -'.zst'.length);
      if (/^[0-9A-F]{24}$/.test(name)) segments.push(name);
    }
    const victim = segments.sort()[segments.length - 2]!;
    await store.delete([layout.walObject(victim)]);

    const result = await drill(['--json']);
    expect(result.exitCode, result.stderr).toBe(5);
    const report = result.json<DrillReport>();
    expect(report.result).toBe('failed');
    expect(report.wal.ok).toBe(false);
    expect(report.error).toMatch(new RegExp(`^backup \\d{8}T\\d{6}Z cannot reach .*: segment ${victim} missing`));
    expect(report.failures[0]).toBe(report.error);
    expect(result.stderr).toContain(`restore drill ${report.drillId} failed: ${report.error}`);
    expectNoScratchLeft();

    const list = await runPgdrOk(['drill', 'list', '--json', ...repoArgs]);
    const reports = list.json<DrillReport[]>();
    expect(reports.map((r) => r.result)).toEqual(['passed', 'passed', 'failed']);
    expect(reports[2]!.drillId).toBe(report.drillId);
    const human = await runPgdrOk(['drill', 'list', ...repoArgs]);
    expect(human.stdout).toContain(`${report.drillId}   failed`);
    expect(human.stdout).toContain(report.error!);
  });

  it('refuses to run as root, before touching anything', async () => {
    const result = await runPgdr(['drill', ...repoArgs, '--scratch-dir', scratchParent], { asPostgres: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^pgdr: cannot run a restore drill as root: .*\nhint: run it as the PostgreSQL OS user/);
    expect(readdirSync(scratchParent)).toEqual([]);
  });
});

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}
