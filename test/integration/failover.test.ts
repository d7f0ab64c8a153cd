import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdrOk } from '../harness/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../harness/etcd.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startPatroniCluster, type PatroniCluster, type PatroniMember } from '../harness/patroni.js';
import { freePort } from '../harness/ports.js';
import { isProcessAlive, runAsPostgres } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { makeTempDir } from '../harness/temp.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import { openStore } from '../../src/storage/open-store.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { zstdDecompressBuffer } from '../../src/stream/zstd.js';

/**
 * Failover continuity, issue 3's acceptance: three etcd members, three Patroni members archiving with `pgdr wal
 * push` into MinIO. A backup on timeline 1, writes, the leader's Patroni and PostgreSQL SIGKILLed, a replica
 * promoted to timeline 2, writes, a backup on timeline 2; then PITR to either side of the failover restores exactly
 * the rows committed before the target, the repository holds 00000002.history and nothing was overwritten, and a
 * backup taken from the remaining standby (--from replica) restores.
 */

const CLUSTER = 'failover';

interface BackupJson {
  backupId: string;
  timeline: number;
  source: string;
  sourceMember: string | null;
  startLsn: string;
  stopLsn: string;
  engine: string;
}

describe('failover continuity (etcd x3, Patroni x3, MinIO)', () => {
  let minio: MinioServer;
  let etcd: EtcdCluster;
  let cluster: PatroniCluster;
  let store: ObjectStore;
  let env: Record<string, string>;
  const layout = new RepositoryLayout(CLUSTER);

  let oldLeader: PatroniMember;
  let newLeader: PatroniMember;
  let backup1: BackupJson;
  let beforeFailover: string;
  let afterFailover: string;

  const pgdr = (args: string[]) => runPgdrOk([...args, '--no-progress'], { env, timeoutMs: 240_000 });

  beforeAll(async () => {
    minio = await startMinio();
    const repo = `s3://${minio.bucket}/pgdr`;
    env = { ...minio.env(), PGDR_REPO: repo, PGDR_CLUSTER: CLUSTER };
    // The test reads the repository itself through pgdr's own driver, with the same credentials.
    Object.assign(process.env, minio.env());
    store = openStore(repo, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    etcd = await startEtcdCluster({ members: 3, name: 'failover' });
    cluster = await startPatroniCluster({
      members: 3,
      etcd,
      // Credentials reach archive_command and restore_command through Patroni's environment, never argv.
      env,
      archiveCommand: () => pgdrCommandLine(['wal', 'push', '%p']),
      restoreCommand: () => pgdrCommandLine(['wal', 'fetch', '%f', '%p']),
    });
    oldLeader = await cluster.waitForLeader();
    await cluster.query(oldLeader, `CREATE TABLE events (id int PRIMARY KEY, phase text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  });

  afterAll(async () => {
    await store?.close();
    await stopAll();
  });

  async function insertPhase(member: PatroniMember, phase: string, from: number, to: number): Promise<void> {
    await cluster.query(member, 'INSERT INTO events (id, phase) SELECT g, $1 FROM generate_series($2::int, $3::int) g', [phase, from, to]);
  }

  /** The server's clock in UTC, ISO 8601 with microseconds: a recovery target between two commits. */
  async function serverTime(member: PatroniMember): Promise<string> {
    const [row] = await cluster.query<{ now: string }>(member, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
    return row!.now;
  }

  async function timelineOf(member: PatroniMember): Promise<number> {
    const [row] = await cluster.query<{ walfile: string }>(member, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile');
    return parseInt(row!.walfile.slice(0, 8), 16);
  }

  /** Every completed segment of the member has been archived (no .ready left): only the one being written is not. */
  async function waitArchiverIdle(member: PatroniMember): Promise<void> {
    const status = join(member.pgdata, 'pg_wal', 'archive_status');
    const deadline = Date.now() + 60_000;
    while (readdirSync(status).some((f) => f.endsWith('.ready'))) {
      if (Date.now() > deadline) throw new Error(`${member.name} did not archive ${readdirSync(status).join(', ')}\n${member.logTail(20)}`);
      await sleep(200);
    }
  }

  /** `pgdr restore --start` into a scratch directory as the postgres user; returns the ids per phase, then stops it. */
  async function restoreAndRead(targetArgs: string[]): Promise<{ ids: number[]; phases: string[]; json: Record<string, unknown> }> {
    const pgdata = join(makeTempDir('failover-restore', { owner: 'service' }), 'pgdata');
    const port = await freePort();
    const stop = (mode: string) => runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', mode, '-w', 'stop'], { reject: false, timeout: 60_000 });
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await stop('immediate');
    });
    try {
      const result = await pgdr(['restore', '--pgdata', pgdata, ...targetArgs, '--start', '--start-timeout', '120', '--port', String(port), '--archive-mode', 'off', '--json']);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ id: number; phase: string }>('SELECT id, phase FROM events ORDER BY id');
        return { ids: rows.map((r) => r.id), phases: [...new Set(rows.map((r) => r.phase))], json: result.json<Record<string, unknown>>() };
      } finally {
        await client.end();
      }
    } finally {
      if (existsSync(join(pgdata, 'postmaster.pid'))) await stop('fast');
      unregister();
    }
  }

  const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('backs up timeline 1 from the leader found through Patroni', async () => {
    backup1 = (await pgdr(['backup', 'now', '--json', '--patroni', cluster.restUrls().join(',')])).json<BackupJson>();
    expect(backup1.timeline).toBe(1);
    expect(backup1.sourceMember).toBe(oldLeader.name);
    expect(backup1.source).toBe(`127.0.0.1:${oldLeader.pgPort}`);
  });

  it('fails over when the leader is SIGKILLed (Patroni and PostgreSQL): a replica promotes to timeline 2', async () => {
    await insertPhase(oldLeader, 'A', 1, 100);
    await sleep(1000);
    beforeFailover = await serverTime(oldLeader);
    await sleep(1000);
    await insertPhase(oldLeader, 'B', 101, 200);
    // The failover must not lose committed rows: the replicas have everything, and every finished segment is archived.
    await cluster.waitForReplicasStreaming({ caughtUp: true, timeoutMs: 60_000 });
    await waitArchiverIdle(oldLeader);

    const patroniPid = oldLeader.pid() as number;
    const postmasterPid = oldLeader.postmasterPid() as number;
    expect(patroniPid).toBeGreaterThan(0);
    expect(postmasterPid).toBeGreaterThan(0);
    await oldLeader.kill();
    expect(isProcessAlive(patroniPid)).toBe(false);
    expect(isProcessAlive(postmasterPid)).toBe(false);

    newLeader = await cluster.waitForLeader({ not: oldLeader.name, timeoutMs: 90_000 });
    expect(newLeader.name).not.toBe(oldLeader.name);
    expect(await timelineOf(newLeader)).toBe(2);
    expect((await cluster.query<{ n: number }>(newLeader, 'SELECT count(*)::int AS n FROM events'))[0]?.n).toBe(200);

    // Leader discovery through etcd alone sees the new leader too.
    const status = (await pgdr(['cluster', 'status', '--json', '--etcd', etcd.endpoints.join(','), '--scope', cluster.scope, '--leader-wait', '30'])).json<{
      leader: string;
    }>();
    expect(status.leader).toBe(newLeader.name);
  });

  it('backs up timeline 2 from the new leader, with the dead member first in --patroni', async () => {
    await insertPhase(newLeader, 'C', 201, 300);
    await sleep(1000);
    afterFailover = await serverTime(newLeader);
    await sleep(1000);
    await insertPhase(newLeader, 'D', 301, 400);

    const backup2 = (await pgdr(['backup', 'now', '--json', '--patroni', cluster.restUrls().join(',')])).json<BackupJson>();
    expect(backup2.timeline).toBe(2);
    expect(backup2.sourceMember).toBe(newLeader.name);
    expect(backup2.source).toBe(`127.0.0.1:${newLeader.pgPort}`);
  });

  it('the repository holds 00000002.history, the old timeline ends in a .partial segment, and no WAL was overwritten', async () => {
    const history = await store.head(layout.walObject('00000002.history'));
    expect(history).not.toBeNull();
    const text = (await zstdDecompressBuffer(await store.getBuffer(layout.walObject('00000002.history')))).toString('utf8');
    expect(text).toMatch(/^1\t[0-9A-F]+\/[0-9A-F]+\t/m);

    const timeline1: string[] = [];
    for await (const entry of store.list(layout.walTimelinePrefix('00000001'))) timeline1.push(entry.key.slice(entry.key.lastIndexOf('/') + 1));
    const partial = timeline1.find((name) => name.endsWith('.partial.zst'));
    expect(partial, timeline1.join(', ')).toBeDefined();
    // The old leader died inside that segment: the full segment of timeline 1 was never archived, by anyone.
    expect(timeline1).not.toContain(partial!.replace('.partial', ''));

    // wal push refuses to overwrite different content and fails the archive_command: the archivers saw no failure.
    for (const member of cluster.members.filter((m) => m.isRunning())) {
      const [row] = await cluster.query<{ failed: number }>(member, 'SELECT failed_count::int AS failed FROM pg_stat_archiver');
      expect(row?.failed, member.name).toBe(0);
    }
  });

  it('PITR to a time before the failover stays on timeline 1 and restores exactly the rows committed before it', async () => {
    const restored = await restoreAndRead(['--target-time', beforeFailover]);
    expect(restored.json.backupId).toBe(backup1.backupId);
    expect(restored.ids).toEqual(range(1, 100));
    expect(restored.phases).toEqual(['A']);
  });

  it('PITR to a time after the failover follows the switch to timeline 2 and restores exactly the rows committed before it', async () => {
    const restored = await restoreAndRead(['--target-time', afterFailover]);
    // Backup 2 ended after the target: the restore starts from backup 1 on timeline 1 and crosses the switch.
    expect(restored.json.backupId).toBe(backup1.backupId);
    expect(restored.ids).toEqual(range(1, 300));
    expect(restored.phases).toEqual(['A', 'B', 'C']);
  });

  it('--from replica takes a files-engine backup from the standby that restores correctly', async () => {
    await insertPhase(newLeader, 'E', 401, 500);
    await cluster.waitForReplicasStreaming({ caughtUp: true, timeoutMs: 60_000 });
    const standby = cluster.members.find((m) => m !== newLeader && m !== oldLeader) as PatroniMember;

    const result = await pgdr(['backup', 'now', '--json', '--from', 'replica', '--patroni', cluster.restUrls().join(',')]);
    const backup3 = result.json<BackupJson>();
    expect(backup3.sourceMember).toBe(standby.name);
    expect(backup3.source).toBe(`127.0.0.1:${standby.pgPort}`);
    expect(backup3.timeline).toBe(2);
    // pgdr runs on the standby's host here, so auto picks the files engine: a standby backup read from its data directory.
    expect(backup3.engine).toBe('files');
    expect(result.stderr).toContain(`asked the leader ${newLeader.name} to finish its WAL segment`);

    const restored = await restoreAndRead(['--backup-id', backup3.backupId, '--target', 'latest']);
    expect(restored.json.backupId).toBe(backup3.backupId);
    expect(restored.ids).toEqual(range(1, 500));
  });
});
