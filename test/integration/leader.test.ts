import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startPatroniCluster, type PatroniCluster, type PatroniMember } from '../harness/patroni.js';
import { freePort } from '../harness/ports.js';
import { makeTempDir } from '../harness/temp.js';

/**
 * Leader discovery against a real cluster: three etcd members, two Patroni members (Debian's patroni 3.0.2,
 * PostgreSQL 15): `pgdr cluster status` through Patroni and through etcd alone, with an endpoint down, `backup now`
 * following the leader, and a clear error when no leader appears within the deadline.
 */

interface StatusJson {
  scope: string | null;
  via: { kind: string; endpoint: string } | null;
  leader: string | null;
  members: Array<{ name: string; role: string; state: string; host: string; port: number; timeline: number | null; lagBytes: number | null }>;
  backupSource: { leader: { member: string; port: number } | null; replica: { member: string; port: number } | null };
  endpoints: Array<{ kind: string; endpoint: string; ok: boolean; error?: string }>;
  problems: string[];
}

describe('leader discovery (etcd x3, Patroni x2)', () => {
  let etcd: EtcdCluster;
  let cluster: PatroniCluster;
  let leader: PatroniMember;
  let replica: PatroniMember;
  let repoDir: string;
  let repoArgs: string[];
  let deadPatroni: string;
  let deadEtcd: string;

  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3, name: 'leader' });
    repoDir = makeTempDir('leader-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repoDir}`, '--cluster', 'leader', '--no-progress'];
    cluster = await startPatroniCluster({
      members: 2,
      etcd,
      archiveCommand: () => pgdrCommandLine(['wal', 'push', '%p', ...repoArgs]),
      // Replicas come from the repository (docs/patroni.md); pg_basebackup from the leader if that fails.
      postgresql: () => ({
        create_replica_methods: ['pgdr', 'basebackup'],
        pgdr: { command: pgdrCommandLine(['patroni', 'create-replica', ...repoArgs]), no_leader: true },
      }),
      // The replica starts in the first test, once the repository holds a backup to create it from.
      startOnlyFirst: true,
    });
    leader = await cluster.waitForLeader();
    replica = cluster.members.find((m) => m !== leader) as PatroniMember;
    // Nothing listens on these: an endpoint that is down.
    deadPatroni = `http://127.0.0.1:${await freePort()}`;
    deadEtcd = `http://127.0.0.1:${await freePort()}`;
  });

  afterAll(stopAll);

  const status = async (args: string[]): Promise<StatusJson> => (await runPgdrOk(['cluster', 'status', '--json', ...args])).json<StatusJson>();

  it('backup now follows the leader found through Patroni; a new replica is created from that backup (create_replica_methods)', async () => {
    await cluster.query(leader, 'CREATE TABLE seeded AS SELECT generate_series(1, 1000) AS n');
    const result = await runPgdrOk(['backup', 'now', '--json', ...repoArgs, '--patroni', [deadPatroni, ...cluster.restUrls()].join(',')], { timeoutMs: 180_000 });
    const backup = result.json<{ backupId: string; source: string; sourceMember: string; timeline: number }>();
    expect(backup.sourceMember).toBe(leader.name);
    expect(backup.source).toBe(`127.0.0.1:${leader.pgPort}`);
    expect(backup.timeline).toBe(1);
    expect(result.stderr).toContain(`backing up from the leader: ${leader.name} (127.0.0.1:${leader.pgPort}) holds the leader key`);
    const manifest = JSON.parse(readFileSync(join(repoDir, 'leader', 'backups', backup.backupId, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.sourceMember).toBe(leader.name);

    await cluster.query(leader, 'INSERT INTO seeded SELECT generate_series(1001, 1100)');
    await replica.start();
    await cluster.waitForReplicasStreaming({ count: 1, timeoutMs: 150_000 });
    const patroniLog = readFileSync(replica.logFile, 'utf8');
    expect(patroniLog).toContain('replica has been created using pgdr');
    expect(patroniLog).not.toContain('replica has been created using basebackup');
    // The backup's rows came from the repository, the later ones by streaming from the leader.
    expect(await cluster.query(replica, 'SELECT count(*)::int AS n FROM seeded')).toEqual([{ n: 1100 }]);
  });

  it('cluster status through Patroni shows members, roles, timelines, lag and the member a backup would read from', async () => {
    // A replica reports its lag once Patroni's loop has run on it.
    let s: StatusJson;
    const deadline = Date.now() + 30_000;
    do {
      s = await status(['--patroni', cluster.restUrls().join(',')]);
      if (s.backupSource.replica !== null) break;
      await new Promise((r) => setTimeout(r, 1000));
    } while (Date.now() < deadline);
    expect(s.scope).toBe(cluster.scope);
    expect(s.via?.kind).toBe('patroni');
    expect(s.leader).toBe(leader.name);
    const byName = new Map(s.members.map((m) => [m.name, m]));
    expect(byName.get(leader.name)).toMatchObject({ role: 'leader', state: 'running', host: '127.0.0.1', port: leader.pgPort, timeline: 1, lagBytes: null });
    expect(byName.get(replica.name)).toMatchObject({ role: 'replica', host: '127.0.0.1', port: replica.pgPort });
    expect(byName.get(replica.name)?.lagBytes).toBeTypeOf('number');
    expect(s.backupSource.leader).toMatchObject({ member: leader.name, port: leader.pgPort });
    expect(s.backupSource.replica).toMatchObject({ member: replica.name, port: replica.pgPort });
    expect(s.endpoints.every((e) => e.ok)).toBe(true);

    const human = await runPgdrOk(['cluster', 'status', '--patroni', cluster.restUrls().join(',')]);
    expect(human.stdout).toContain(`cluster ${cluster.scope}`);
    expect(human.stdout).toMatch(new RegExp(`^${leader.name}\\s+leader\\s+running\\s+127\\.0\\.0\\.1:${leader.pgPort}\\s+1`, 'm'));
    expect(human.stdout).toContain(`backup now would read from: ${leader.name} (127.0.0.1:${leader.pgPort})`);
  });

  it('finds the same leader through etcd alone, with --scope and without (a single scope in the namespace)', async () => {
    const withScope = await status(['--etcd', etcd.endpoints.join(','), '--scope', cluster.scope]);
    expect(withScope.via?.kind).toBe('etcd');
    expect(withScope.leader).toBe(leader.name);
    expect(withScope.backupSource.leader).toMatchObject({ member: leader.name, port: leader.pgPort });
    expect(withScope.members.map((m) => m.name).sort()).toEqual([leader.name, replica.name].sort());

    const found = await status(['--etcd', etcd.endpoints.join(',')]);
    expect(found.scope).toBe(cluster.scope);
    expect(found.leader).toBe(leader.name);

    const wrong = await runPgdr(['cluster', 'status', '--etcd', etcd.endpoints.join(','), '--scope', 'no-such-cluster']);
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toMatch(/^pgdr: etcd at http:\/\/127\.0\.0\.1:\d+ holds no Patroni keys under \/service\/no-such-cluster\/\nhint: check --scope/);
  });

  it('tolerates one Patroni endpoint and one etcd endpoint being down', async () => {
    const viaPatroni = await status(['--patroni', [deadPatroni, ...cluster.restUrls()].join(',')]);
    expect(viaPatroni.leader).toBe(leader.name);
    expect(viaPatroni.endpoints[0]).toMatchObject({ endpoint: deadPatroni, ok: false });
    expect(viaPatroni.endpoints[0]?.error).toMatch(/unreachable: ECONNREFUSED/);
    expect(viaPatroni.endpoints.slice(1).every((e) => e.ok)).toBe(true);

    const viaEtcd = await status(['--etcd', [deadEtcd, ...etcd.endpoints].join(','), '--scope', cluster.scope]);
    expect(viaEtcd.leader).toBe(leader.name);
    expect(viaEtcd.endpoints[0]).toMatchObject({ endpoint: deadEtcd, ok: false });
  });

  it('backup now through etcd alone reads from the leader whatever PGHOST says', async () => {
    const viaEtcd = await runPgdrOk(['backup', 'now', '--json', ...repoArgs, '--etcd', etcd.endpoints.join(',')], {
      timeoutMs: 180_000,
      env: { PGHOST: '127.0.0.1', PGPORT: String(replica.pgPort) },
    });
    expect(viaEtcd.json<{ sourceMember: string; source: string }>()).toMatchObject({ sourceMember: leader.name, source: `127.0.0.1:${leader.pgPort}` });
  });

  it('refuses --from replica without Patroni or etcd, and a bad --from', async () => {
    const noCluster = await runPgdr(['backup', 'now', ...repoArgs, '--from', 'replica']);
    expect(noCluster.exitCode).toBe(2);
    expect(noCluster.stderr).toContain('pgdr: --from replica needs to know the cluster');
    const bad = await runPgdr(['backup', 'now', ...repoArgs, '--from', 'witness', '--patroni', cluster.restUrls().join(',')]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--from must be leader or replica');
  });

  it('errors clearly when no leader appears within the deadline', async () => {
    // Every member stops: Patroni gives up the leader key on its way out, and nothing takes it.
    await Promise.all(cluster.members.map((m) => m.stop()));

    const started = Date.now();
    const noLeader = await runPgdr(
      ['backup', 'now', '--json', ...repoArgs, '--patroni', cluster.restUrls().join(','), '--etcd', etcd.endpoints.join(','), '--scope', cluster.scope, '--leader-wait', '4'],
      { timeoutMs: 60_000 },
    );
    expect(noLeader.exitCode).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_000);
    // With --json, the failure is also one JSON document on stdout.
    expect(noLeader.json()).toEqual({ error: expect.stringMatching(/^found no leader within 4 s/), hint: expect.any(String), exitCode: 4 });
    const [message, hint] = noLeader.stderr.trim().split('\n').slice(-2);
    expect(message).toMatch(/^pgdr: found no leader within 4 s: .*Patroni at http:\/\/127\.0\.0\.1:\d+ is unreachable.*etcd http:\/\/127\.0\.0\.1:\d+: the cluster has no leader/);
    expect(hint).toMatch(/^hint: check `pgdr cluster status`/);

    // Status still answers from etcd, says there is no leader, and that nothing can be backed up.
    const viaEtcd = await status(['--etcd', etcd.endpoints.join(','), '--scope', cluster.scope]);
    expect(viaEtcd.leader).toBeNull();
    expect(viaEtcd.backupSource.leader).toBeNull();
    expect(viaEtcd.problems.join('\n')).toContain('backup from the leader: the cluster has no leader');

    // With no source answering at all, status fails as a service error.
    const nothing = await runPgdr(['cluster', 'status', '--patroni', cluster.restUrls().join(',')]);
    expect(nothing.exitCode).toBe(4);
    expect(nothing.stdout).toContain('no Patroni or etcd endpoint answered');
    expect(nothing.stderr).toMatch(/^pgdr: no Patroni or etcd endpoint answered \(Patroni at http:\/\/127\.0\.0\.1:\d+ is unreachable/m);
  });

  it('bootstraps a new cluster from the repository (bootstrap.method running pgdr patroni bootstrap)', async () => {
    const clone = await startPatroniCluster({
      members: 1,
      etcd,
      scope: `${cluster.scope}-clone`,
      bootstrap: {
        method: 'pgdr',
        pgdr: { command: pgdrCommandLine(['patroni', 'bootstrap', ...repoArgs, '--target', 'latest']), keep_existing_recovery_conf: true },
      },
    });
    try {
      const cloneLeader = await clone.waitForLeader();
      expect(readFileSync(cloneLeader.logFile, 'utf8')).toContain('Running custom bootstrap script');
      // Every row the original cluster archived, and a timeline of its own after the promotion at the archive's end.
      expect(await clone.query(cloneLeader, 'SELECT count(*)::int AS n FROM seeded')).toEqual([{ n: 1100 }]);
      const [row] = await clone.query<{ walfile: string }>(cloneLeader, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile');
      expect(parseInt(row!.walfile.slice(0, 8), 16)).toBeGreaterThan(1);
    } finally {
      await clone.stop();
    }
  });
});
