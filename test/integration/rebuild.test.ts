import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import pg from 'pg';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killQuietly, registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startPatroniCluster, type PatroniCluster, type PatroniMember } from '../harness/patroni.js';
import { descendantPids, isProcessAlive } from '../harness/postgres.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';

/**
 * Full-cluster rebuild, issue 3's acceptance: three etcd members and two Patroni members archiving into MinIO, an
 * etcd snapshot and a base backup, rows committed on either side of a target time; then every data directory is
 * destroyed (etcd and PostgreSQL, every process stopped) and `pgdr restore cluster` brings back etcd from its
 * snapshot, the leader by PITR through Patroni's custom bootstrap and the replica from the repository: a leader and
 * a streaming replica holding exactly the rows committed before the target.
 */

const CLUSTER = 'rebuild';

interface PlanJson {
  steps: { number: number; action: string; manual: boolean }[];
  leader: string;
  backupId: string;
  members: { name: string; role: string; dataDir: string; configFile: string; pidFile: string; logFile: string }[];
  etcd: { mode: string; snapshotId: string; members: { name: string; dataDir: string; pidFile: string; logFile: string }[] };
}

interface RebuildJson {
  plan: PlanJson;
  leader: { name: string; timeline: number };
  started: { kind: string; name: string; pid: number; pidFile: string }[];
  status: { leader: string; members: { name: string; role: string; state: string; timeline: number | null }[] };
  stop: string[];
}

describe('full-cluster rebuild (etcd x3, Patroni x2, MinIO)', () => {
  let minio: MinioServer;
  let etcd: EtcdCluster;
  let cluster: PatroniCluster;
  let env: Record<string, string>;
  let leader: PatroniMember;
  let target: string;
  let configs: string[];
  let etcdArgs: string[];
  let etcdEndpoints: string[];
  let backupId: string;

  const pgdr = (args: string[], timeoutMs = 120_000) => runPgdr([...args, '--no-progress'], { env, timeoutMs });
  const pgdrOk = (args: string[], timeoutMs = 120_000) => runPgdrOk([...args, '--no-progress'], { env, timeoutMs });

  beforeAll(async () => {
    minio = await startMinio();
    env = { ...minio.env(), PGDR_REPO: `s3://${minio.bucket}/pgdr`, PGDR_CLUSTER: CLUSTER };
    etcd = await startEtcdCluster({ members: 3, name: 'rebuild' });
    cluster = await startPatroniCluster({
      members: 2,
      etcd,
      env,
      archiveCommand: () => pgdrCommandLine(['wal', 'push', '%p']),
      restoreCommand: () => pgdrCommandLine(['wal', 'fetch', '%f', '%p']),
    });
    leader = await cluster.waitForLeader();
    await cluster.query(leader, 'CREATE TABLE events (id int PRIMARY KEY, phase text NOT NULL)');
    configs = cluster.members.map((m) => join(m.dir, 'patroni.yml'));
    // The rebuilt etcd gets fresh data directories, on the old members' addresses (as after losing the machines' disks).
    const etcdDir = makeTempDir('rebuild-etcd', { owner: 'service' });
    etcdEndpoints = etcd.members.map((m) => m.clientUrl);
    etcdArgs = [
      '--etcd-members', etcd.members.map((m) => `${m.name}=${join(etcdDir, m.name)}`).join(','),
      '--etcd-initial-cluster', etcd.members.map((m) => `${m.name}=${m.peerUrl}`).join(','),
      '--etcd-client-urls', etcd.members.map((m) => `${m.name}=${m.clientUrl}`).join(','),
      '--etcd-initial-cluster-token', 'pgdr-rebuilt-etcd',
    ];
  });

  afterAll(stopAll);

  async function serverTime(member: PatroniMember): Promise<string> {
    const [row] = await cluster.query<{ now: string }>(member, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
    return row!.now;
  }

  async function query<T>(port: number, sql: string): Promise<T[]> {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      return (await client.query(sql)).rows as T[];
    } finally {
      await client.end();
    }
  }

  it('takes a base backup and an etcd snapshot, then commits rows on either side of the target time', async () => {
    backupId = (await pgdrOk(['backup', 'now', '--json', '--patroni', cluster.restUrls().join(',')])).json<{ backupId: string }>().backupId;
    // A key of another application: the snapshot must bring it back, while the old scope's keys are cleared.
    const client = new Etcd3({ hosts: etcdEndpoints });
    await client.put('/other-app/marker').value('from-before-the-disaster');
    client.close();
    await pgdrOk(['etcd', 'snapshot', '--etcd', etcdEndpoints.join(',')]);

    await cluster.query(leader, "INSERT INTO events SELECT g, 'A' FROM generate_series(1, 100) g");
    await sleep(1000);
    target = await serverTime(leader);
    await sleep(1000);
    await cluster.query(leader, "INSERT INTO events SELECT g, 'B' FROM generate_series(101, 200) g");
    // Recovery stops at the first commit after the target: the segment holding phase B must be archived.
    await cluster.query(leader, 'SELECT pg_switch_wal()');
    const status = join(leader.pgdata, 'pg_wal', 'archive_status');
    const deadline = Date.now() + 60_000;
    while (readdirSync(status).some((f) => f.endsWith('.ready'))) {
      if (Date.now() > deadline) throw new Error(`the leader did not archive its WAL\n${leader.logTail(20)}`);
      await sleep(200);
    }
  });

  it('refuses non-empty data directories, configs of two scopes and a target before every backup', async () => {
    const busy = await pgdr(['restore', 'cluster', '--patroni-config', configs.join(','), '--target-time', target, ...etcdArgs]);
    expect(busy.exitCode).toBe(2);
    expect(busy.stderr).toMatch(/pgdr: data directory .*pgdata is not empty\nhint: /);
    // The dry run makes the same checks and says it would refuse, for each reason, with the same exit code.
    const dry = await pgdr(['restore', 'cluster', '--patroni-config', configs.join(','), '--target-time', target, ...etcdArgs, '--dry-run', '--json']);
    expect(dry.exitCode).toBe(2);
    expect(dry.stderr).toMatch(/pgdr: restore cluster would refuse: data directory .*pgdata is not empty \(and \d+ more, listed above\)/);
    const refusals = dry.json<{ wouldRefuse: { error: string }[] }>().wouldRefuse.map((r) => r.error);
    expect(refusals.some((r) => /a Patroni still answers at/.test(r))).toBe(true);
    expect(refusals.filter((r) => /is not empty/.test(r))).toHaveLength(2);

    const other = join(makeTempDir('rebuild-other', { owner: 'service' }), 'other.yml');
    const doc = parseYaml(readFileSync(configs[1]!, 'utf8')) as Record<string, unknown>;
    writeFileSync(other, toYaml({ ...doc, scope: 'someone-else' }));
    chownToServiceUser(other);
    const scopes = await pgdr(['restore', 'cluster', '--patroni-config', `${configs[0]},${other}`, '--target-time', target, ...etcdArgs]);
    expect(scopes.exitCode).toBe(2);
    expect(scopes.stderr).toContain(`pgdr: the Patroni configs disagree on scope: ${configs[0]} says ${cluster.scope}, ${other} says someone-else`);

    const early = await pgdr(['restore', 'cluster', '--patroni-config', configs.join(','), '--target-time', '2001-01-01T00:00:00Z', ...etcdArgs]);
    expect(early.exitCode).toBe(2);
    expect(early.stderr).toContain('is before the oldest backup finished');
  });

  it('rebuilds the whole cluster after every data directory was destroyed', async () => {
    // The disaster: every service stopped, every data directory gone. Only the repository and the configs remain.
    for (const member of [...cluster.members].reverse()) await member.stop();
    await etcd.stop();
    for (const member of cluster.members) rmSync(member.pgdata, { recursive: true, force: true });
    for (const member of etcd.members) expect(existsSync(member.dataDir)).toBe(false);

    const args = ['restore', 'cluster', '--patroni-config', configs.join(','), '--target-time', target, ...etcdArgs, '--wait-timeout', '150'];
    const dry = (await pgdrOk([...args, '--dry-run', '--json'])).json<{ dryRun: boolean; plan: PlanJson }>();
    expect(dry.dryRun).toBe(true);
    expect(dry.plan.steps.map((s) => s.action)).toEqual(['restore-etcd', 'start-etcd', 'clear-scope', 'write-configs', 'start-leader', 'start-replicas', 'report-status']);
    expect(dry.plan.leader).toBe('pg1');
    expect(dry.plan.backupId).toBe(backupId);
    for (const m of dry.plan.members) expect(existsSync(m.configFile)).toBe(false);
    for (const m of dry.plan.etcd.members) expect(existsSync(m.dataDir)).toBe(false);

    // Whatever pgdr starts is found through its pid files and data directories and killed, even if the test fails.
    const pidFiles = [...dry.plan.members.map((m) => m.pidFile), ...dry.plan.etcd.members.map((m) => m.pidFile)];
    const killStarted = () => {
      const pids: number[] = [];
      for (const file of pidFiles) {
        const pid = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) : NaN;
        if (Number.isInteger(pid) && pid > 0) pids.push(pid);
      }
      for (const m of dry.plan.members) {
        const pidFile = join(m.dataDir, 'postmaster.pid');
        const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n', 1)[0]) : NaN;
        if (Number.isInteger(pid) && pid > 0) pids.push(pid);
      }
      const all = new Set<number>();
      for (const pid of pids) {
        killQuietly(pid, 'SIGSTOP');
        all.add(pid);
      }
      for (const pid of pids) for (const child of descendantPids(pid)) all.add(child);
      for (const pid of all) killQuietly(pid, 'SIGKILL');
    };
    registerCleanup('processes started by pgdr restore cluster', async () => {
      killStarted();
      await sleep(500);
    }, killStarted);

    const started = Date.now();
    const result = await pgdrOk([...args, '--json'], 240_000);
    const rebuilt = result.json<RebuildJson>();
    process.stderr.write(`pgdr restore cluster took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    expect(result.stderr).toMatch(/step 1\/7: restore etcd snapshot/);
    expect(result.stderr).toMatch(/step 7\/7 done/);

    expect(rebuilt.leader.name).toBe('pg1');
    expect(rebuilt.leader.timeline).toBeGreaterThan(1);
    expect(rebuilt.status.leader).toBe('pg1');
    expect(rebuilt.status.members.map((m) => [m.name, m.role, m.state, m.timeline])).toEqual([
      ['pg1', 'leader', 'running', rebuilt.leader.timeline],
      ['pg2', 'replica', 'running', rebuilt.leader.timeline],
    ]);
    // Detached from pgdr, still running after it exited, and each named in a pid file and a stop instruction.
    expect(rebuilt.started.map((s) => `${s.kind}/${s.name}`)).toEqual([...etcd.members.map((m) => `etcd/${m.name}`), 'patroni/pg1', 'patroni/pg2']);
    for (const s of rebuilt.started) {
      expect(isProcessAlive(s.pid), `${s.kind} ${s.name}`).toBe(true);
      expect(Number(readFileSync(s.pidFile, 'utf8'))).toBe(s.pid);
    }
    expect(rebuilt.stop.join('\n')).toContain(`kill $(cat ${rebuilt.started[0]!.pidFile})`);

    // Exactly the rows committed before the target, on the leader and on the replica.
    const [pg1, pg2] = cluster.members as [PatroniMember, PatroniMember];
    const rows = await query<{ id: number; phase: string }>(pg1.pgPort, 'SELECT id, phase FROM events ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.phase))).toEqual(new Set(['A']));
    const replication = await query<{ name: string; state: string }>(pg1.pgPort, 'SELECT application_name AS name, state FROM pg_stat_replication');
    expect(replication).toContainEqual({ name: 'pg2', state: 'streaming' });
    expect((await query<{ recovery: boolean }>(pg2.pgPort, 'SELECT pg_is_in_recovery() AS recovery'))[0]?.recovery).toBe(true);

    // The replica streams: a row written on the rebuilt leader arrives.
    await query(pg1.pgPort, "INSERT INTO events VALUES (1000, 'after-rebuild')");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [row] = await query<{ n: number }>(pg2.pgPort, 'SELECT count(*)::int AS n FROM events');
      if (row?.n === 101) break;
      if (Date.now() > deadline) throw new Error(`the replica has ${row?.n} rows, not 101`);
      await sleep(200);
    }
    expect((await query<{ id: number }>(pg2.pgPort, 'SELECT id FROM events WHERE id > 100')).map((r) => r.id)).toEqual([1000]);

    // etcd came back from the snapshot (another application's key is there) and holds the new cluster's keys.
    const client = new Etcd3({ hosts: etcdEndpoints });
    try {
      expect(await client.get('/other-app/marker').string()).toBe('from-before-the-disaster');
      expect(await client.get(`/service/${cluster.scope}/leader`).string()).toBe('pg1');
    } finally {
      client.close();
    }
  });
});
