import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk, type PgdrResult } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { makeTempDir } from '../harness/temp.js';
import { parseExposition, sampleValue } from '../unit/health/exposition-parser.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';
import { storeDrillReport } from '../../src/verify/drill-report.js';

/**
 * The fleet view: one MinIO repository holding three clusters, judged by `pgdr health --all` and written up by
 * `pgdr report --all` in one run each. One real PostgreSQL 15 archives into all three (an archive_command that pushes
 * each segment three times, once per --cluster); alpha and beta get a real backup, alpha a passed drill, gamma only
 * WAL. So alpha is OK, beta WARNING (no drill yet), gamma CRITICAL (no backup).
 */
const CLUSTERS = ['alpha', 'beta', 'gamma'] as const;

interface ClusterJson {
  cluster: string;
  status: string;
  exitCode: number;
  checks: Array<{ check: string; status: string; message: string }>;
}

interface FleetJson {
  status: string;
  exitCode: number;
  repository: string;
  clusters: ClusterJson[];
  problem?: { message: string; hint: string };
}

describe('pgdr health --all and pgdr report --all on a repository with three clusters', () => {
  let minio: MinioServer;
  let server: PostgresServer;
  let store: ObjectStore;
  let env: Record<string, string>;
  const backupIds: Record<string, string> = {};

  const pgdr = (args: string[], extra: Record<string, string> = {}): Promise<PgdrResult> => runPgdr(args, { env: { ...env, ...extra }, timeoutMs: 120_000 });

  beforeAll(async () => {
    minio = await startMinio();
    const repo = `s3://${minio.bucket}/fleet`;
    // No PGDR_CLUSTER: every command names its cluster, and --all needs none.
    env = { ...minio.env(), PGDR_REPO: repo };
    // The test's own store (drill report, stray objects) finds the credentials where the SDK looks.
    Object.assign(process.env, minio.env());
    store = openStore(repo, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    const archiveCommand = CLUSTERS.map((c) => pgdrCommandLine(['wal', 'push', '%p', '--cluster', c])).join(' && ');
    server = await startPostgres({ name: 'fleet', archiveCommand, env });
    for (const cluster of ['alpha', 'beta']) {
      const backup = await runPgdrOk(['backup', 'now', '--json', '--no-progress', '--cluster', cluster], { env: { ...env, ...server.libpqEnv() }, timeoutMs: 180_000 });
      backupIds[cluster] = backup.json<{ backupId: string }>().backupId;
    }
    await switchWalAndWaitForArchive(server);
    const finishedAt = new Date();
    await storeDrillReport(store, new RepositoryLayout('alpha'), {
      format: 1,
      drillId: '20200101T000000Z',
      cluster: 'alpha',
      backupId: backupIds.alpha!,
      target: 'latest (end of the archived WAL)',
      mode: 'newest',
      startedAt: new Date(finishedAt.getTime() - 60_000).toISOString(),
      finishedAt: finishedAt.toISOString(),
      rtoSeconds: 12,
      result: 'passed',
      wal: { ok: true, detail: 'every segment present' },
      checks: [],
      amcheck: { ok: true, detail: 'no corruption' },
      recovered: null,
      failures: [],
      host: 'test',
      pgdrVersion: '0.1.0',
    });
    // Things at the top of the repository that are not clusters.
    await store.put('README.txt', { kind: 'buffer', data: Buffer.from('fleet repository') });
    await store.put('other-tool/state.json', { kind: 'buffer', data: Buffer.from('{}') });
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });

  it('judges every cluster in one run; the worst sets the exit code; JSON has one entry per cluster', async () => {
    const result = await pgdr(['health', '--all', '--json']);
    expect(result.exitCode, result.stderr).toBe(2);
    const fleet = result.json<FleetJson>();
    expect(fleet).toMatchObject({ status: 'CRITICAL', exitCode: 2, repository: `s3://${minio.bucket}/fleet` });
    expect(fleet.clusters.map((c) => [c.cluster, c.status, c.exitCode])).toEqual([
      ['alpha', 'OK', 0],
      ['beta', 'WARNING', 1],
      ['gamma', 'CRITICAL', 2],
    ]);
    const checksOf = (name: string) => Object.fromEntries(fleet.clusters.find((c) => c.cluster === name)!.checks.map((c) => [c.check, c.status]));
    expect(checksOf('alpha')).toEqual({ repository: 'OK', 'backup-age': 'OK', 'wal-archive': 'SKIPPED', 'etcd-snapshot': 'SKIPPED', drill: 'OK' });
    expect(checksOf('beta')).toMatchObject({ 'backup-age': 'OK', drill: 'WARNING' });
    expect(checksOf('gamma')).toMatchObject({ 'backup-age': 'CRITICAL' });
    const walCheck = fleet.clusters[0]!.checks.find((c) => c.check === 'wal-archive')!;
    expect(walCheck.message).toMatch(/^with --all only the repository is read; judge the WAL archive per cluster/);
  });

  it('prints the clusters grouped in text, and Prometheus metrics labelled by cluster', async () => {
    const text = await pgdr(['health', '--all']);
    expect(text.exitCode).toBe(2);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toBe(`PGDR CRITICAL - 3 cluster(s) in s3://${minio.bucket}/fleet: 1 CRITICAL (gamma), 1 WARNING (beta), 1 OK`);
    expect(lines.filter((l) => l.startsWith('cluster ')).map((l) => l.split(' - ')[0])).toEqual(['cluster alpha: OK', 'cluster beta: WARNING', 'cluster gamma: CRITICAL']);

    const dir = makeTempDir('health-all-textfile', { owner: 'service' });
    const textfile = join(dir, 'pgdr.prom');
    const prom = await pgdr(['health', '--all', '--format', 'prometheus', '--textfile', textfile]);
    expect(prom.exitCode).toBe(2);
    expect(readFileSync(textfile, 'utf8')).toBe(prom.stdout);
    const families = parseExposition(prom.stdout);
    expect(prom.stdout.match(/^# TYPE pgdr_health_status gauge$/gm)).toHaveLength(1);
    for (const cluster of CLUSTERS) expect(sampleValue(families, 'pgdr_repository_up', { cluster })).toBe(1);
    expect(CLUSTERS.map((cluster) => sampleValue(families, 'pgdr_health_status', { cluster }))).toEqual([0, 1, 2]);
    expect(sampleValue(families, 'pgdr_backups', { cluster: 'beta', status: 'complete' })).toBe(1);
    expect(sampleValue(families, 'pgdr_backups', { cluster: 'gamma', status: 'complete' })).toBe(0);
    expect(sampleValue(families, 'pgdr_drill_last_passed', { cluster: 'alpha' })).toBe(1);
    for (const family of families.values()) for (const sample of family.samples) expect(CLUSTERS).toContain(sample.labels.cluster);
  });

  it('refuses --cluster beside --all, and is CRITICAL on a prefix that holds no cluster', async () => {
    const both = await pgdr(['health', '--all', '--cluster', 'alpha']);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toContain('pgdr: --all covers every cluster in the repository; --cluster names one');
    const empty = await pgdr(['health', '--all', '--json'], { PGDR_REPO: `s3://${minio.bucket}/nothing-here` });
    expect(empty.exitCode).toBe(2);
    expect(empty.json<FleetJson>()).toMatchObject({ status: 'CRITICAL', clusters: [], problem: { message: `no cluster in repository s3://${minio.bucket}/nothing-here` } });
  });

  it('writes one report page with a section per cluster and a chart for each', async () => {
    const out = join(makeTempDir('health-all-report', { owner: 'service' }), 'report');
    const result = await runPgdrOk(['report', '--all', '--out', out, '--json'], { env });
    const json = result.json<{ files: string[]; status: string; clusters: { cluster: string; status: string }[] }>();
    expect(json.status).toBe('CRITICAL');
    expect(json.clusters).toEqual([
      { cluster: 'alpha', status: 'OK', exitCode: 0 },
      { cluster: 'beta', status: 'WARNING', exitCode: 1 },
      { cluster: 'gamma', status: 'CRITICAL', exitCode: 2 },
    ]);
    expect(json.files).toEqual([join(out, 'report.md'), join(out, 'report.html'), ...CLUSTERS.map((c) => join(out, `chart-${c}.svg`))]);
    for (const file of json.files) expect(existsSync(file)).toBe(true);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/^# pgdr report: 3 cluster\(s\) in s3:\/\//);
    expect(md.match(/^## Cluster \w+$/gm)).toEqual(['## Cluster alpha', '## Cluster beta', '## Cluster gamma']);
    expect(md).toContain(`| alpha | OK | ${backupIds.alpha} (stopped `);
    expect(md).toMatch(new RegExp(`\\| ${backupIds.beta} \\| complete \\|`));
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html.match(/<svg xmlns/g)).toHaveLength(3);
  });
});
