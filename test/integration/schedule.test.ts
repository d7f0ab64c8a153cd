import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killQuietly, registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startPatroniCluster, type PatroniCluster, type PatroniMember } from '../harness/patroni.js';
import { descendantPids, runAsPostgres } from '../harness/postgres.js';
import { pgdrBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir, serviceUser } from '../harness/temp.js';
import { readBackupCatalog } from '../../src/repo/catalog.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import { openStore } from '../../src/storage/open-store.js';

/**
 * `pgdr schedule` on a real two-member Patroni cluster (etcd DCS, PostgreSQL 15): one scheduler per member, each
 * asking its own member's REST API whether it leads. Only the leader's scheduler takes backups; after a failover
 * the new leader's does; SIGTERM lets a running backup finish before the scheduler exits 0.
 */
const CLUSTER = 'sched';

interface LogLine {
  time: string;
  event: string;
  job?: string;
  outcome?: string;
  reason?: string;
  detail?: string;
  running?: string[];
  cancelled?: string[];
  result?: { backupId?: string; source?: string };
  [key: string]: unknown;
}

/** A `pgdr schedule` process run as the postgres OS user, with its JSON log lines. */
interface SchedulerProcess {
  lines: LogLine[];
  runs(): LogLine[];
  /** SIGTERM to the scheduler itself (not to runuser, which would kill it after two seconds). */
  terminate(): void;
  exited: Promise<number | undefined>;
}

describe('pgdr schedule on a real Patroni cluster', () => {
  let etcd: EtcdCluster;
  let cluster: PatroniCluster;
  let repoUrl: string;
  let workDir: string;
  let leader: PatroniMember;
  let replica: PatroniMember;
  const layout = new RepositoryLayout(CLUSTER);

  function writePolicy(name: string, backup: Record<string, unknown>): string {
    const file = join(workDir, name);
    writeFileSync(
      file,
      [
        'schedule:',
        '  gracePeriod: 2m',
        '  lockTtl: 1m',
        '  jobs:',
        `    backup: ${JSON.stringify(backup)}`,
        '    wal-archive-check: {enabled: false}',
        '    expire: {enabled: false}',
        '    verify: {enabled: false}',
        '    drill: {enabled: false}',
        '',
      ].join('\n'),
    );
    chownToServiceUser(file);
    return file;
  }

  function startScheduler(member: PatroniMember, policyFile: string): SchedulerProcess {
    const args = [pgdrBin, 'schedule', '--repo', repoUrl, '--cluster', CLUSTER, '--policy', policyFile, '--patroni', cluster.restUrls().join(','), '--local-patroni', member.restUrl];
    const child: ResultPromise = runAsPostgres(process.execPath, args, { env: pgdrEnvironment(), extendEnv: false, reject: false, buffer: false, stdin: 'ignore' });
    const lines: LogLine[] = [];
    let partial = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      partial += chunk;
      const complete = partial.split('\n');
      partial = complete.pop() ?? '';
      for (const line of complete) {
        if (line.trim() === '') continue;
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          throw new Error(`pgdr schedule wrote a line that is not JSON: ${line}`);
        }
      }
    });
    child.stdout?.resume();
    const schedulerPid = (): number | undefined => (serviceUser().switchUser ? descendantPids(child.pid!)[0] : child.pid);
    const unregister = registerCleanup(
      `pgdr schedule for ${member.name}`,
      () => {
        for (const pid of [...descendantPids(child.pid!), child.pid]) killQuietly(pid);
      },
      () => killQuietly(child.pid),
    );
    const exited = child.then((r) => {
      unregister();
      return r.exitCode;
    });
    return {
      lines,
      runs: () => lines.filter((l) => l.event === 'job-run'),
      terminate: () => killQuietly(schedulerPid(), 'SIGTERM'),
      exited,
    };
  }

  async function waitFor(what: string, ok: () => boolean, timeoutMs = 90_000, context: () => string = () => ''): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
      await sleep(100);
    }
  }

  const dump = (...schedulers: SchedulerProcess[]) => () => schedulers.map((s) => s.lines.map((l) => JSON.stringify(l)).join('\n')).join('\n---\n');

  beforeAll(async () => {
    workDir = makeTempDir('schedule', { owner: 'service' });
    repoUrl = `file://${join(workDir, 'repo')}`;
    etcd = await startEtcdCluster({ members: 1, name: 'schedule' });
    cluster = await startPatroniCluster({
      members: 2,
      etcd,
      archiveCommand: () => pgdrCommandLine(['wal', 'push', '%p', '--repo', repoUrl, '--cluster', CLUSTER]),
    });
    leader = await cluster.waitForLeader();
    replica = cluster.members.find((m) => m.name !== leader.name)!;
    await cluster.waitForReplicasStreaming();
  });

  afterAll(async () => {
    await stopAll();
  });

  it('lists its jobs and next runs with --dry-run', async () => {
    const policy = writePolicy('dry-run.yaml', { cron: '0 2 * * *' });
    const result = await runPgdrOk(['schedule', '--dry-run', '--json', '--repo', repoUrl, '--cluster', CLUSTER, '--policy', policy, '--local-patroni', leader.restUrl]);
    const plan = result.json<{ leaderGate: string; jobs: Array<{ job: string; enabled: boolean; command: string; nextRuns: string[] }> }>();
    expect(plan.leaderGate).toBe(`Patroni ${leader.restUrl}/leader`);
    expect(plan.jobs.find((j) => j.job === 'backup')).toMatchObject({ enabled: true, command: 'pgdr backup now' });
    expect(plan.jobs.find((j) => j.job === 'backup')!.nextRuns.every((r) => r.endsWith('T02:00:00.000Z'))).toBe(true);
    expect(plan.jobs.filter((j) => j.enabled).map((j) => j.job)).toEqual(['backup']);
  });

  let onLeader: SchedulerProcess;
  let onReplica: SchedulerProcess;

  it("runs the backup job on the leader's node only and skips it on the replica's", async () => {
    const policy = writePolicy('every-10s.yaml', { cron: '*/10 * * * * *', timeout: '2m' });
    onLeader = startScheduler(leader, policy);
    onReplica = startScheduler(replica, policy);
    await waitFor(
      'a backup by the leader and a skip by the replica',
      () => onLeader.runs().some((r) => r.outcome === 'succeeded') && onReplica.runs().some((r) => r.reason === 'not-leader'),
      90_000,
      dump(onLeader, onReplica),
    );
    expect(onLeader.lines[0]).toMatchObject({ event: 'scheduler-started', leaderGate: `Patroni ${leader.restUrl}/leader` });
    const done = onLeader.runs().find((r) => r.outcome === 'succeeded')!;
    expect(done).toMatchObject({ job: 'backup', exitCode: 0, result: { source: `127.0.0.1:${leader.pgPort}` } });
    expect(onReplica.runs().length).toBeGreaterThan(0);
    for (const run of onReplica.runs()) {
      expect(run).toMatchObject({ job: 'backup', outcome: 'skipped', reason: 'not-leader', detail: `${replica.restUrl} is not the leader` });
    }
  });

  it('follows a failover: the new leader runs the job, and both schedulers stop cleanly', async () => {
    // The old leader's scheduler is stopped first, so no backup of it is cut short by the failover itself.
    onLeader.terminate();
    expect(await onLeader.exited).toBe(0);
    expect(onLeader.lines.at(-1)).toMatchObject({ event: 'scheduler-stopped', signal: 'SIGTERM', cancelled: [] });
    const skipsBefore = onReplica.runs().length;

    await leader.stop();
    const newLeader = await cluster.waitForLeader({ not: leader.name, timeoutMs: 120_000 });
    expect(newLeader.name).toBe(replica.name);
    await waitFor('a backup by the new leader', () => onReplica.runs().some((r) => r.outcome === 'succeeded'), 90_000, dump(onReplica));
    const done = onReplica.runs().find((r) => r.outcome === 'succeeded')!;
    expect(done.result?.source).toBe(`127.0.0.1:${replica.pgPort}`);
    expect(onReplica.runs().slice(0, skipsBefore).every((r) => r.reason === 'not-leader')).toBe(true);

    onReplica.terminate();
    expect(await onReplica.exited).toBe(0);
    expect(onReplica.lines.at(-1)).toMatchObject({ event: 'scheduler-stopped', signal: 'SIGTERM' });

    // Every backup in the repository is one a scheduler reported, from the member that led at the time.
    const reported = [...onLeader.runs(), ...onReplica.runs()].filter((r) => r.outcome === 'succeeded');
    const store = openStore(repoUrl);
    try {
      const catalog = await readBackupCatalog(store, layout);
      expect(catalog.complete.map((m) => m.backupId).sort()).toEqual(reported.map((r) => r.result!.backupId!).sort());
      for (const m of catalog.complete) expect([`127.0.0.1:${leader.pgPort}`, `127.0.0.1:${replica.pgPort}`]).toContain(m.source);
    } finally {
      await store.close();
    }
  });

  it("health judges the archive of the leader it finds through Patroni (the scheduler's wal-archive-check)", async () => {
    const result = await runPgdr(['health', '--check', 'wal-archive', '--json', '--repo', repoUrl, '--cluster', CLUSTER, '--patroni', cluster.restUrls().join(',')]);
    const check = result.json<{ checks: Array<{ check: string; status: string; message: string }> }>().checks[0]!;
    expect(check.check).toBe('wal-archive');
    // The old leader is stopped: its endpoint does not answer, the new leader's does.
    expect(check.message).toContain(`server 127.0.0.1:${replica.pgPort} writes 00000002`);
    expect(['OK', 'WARNING']).toContain(check.status);
  });

  it('on SIGTERM lets the running backup finish, then exits 0', async () => {
    // A throttled backup, so that the signal certainly arrives while it runs.
    const policy = writePolicy('slow.yaml', { cron: '*/5 * * * * *', timeout: '2m', args: ['--max-rate', '4M'] });
    const scheduler = startScheduler(replica, policy);
    await waitFor('the backup job to start', () => scheduler.lines.some((l) => l.event === 'job-output' && l.job === 'backup'), 60_000, dump(scheduler));
    scheduler.terminate();
    const code = await scheduler.exited;
    if (code !== 0) throw new Error(`exit ${code}\n${dump(scheduler)()}`);
    const events = scheduler.lines.map((l) => (l.event === 'job-run' ? `job-run ${l.outcome}` : l.event)).filter((e) => e !== 'job-output');
    expect(events).toEqual(['scheduler-started', 'scheduler-stopping', 'job-run succeeded', 'scheduler-stopped']);
    expect(scheduler.lines.find((l) => l.event === 'scheduler-stopping')).toMatchObject({ signal: 'SIGTERM', running: ['backup'] });
    expect(scheduler.lines.at(-1)).toMatchObject({ event: 'scheduler-stopped', cancelled: [], runs: { succeeded: 1, failed: 0, skipped: 0 } });
  });
});
