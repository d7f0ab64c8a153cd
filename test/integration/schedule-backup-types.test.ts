import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBackupCatalog } from '../../src/repo/catalog.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import { openStore } from '../../src/storage/open-store.js';
import { killQuietly, registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdrOk } from '../harness/cli.js';
import { descendantPids, runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgdrBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir, serviceUser } from '../harness/temp.js';

/**
 * `pgdr schedule` with a weekly-full / daily-incr policy, on real PostgreSQL 15 with the files engine, without
 * waiting a week: the same two backup jobs on a compressed clock (the full every 30 s, the incr every 10 s, so that
 * at :00 and :30 both fire as on a Sunday). At those moments only the full runs and the incr is logged as superseded;
 * at the others the incr runs and builds on the newest backup; the repository ends up holding exactly the types the
 * scheduler reported, each chain the one its reference implies.
 */
const CLUSTER = 'schedtypes';

interface LogLine {
  event: string;
  job?: string;
  scheduledAt?: string;
  outcome?: string;
  reason?: string;
  detail?: string;
  result?: { backupId?: string; type?: string; engine?: string; reference?: string | null };
  [key: string]: unknown;
}

describe('pgdr schedule with a weekly full and daily incrementals', () => {
  let server: PostgresServer;
  let repoUrl: string;
  let policyFile: string;
  let seedBackupId: string;
  const lines: LogLine[] = [];

  beforeAll(async () => {
    const dir = makeTempDir('schedule-types', { owner: 'service' });
    repoUrl = `file://${join(dir, 'repo')}`;
    server = await startPostgres({ name: 'schedtypes', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', repoUrl, '--cluster', CLUSTER]) });
    await server.query('CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())');
    // A full backup to build on, as the first Sunday's would be.
    const seed = await runPgdrOk(['backup', 'now', '--engine', 'files', '--json', '--repo', repoUrl, '--cluster', CLUSTER, '--no-progress'], { env: server.libpqEnv(), timeoutMs: 180_000 });
    seedBackupId = seed.json<{ backupId: string }>().backupId;
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(
      policyFile,
      [
        'schedule:',
        '  leaderGate: none',
        '  gracePeriod: 2m',
        '  lockTtl: 1m',
        '  jobs:',
        '    backup:            { cron: "0,30 * * * * *", type: full, engine: files, timeout: 2m }',
        '    backup-incr:       { cron: "*/10 * * * * *", type: incr, engine: files, timeout: 2m }',
        '    wal-archive-check: { enabled: false }',
        '    expire:            { enabled: false }',
        '    verify:            { enabled: false }',
        '    drill:             { enabled: false }',
        '',
      ].join('\n'),
    );
    chownToServiceUser(policyFile);
  });

  afterAll(async () => {
    await stopAll();
  });

  it('--dry-run leaves the moments the full takes out of the incr job\'s next runs', async () => {
    const result = await runPgdrOk(['schedule', '--dry-run', '--json', '--repo', repoUrl, '--cluster', CLUSTER, '--policy', policyFile], { env: server.libpqEnv() });
    const plan = result.json<{ jobs: Array<{ job: string; enabled: boolean; command: string; nextRuns: string[] }> }>();
    const job = (name: string) => plan.jobs.find((j) => j.job === name)!;
    expect(job('backup').command).toBe('pgdr backup now --type full --engine files');
    expect(job('backup-incr').command).toBe('pgdr backup now --type incr --engine files');
    expect(job('backup').nextRuns.map((r) => new Date(r).getUTCSeconds() % 30)).toEqual([0, 0, 0]);
    expect(job('backup-incr').nextRuns).toHaveLength(3);
    for (const run of job('backup-incr').nextRuns) expect([10, 20, 40, 50]).toContain(new Date(run).getUTCSeconds());
  });

  it('takes the full where both fire, incrs on the newest backup elsewhere, and the repository agrees', async () => {
    const args = [pgdrBin, 'schedule', '--repo', repoUrl, '--cluster', CLUSTER, '--policy', policyFile];
    const child: ResultPromise = runAsPostgres(process.execPath, args, { env: pgdrEnvironment(server.libpqEnv()), extendEnv: false, reject: false, buffer: false, stdin: 'ignore' });
    let partial = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      partial += chunk;
      const complete = partial.split('\n');
      partial = complete.pop() ?? '';
      for (const line of complete) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
    });
    child.stdout?.resume();
    const schedulerPid = (): number | undefined => (serviceUser().switchUser ? descendantPids(child.pid!)[0] : child.pid);
    const unregister = registerCleanup('pgdr schedule (backup types)', () => {
      for (const pid of [...descendantPids(child.pid!), child.pid]) killQuietly(pid);
    });
    const runs = () => lines.filter((l) => l.event === 'job-run');
    const succeeded = (job: string) => runs().filter((r) => r.job === job && r.outcome === 'succeeded');
    const deadline = Date.now() + 150_000;
    // Writes between backups, so each incr has something to store.
    while (!(succeeded('backup').length >= 1 && succeeded('backup-incr').length >= 2 && runs().some((r) => r.reason === 'superseded'))) {
      if (Date.now() > deadline) throw new Error(`timed out; log:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
      await server.query('INSERT INTO ticks DEFAULT VALUES');
      await sleep(1000);
    }
    killQuietly(schedulerPid(), 'SIGTERM');
    const exit = await child;
    unregister();
    expect(exit.exitCode).toBe(0);

    const seconds = (r: LogLine) => new Date(r.scheduledAt!).getUTCSeconds();
    for (const r of runs()) {
      if (r.job === 'backup') {
        expect([0, 30]).toContain(seconds(r));
        if (r.outcome === 'succeeded') expect(r.result).toMatchObject({ type: 'full', engine: 'files', reference: null });
      } else {
        expect(r.job).toBe('backup-incr');
        if ([0, 30].includes(seconds(r))) {
          expect(r).toMatchObject({ outcome: 'skipped', reason: 'superseded', detail: 'the backup job fires at the same moment and takes a full backup instead' });
        } else if (r.outcome === 'succeeded') {
          expect(r.result).toMatchObject({ type: 'incr', engine: 'files' });
        } else {
          // A run that fired while a backup still ran here waits for the next one.
          expect(r).toMatchObject({ outcome: 'skipped', reason: 'overlap' });
        }
      }
    }

    // The repository holds the seed and exactly the backups the scheduler reported, each incr on the newest before it.
    const store = openStore(repoUrl);
    try {
      const catalog = await readBackupCatalog(store, new RepositoryLayout(CLUSTER));
      const reported = runs().filter((r) => r.outcome === 'succeeded');
      expect(catalog.complete.map((m) => m.backupId)).toEqual([seedBackupId, ...reported.map((r) => r.result!.backupId!)].sort());
      catalog.complete.forEach((m, i) => {
        const run = reported.find((r) => r.result!.backupId === m.backupId);
        expect(m.type).toBe(run === undefined ? 'full' : run.job === 'backup' ? 'full' : 'incr');
        if (m.type === 'incr') {
          const previous = catalog.complete[i - 1]!;
          expect(m.reference).toBe(previous.backupId);
          expect(m.chain).toEqual([...(previous.chain ?? []), previous.backupId]);
        }
      });
    } finally {
      await store.close();
    }
  });
});
