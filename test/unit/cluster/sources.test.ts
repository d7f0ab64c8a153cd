import { describe, expect, it } from 'vitest';
import { ServiceError, UsageError } from '../../../src/errors.js';
import { resolveBackupSource, waitForDecision, type ClusterReader } from '../../../src/cluster/discover.js';
import { checkScope, clusterViewFromDcs, normalizeNamespace, scopesFromKeys } from '../../../src/cluster/etcd-dcs.js';
import type { ClusterView } from '../../../src/cluster/members.js';
import { clusterViewFromPatroni, parsePatroniEndpoint, readPatroniCluster } from '../../../src/cluster/patroni-api.js';

/** GET /cluster as Debian's Patroni 3.0.2 answered it in the integration harness. */
const patroni3Cluster = {
  members: [
    { name: 'pg1', role: 'leader', state: 'running', api_url: 'http://127.0.0.1:43671/patroni', host: '127.0.0.1', port: 43423, timeline: 1 },
    { name: 'pg2', role: 'replica', state: 'running', api_url: 'http://127.0.0.1:33589/patroni', host: '127.0.0.1', port: 38661, timeline: 1, lag: 0 },
    { name: 'pg3', role: 'replica', state: 'creating replica', api_url: 'http://127.0.0.1:33590/patroni', host: '127.0.0.1', port: 38662, lag: 'unknown' },
  ],
};

/** GET /cluster in Patroni 4's shape: streaming state, receive/replay lag fields, quorum standbys. */
const patroni4Cluster = {
  scope: 'main',
  members: [
    { name: 'a', role: 'leader', state: 'running', api_url: 'http://10.0.0.1:8008/patroni', host: '10.0.0.1', port: 5432, timeline: 4, lsn: '0/5000060' },
    {
      name: 'b',
      role: 'quorum_standby',
      state: 'streaming',
      api_url: 'http://10.0.0.2:8008/patroni',
      host: '10.0.0.2',
      port: 5432,
      timeline: 4,
      receive_lag: 0,
      receive_lsn: '0/5000060',
      replay_lag: 16,
      replay_lsn: '0/5000050',
      lag: 16,
      tags: { clonefrom: true },
    },
  ],
};

describe('clusterViewFromPatroni', () => {
  it('reads Patroni 3.0 answers', () => {
    const view = clusterViewFromPatroni('http://127.0.0.1:43671', patroni3Cluster, 'pgdr-b51eda');
    expect(view.leader).toBe('pg1');
    expect(view.scope).toBe('pgdr-b51eda');
    expect(view.members.map((m) => [m.name, m.role, m.state, m.port, m.timeline, m.lagBytes])).toEqual([
      ['pg1', 'leader', 'running', 43423, 1, null],
      ['pg2', 'replica', 'running', 38661, 1, 0],
      ['pg3', 'replica', 'creating replica', 38662, null, null],
    ]);
  });

  it('reads Patroni 4 answers, ignoring fields it does not know', () => {
    const view = clusterViewFromPatroni('http://10.0.0.1:8008', patroni4Cluster, null);
    expect(view.scope).toBe('main');
    expect(view.members[1]).toMatchObject({ name: 'b', role: 'sync_standby', state: 'streaming', lagBytes: 16, tags: { clonefrom: true } });
  });

  it('rejects a document that is not a Patroni cluster with a one-line error', () => {
    expect(() => clusterViewFromPatroni('http://x:8008', { members: [{ role: 'leader' }] }, null)).toThrow(ServiceError);
    expect(() => clusterViewFromPatroni('http://x:8008', { health: 'true' }, null)).toThrow(/unexpected document \(members:/);
  });
});

describe('parsePatroniEndpoint', () => {
  it('reduces an endpoint to its origin and drops /patroni', () => {
    expect(parsePatroniEndpoint('127.0.0.1:8008')).toBe('http://127.0.0.1:8008');
    expect(parsePatroniEndpoint('https://db1:8008/patroni')).toBe('https://db1:8008');
    expect(parsePatroniEndpoint('http://db1:8008/')).toBe('http://db1:8008');
  });

  it('refuses other schemes and credentials in the URL', () => {
    expect(() => parsePatroniEndpoint('postgres://db1:5432')).toThrow(UsageError);
    expect(() => parsePatroniEndpoint('http://admin:secret@db1:8008')).toThrow(/carries credentials/);
    try {
      parsePatroniEndpoint('http://admin:secret@db1:8008');
    } catch (err) {
      expect((err as Error).message).not.toContain('secret');
    }
  });
});

describe('readPatroniCluster', () => {
  const fakeFetch = (answers: Record<string, unknown>): typeof fetch =>
    (async (input: string | URL | Request) => {
      const url = String(input);
      const path = new URL(url).pathname;
      if (!(path in answers)) return new Response('not found', { status: 404 });
      return new Response(JSON.stringify(answers[path]), { status: 200 });
    }) as typeof fetch;

  it('learns the scope from GET /patroni', async () => {
    const view = await readPatroniCluster('http://p:8008', {
      timeoutMs: 1000,
      fetch: fakeFetch({ '/cluster': patroni3Cluster, '/patroni': { state: 'running', patroni: { version: '3.0.2', scope: 'main' } } }),
    });
    expect(view.scope).toBe('main');
  });

  it('refuses an endpoint of another scope', async () => {
    await expect(
      readPatroniCluster('http://p:8008', {
        timeoutMs: 1000,
        expectScope: 'other',
        fetch: fakeFetch({ '/cluster': patroni3Cluster, '/patroni': { patroni: { scope: 'main' } } }),
      }),
    ).rejects.toThrow(UsageError);
  });

  it('reports HTTP errors and unreachable endpoints as service errors', async () => {
    await expect(readPatroniCluster('http://p:8008', { timeoutMs: 1000, fetch: fakeFetch({}) })).rejects.toThrow(/HTTP 404/);
    const refused = (async () => {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    }) as unknown as typeof fetch;
    await expect(readPatroniCluster('http://p:8008', { timeoutMs: 1000, fetch: refused })).rejects.toThrow(/unreachable: ECONNREFUSED/);
  });
});

describe('clusterViewFromDcs', () => {
  /** The keys Patroni 3.0.2 wrote into etcd in the integration harness. */
  const keys = new Map(
    Object.entries({
      config: '{"ttl":10,"loop_wait":2,"retry_timeout":4,"maximum_lag_on_failover":16777216,"postgresql":{"use_pg_rewind":true,"use_slots":true}}',
      initialize: '7711356787887572939',
      leader: 'pg1',
      'members/pg1':
        '{"conn_url":"postgres://127.0.0.1:43423/postgres","api_url":"http://127.0.0.1:43671/patroni","state":"running","role":"master","version":"3.0.2","xlog_location":50331648,"timeline":1}',
      'members/pg2':
        '{"conn_url":"postgres://127.0.0.1:38661/postgres","api_url":"http://127.0.0.1:33589/patroni","state":"running","role":"replica","version":"3.0.2","xlog_location":50331000,"timeline":1}',
      status: '{"optime":50331648}',
    }),
  );

  it('reads leader, members, addresses and lag from the DCS keys', () => {
    const view = clusterViewFromDcs('http://127.0.0.1:2379', 'main', keys);
    expect(view.leader).toBe('pg1');
    expect(view.members.map((m) => [m.name, m.role, m.host, m.port, m.timeline, m.lagBytes])).toEqual([
      ['pg1', 'leader', '127.0.0.1', 43423, 1, null],
      ['pg2', 'replica', '127.0.0.1', 38661, 1, 648],
    ]);
  });

  it('lets the leader key decide, not a stale self-reported role', () => {
    const failover = new Map(keys);
    failover.delete('leader');
    const view = clusterViewFromDcs('e', 'main', failover);
    expect(view.leader).toBeNull();
    expect(view.members.every((m) => m.role === 'replica')).toBe(true);
  });

  it('uses the legacy optime/leader key, marks sync standbys, and lists an unreadable member without choosing it', () => {
    const legacy = new Map(keys);
    legacy.delete('status');
    legacy.set('optime/leader', '50331700');
    legacy.set('sync', '{"leader":"pg1","sync_standby":"pg2"}');
    legacy.set('members/pg3', '{not json');
    const view = clusterViewFromDcs('e', 'main', legacy);
    expect(view.members.find((m) => m.name === 'pg2')).toMatchObject({ role: 'sync_standby', lagBytes: 700 });
    expect(view.members.find((m) => m.name === 'pg3')).toMatchObject({ role: 'unknown', state: 'invalid DCS entry' });
  });

  it('finds scopes and checks names', () => {
    expect(scopesFromKeys('/service/', ['/service/a/leader', '/service/a/members/x', '/service/b/config', '/service/c', '/other/d/leader'])).toEqual(['a', 'b']);
    expect(normalizeNamespace('service')).toBe('/service');
    expect(normalizeNamespace('/service/')).toBe('/service');
    expect(() => normalizeNamespace('/')).toThrow(UsageError);
    expect(() => checkScope('../x')).toThrow(UsageError);
  });
});

function view(leader: string | null, over: Partial<ClusterView> = {}): ClusterView {
  const members = [
    { name: 'pg1', role: leader === 'pg1' ? 'leader' : 'replica', state: 'running', host: '10.0.0.1', port: 5432, apiUrl: null, timeline: 1, lagBytes: leader === 'pg1' ? null : 0, tags: {} },
    { name: 'pg2', role: leader === 'pg2' ? 'leader' : 'replica', state: 'running', host: '10.0.0.2', port: 5432, apiUrl: null, timeline: 1, lagBytes: leader === 'pg2' ? null : 10, tags: {} },
  ] as ClusterView['members'];
  return { scope: 'main', source: { kind: 'patroni', endpoint: 'http://p1:8008' }, leader, members, paused: false, ...over };
}

function reader(endpoint: string, answers: Array<ClusterView | Error>): ClusterReader & { calls: number } {
  const r = {
    kind: 'patroni' as const,
    endpoint,
    calls: 0,
    read: async () => {
      const answer = answers[Math.min(r.calls, answers.length - 1)] as ClusterView | Error;
      r.calls++;
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  return r;
}

/** A clock that sleep() advances: the retry loop runs instantly. */
function fakeClock(): { now: () => number; sleep: (ms: number) => Promise<void> } {
  let t = 0;
  return { now: () => t, sleep: async (ms) => void (t += ms) };
}

describe('waitForDecision and resolveBackupSource', () => {
  it('skips an endpoint that is down', async () => {
    const down = reader('http://p1:8008', [new ServiceError('Patroni at http://p1:8008 is unreachable: ECONNREFUSED', 'h')]);
    const up = reader('http://p2:8008', [view('pg1')]);
    const source = await resolveBackupSource(
      { patroni: [], etcd: [], namespace: '/service', requestTimeoutMs: 1000 },
      { from: 'leader', waitMs: 0, readers: [down, up], probe: async () => false },
    );
    expect(source.member.name).toBe('pg1');
    expect(source.endpoint).toEqual({ host: '10.0.0.1', port: 5432, user: undefined });
  });

  it('waits through a failover: no leader, then a leader whose PostgreSQL is still in recovery, then the new leader', async () => {
    const clock = fakeClock();
    const r = reader('http://p1:8008', [view('pg1'), view(null), view('pg2'), view('pg2')]);
    let probes = 0;
    const source = await resolveBackupSource(
      { patroni: [], etcd: [], namespace: '/service', requestTimeoutMs: 1000 },
      {
        from: 'leader',
        waitMs: 30_000,
        readers: [r],
        pollMs: 1000,
        // pg1 was killed; pg2 answers once it has promoted.
        probe: async (endpoint) => {
          probes++;
          if (endpoint.host === '10.0.0.1') throw new ServiceError('cannot connect to PostgreSQL at 10.0.0.1:5432: ECONNREFUSED', 'h');
          return probes < 3;
        },
        ...clock,
      },
    );
    expect(source.member.name).toBe('pg2');
  });

  it('gives up at the deadline with what each source said', async () => {
    const clock = fakeClock();
    const r = reader('http://p1:8008', [view(null)]);
    const err = await waitForDecision(
      [r],
      async (v) => (v.leader ? { ok: true, value: v } : { ok: false, problem: 'the cluster has no leader', retryable: true }),
      { waitMs: 10_000, pollMs: 1000, what: 'a leader', ...clock },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as Error).message).toBe('found no leader within 10 s: patroni http://p1:8008: the cluster has no leader');
    // Asked at 0, 1, ..., 10 s.
    expect(r.calls).toBe(11);
  });

  it('stops at once on an answer that waiting cannot change, and on usage errors', async () => {
    const r = reader('http://p1:8008', [view('pg1')]);
    await expect(
      waitForDecision([r], async () => ({ ok: false, problem: 'standby cluster', retryable: false }), { waitMs: 60_000, what: 'a leader' }),
    ).rejects.toThrow(/cannot find a leader: patroni http:\/\/p1:8008: standby cluster/);
    const wrong = reader('http://p1:8008', [new UsageError('wrong scope', 'h')]);
    await expect(waitForDecision([wrong], async () => ({ ok: true, value: 1 }), { waitMs: 60_000, what: 'a leader' })).rejects.toThrow(UsageError);
  });

  it('from replica: picks a standby, and names the leader that must finish the WAL', async () => {
    const source = await resolveBackupSource(
      { patroni: [], etcd: [], namespace: '/service', requestTimeoutMs: 1000, pgUser: 'backup' },
      { from: 'replica', waitMs: 0, readers: [reader('http://p1:8008', [view('pg1')])], probe: async () => true },
    );
    expect(source.member.name).toBe('pg2');
    expect(source.endpoint).toEqual({ host: '10.0.0.2', port: 5432, user: 'backup' });
    expect(source.leader?.member.name).toBe('pg1');
  });

  it('from replica: a "replica" that answers as a primary is not used', async () => {
    await expect(
      resolveBackupSource(
        { patroni: [], etcd: [], namespace: '/service', requestTimeoutMs: 1000 },
        { from: 'replica', waitMs: 0, readers: [reader('http://p1:8008', [view('pg1')])], probe: async () => false },
      ),
    ).rejects.toThrow(/listed as a replica but is not in recovery/);
  });
});
