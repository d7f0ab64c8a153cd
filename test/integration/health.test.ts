import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk, type PgdrResult } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { makeTempDir } from '../harness/temp.js';
import { parseExposition, sampleValue } from '../unit/health/exposition-parser.js';
import { formatWalSegmentName, parseWalSegmentName, walSegmentFromNumber, walSegmentNumber } from '../../src/postgres/wal-file-name.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';
import { storeDrillReport, type DrillReport } from '../../src/verify/drill-report.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';

/**
 * `pgdr health` and `pgdr report` against a real MinIO repository and a real PostgreSQL 15 that archives into it
 * with `pgdr wal push`; the backup is taken with the CLI. The clock is injected with --now, so the ages are exact
 * and nothing sleeps for a day.
 */
const CLUSTER = 'health';
const H = 3_600_000;

interface HealthJson {
  status: string;
  exitCode: number;
  checks: Array<{ check: string; status: string; message: string; [key: string]: unknown }>;
}

describe('pgdr health and pgdr report on a real repository and server', () => {
  let minio: MinioServer;
  let server: PostgresServer;
  let store: ObjectStore;
  let env: Record<string, string>;
  let backupId: string;
  let stopTime: Date;
  const layout = new RepositoryLayout(CLUSTER);

  const at = (ms: number): string => new Date(stopTime.getTime() + ms).toISOString();
  const health = (args: string[], extraEnv: Record<string, string> = server.libpqEnv()): Promise<PgdrResult> =>
    runPgdr(['health', ...args], { env: { ...env, ...extraEnv }, timeoutMs: 120_000 });
  const check = (json: HealthJson, name: string) => json.checks.find((c) => c.check === name)!;


  function drillReport(drillId: string, finishedAt: Date, result: 'passed' | 'failed'): DrillReport {
    return {
      format: 1,
      drillId,
      cluster: CLUSTER,
      backupId,
      target: 'latest (end of the archived WAL)',
      mode: 'newest',
      startedAt: new Date(finishedAt.getTime() - 60_000).toISOString(),
      finishedAt: finishedAt.toISOString(),
      rtoSeconds: result === 'passed' ? 42 : null,
      result,
      wal: { ok: true, detail: 'every segment present' },
      checks: [],
      amcheck: { ok: result === 'passed', detail: result === 'passed' ? 'no corruption' : 'index "events_pkey" is corrupt' },
      recovered: null,
      ...(result === 'failed' ? { error: 'pg_amcheck: index "events_pkey" is corrupt' } : {}),
      failures: result === 'failed' ? ['pg_amcheck: index "events_pkey" is corrupt'] : [],
      host: 'test',
      pgdrVersion: '0.1.0',
    };
  }

  beforeAll(async () => {
    minio = await startMinio();
    const repo = `s3://${minio.bucket}/pgdr`;
    env = { ...minio.env(), PGDR_REPO: repo, PGDR_CLUSTER: CLUSTER };
    Object.assign(process.env, minio.env());
    store = openStore(repo, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    // Credentials reach archive_command through the server's environment, never its command line.
    // No look-ahead: a segment pgdr archived ahead of PostgreSQL would hide the lag the archive_command test counts.
    server = await startPostgres({ name: 'health', archiveCommand: pgdrCommandLine(['wal', 'push', '%p']), env: { ...env, PGDR_ARCHIVE_LOOKAHEAD: '0' } });
    await server.query('CREATE TABLE events (id int PRIMARY KEY)');
    const backup = await runPgdrOk(['backup', 'now', '--json', '--no-progress'], { env: { ...env, ...server.libpqEnv() }, timeoutMs: 180_000 });
    ({ backupId } = backup.json<{ backupId: string }>());
    stopTime = new Date(backup.json<{ stopTime: string }>().stopTime);
    await switchWalAndWaitForArchive(server);
    // A restore drill that passed half an hour after the backup, stored by the drill's own writer.
    await storeDrillReport(store, layout, drillReport('20200101T000000Z', new Date(stopTime.getTime() + H / 2), 'passed'));
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });

  it('is OK, WARNING and CRITICAL at the right backup ages (clock injected with --now)', async () => {
    const cases: Array<[number, string, number]> = [
      [H, 'OK', 0],
      [26 * H, 'OK', 0],
      [26 * H + 1000, 'WARNING', 1],
      [48 * H, 'WARNING', 1],
      [48 * H + 1000, 'CRITICAL', 2],
    ];
    for (const [ageMs, state, exit] of cases) {
      const result = await health(['--json', '--now', at(ageMs)]);
      const json = result.json<HealthJson>();
      expect({ age: ageMs, exit: result.exitCode, status: json.status }).toEqual({ age: ageMs, exit, status: state });
      expect(json.exitCode).toBe(exit);
      expect(check(json, 'backup-age')).toMatchObject({ status: state, ageSeconds: ageMs / 1000 });
      expect(check(json, 'repository').status).toBe('OK');
      // The real server's archive is current: its newest completed segment is in the repository.
      expect(check(json, 'wal-archive')).toMatchObject({ status: 'OK', lagSegments: 0 });
      expect(check(json, 'etcd-snapshot').status).toBe('SKIPPED');
      expect(check(json, 'drill').status).toBe('OK');
    }
    const warning = await health(['--now', at(27 * H)]);
    expect(warning.exitCode).toBe(1);
    expect(warning.stdout.split('\n')[0]).toBe(
      `PGDR WARNING - backup-age: newest complete backup ${backupId} finished 27 h ago (warning past 26 h) | ` +
        `backup_age=97200s;93600;172800;0 wal_lag_segments=0;8;32;0 wal_lag=0s;900;3600;0 drill_age=95400s;2764800;3024000;0`,
    );
  });

  it('prints Prometheus metrics that parse, on stdout and atomically into --textfile', async () => {
    const dir = makeTempDir('health-textfile', { owner: 'service' });
    const textfile = join(dir, 'pgdr.prom');
    const result = await health(['--format', 'prometheus', '--now', at(27 * H), '--textfile', textfile]);
    expect(result.exitCode).toBe(1);
    expect(readFileSync(textfile, 'utf8')).toBe(result.stdout);
    const families = parseExposition(result.stdout);
    expect(sampleValue(families, 'pgdr_health_status', { cluster: CLUSTER })).toBe(1);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'backup-age' })).toBe(1);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'wal-archive' })).toBe(0);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'etcd-snapshot' })).toBeUndefined();
    expect(sampleValue(families, 'pgdr_backup_age_seconds')).toBe(27 * 3600);
    expect(sampleValue(families, 'pgdr_backup_last_completed_timestamp_seconds')).toBe(stopTime.getTime() / 1000);
    expect(sampleValue(families, 'pgdr_backups', { status: 'complete' })).toBe(1);
    expect(sampleValue(families, 'pgdr_wal_archive_lag_segments')).toBe(0);
    expect(sampleValue(families, 'pgdr_wal_archiver_failed_count')).toBe(0);
    expect(sampleValue(families, 'pgdr_drill_last_passed')).toBe(1);
    expect(sampleValue(families, 'pgdr_repository_up')).toBe(1);
    expect(families.get('pgdr_backup_last_size_bytes')?.samples[0]?.value).toBeGreaterThan(1_000_000);
  });

  it('skips the WAL check without PostgreSQL, and is UNKNOWN when the configured server is down', async () => {
    const skipped = await health(['--json', '--now', at(H)], {});
    expect(skipped.exitCode).toBe(0);
    expect(check(skipped.json<HealthJson>(), 'wal-archive')).toMatchObject({ status: 'SKIPPED', message: expect.stringMatching(/^no PostgreSQL configured/) });

    const port = await freePort();
    const down = await health(['--json', '--now', at(H), '--pg-host', '127.0.0.1', '--pg-port', String(port)], {});
    expect(down.exitCode).toBe(3);
    const json = down.json<HealthJson>();
    expect(json.status).toBe('UNKNOWN');
    expect(check(json, 'wal-archive')).toMatchObject({ status: 'UNKNOWN', message: expect.stringMatching(`cannot connect to PostgreSQL at 127.0.0.1:${port}`) });
    expect(check(json, 'backup-age').status).toBe('OK');
  });

  it('is CRITICAL while archive_command fails, and OK again once it works', async () => {
    await server.query(`ALTER SYSTEM SET archive_command = 'false'`);
    await server.query('SELECT pg_reload_conf()');
    await sleep(300);
    await server.query('INSERT INTO events SELECT generate_series(1, 1000)');
    await server.query('SELECT pg_switch_wal()');
    const deadline = Date.now() + 60_000;
    while (Number((await server.query<{ n: string }>('SELECT failed_count::text AS n FROM pg_stat_archiver'))[0]?.n) === 0) {
      if (Date.now() > deadline) throw new Error(`archive_command never failed; log:\n${server.logTail(20)}`);
      await sleep(200);
    }
    const failing = await health(['--json', '--check', 'wal-archive']);
    expect(failing.exitCode).toBe(2);
    const wal = check(failing.json<HealthJson>(), 'wal-archive');
    expect(wal.status).toBe('CRITICAL');
    expect(wal.message).toMatch(/^archive_command is failing on 127\.0\.0\.1:\d+: 0000000100000000000000[0-9A-F]{2} failed at /);
    expect(wal.lagSegments).toBeGreaterThanOrEqual(1);
    expect(failing.json<HealthJson>().checks.map((c) => c.check)).toEqual(['wal-archive']);

    await server.query('ALTER SYSTEM RESET archive_command');
    await server.query('SELECT pg_reload_conf()');
    await sleep(300);
    await switchWalAndWaitForArchive(server);
    const healed = await health(['--json', '--check', 'wal-archive']);
    expect(healed.exitCode).toBe(0);
    expect(check(healed.json<HealthJson>(), 'wal-archive')).toMatchObject({ status: 'OK', lagSegments: 0 });
  });

  it('is CRITICAL while the repository holds a segment past the one the server writes, found without listing the archive', async () => {
    const [{ walfile }] = (await server.query<{ walfile: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile')) as [{ walfile: string }];
    const current = parseWalSegmentName(walfile);
    // Five segments ahead of the server, on its timeline: what a second server archiving as this cluster leaves.
    const foreign = formatWalSegmentName(walSegmentFromNumber(current.timeline, walSegmentNumber(current) + 5n));
    await store.put(layout.walObject(foreign), { kind: 'buffer', data: Buffer.from('not really WAL') });
    try {
      const ahead = await health(['--json', '--check', 'wal-archive']);
      expect(ahead.exitCode).toBe(2);
      const wal = check(ahead.json<HealthJson>(), 'wal-archive');
      expect(wal.status).toBe('CRITICAL');
      expect(wal.message).toMatch(new RegExp(`^the repository holds ${foreign} \\(stored .*\\), at or past the segment server 127\\.0\\.0\\.1:\\d+ writes`));
      expect(wal.message).toContain("another server archives under this cluster's name");
    } finally {
      await store.delete([layout.walObject(foreign)]);
    }
    expect(check((await health(['--json', '--check', 'wal-archive'])).json<HealthJson>(), 'wal-archive').status).toBe('OK');
  });

  it('writes report.md, report.html and chart.svg with the checks, the backup list and the retention plan', async () => {
    const out = join(makeTempDir('health-report', { owner: 'service' }), 'report');
    const result = await runPgdrOk(['report', '--out', out, '--now', at(H), '--json'], { env: { ...env, ...server.libpqEnv() } });
    const json = result.json<{ files: string[]; status: string }>();
    expect(json.status).toBe('OK');
    expect(json.files).toEqual([join(out, 'report.md'), join(out, 'report.html'), join(out, 'chart.svg')]);
    for (const file of json.files) expect(existsSync(file)).toBe(true);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain(`# pgdr report: cluster ${CLUSTER}`);
    expect(md).toContain('Overall health: **OK** (exit 0).');
    expect(md).toMatch(new RegExp(`\\| ${backupId} \\| complete \\|.*\\| keep \\(daily ${backupId.slice(0, 4)}-${backupId.slice(4, 6)}-${backupId.slice(6, 8)}`));
    expect(md).toContain('`pgdr expire` would keep all 1 complete backup(s).');
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(html).toContain(backupId);
    expect(readFileSync(join(out, 'chart.svg'), 'utf8')).toMatch(/^<svg [^]*<circle [^]*<\/svg>\n$/);
  });

  it('is CRITICAL when the newest drill failed, however recent', async () => {
    await storeDrillReport(store, layout, drillReport('20200102T000000Z', new Date(stopTime.getTime() + H / 2), 'failed'));
    const result = await health(['--json', '--now', at(H)]);
    expect(result.exitCode).toBe(2);
    expect(check(result.json<HealthJson>(), 'drill')).toMatchObject({
      status: 'CRITICAL',
      drillPassed: 0,
      message: expect.stringMatching(/^last restore drill 20200102T000000Z FAILED 30 min ago: pg_amcheck: index "events_pkey" is corrupt/),
    });
  });

  it('is CRITICAL when the repository does not answer', async () => {
    minio.kill();
    try {
      const result = await health(['--json', '--now', at(H)]);
      expect(result.exitCode).toBe(2);
      const json = result.json<HealthJson>();
      expect(check(json, 'repository').status).toBe('CRITICAL');
      expect(check(json, 'backup-age').status).toBe('UNKNOWN');
      expect(json.status).toBe('CRITICAL');
    } finally {
      await minio.start();
    }
  });
});
