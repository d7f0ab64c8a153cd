import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeRole, parseConnUrl, type ClusterMember, type ClusterView } from '../../../src/cluster/members.js';
import { chooseBackupSource, chooseLeader, chooseReplica } from '../../../src/cluster/select.js';

function member(name: string, over: Partial<ClusterMember> = {}): ClusterMember {
  return {
    name,
    role: 'replica',
    state: 'streaming',
    host: '127.0.0.1',
    port: 5432,
    apiUrl: null,
    timeline: 2,
    lagBytes: 0,
    tags: {},
    ...over,
  };
}

function leader(name = 'pg1', over: Partial<ClusterMember> = {}): ClusterMember {
  return member(name, { role: 'leader', state: 'running', lagBytes: null, ...over });
}

function view(members: ClusterMember[], over: Partial<ClusterView> = {}): ClusterView {
  const lead = members.find((m) => m.role === 'leader' || m.role === 'standby_leader');
  return { scope: 'main', source: { kind: 'patroni', endpoint: 'http://127.0.0.1:8008' }, leader: lead?.name ?? null, members, paused: false, ...over };
}

describe('normalizeRole', () => {
  it('understands the role names of Patroni 3 and 4', () => {
    expect(normalizeRole('master')).toBe('leader');
    expect(normalizeRole('primary')).toBe('leader');
    expect(normalizeRole('leader')).toBe('leader');
    expect(normalizeRole('standby_leader')).toBe('standby_leader');
    expect(normalizeRole('sync_standby')).toBe('sync_standby');
    expect(normalizeRole('quorum_standby')).toBe('sync_standby');
    expect(normalizeRole('replica')).toBe('replica');
    expect(normalizeRole('Replica')).toBe('replica');
    expect(normalizeRole('uninitialized')).toBe('unknown');
    expect(normalizeRole(undefined)).toBe('unknown');
  });
});

describe('parseConnUrl', () => {
  it('reads host and port from Patroni conn_url', () => {
    expect(parseConnUrl('postgres://10.0.0.5:5433/postgres')).toEqual({ host: '10.0.0.5', port: 5433 });
    expect(parseConnUrl('postgres://db1/postgres')).toEqual({ host: 'db1', port: 5432 });
    expect(parseConnUrl('postgres://[::1]:6000/postgres')).toEqual({ host: '::1', port: 6000 });
    expect(parseConnUrl(undefined)).toEqual({ host: null, port: null });
    expect(parseConnUrl('::not a url::')).toEqual({ host: null, port: null });
  });
});

describe('chooseLeader', () => {
  it('picks the running member that holds the leader key', () => {
    const choice = chooseLeader(view([member('pg2'), leader('pg1', { port: 6001 }), member('pg3')]));
    expect(choice).toMatchObject({ ok: true, member: { name: 'pg1', port: 6001 } });
  });

  it('with no leader (mid-failover) says so and that waiting may help', () => {
    expect(chooseLeader(view([member('pg2'), member('pg3')]))).toEqual({ ok: false, problem: 'the cluster has no leader', retryable: true });
  });

  it('waits for a leader that is still starting', () => {
    expect(chooseLeader(view([leader('pg1', { state: 'starting' })]))).toMatchObject({ ok: false, retryable: true, problem: expect.stringMatching(/starting/) });
  });

  it('refuses a standby cluster for good: its leader is itself a standby', () => {
    expect(chooseLeader(view([member('pg1', { role: 'standby_leader', state: 'running' })]))).toMatchObject({ ok: false, retryable: false });
  });

  it('refuses two leaders (a view caught between two DCS reads)', () => {
    expect(chooseLeader(view([leader('pg1'), leader('pg2')]))).toMatchObject({ ok: false, retryable: true });
  });

  it('refuses a leader without an address', () => {
    expect(chooseLeader(view([leader('pg1', { host: null })]))).toMatchObject({ ok: false, retryable: false });
  });

  it('falls back to the leader key when the roles are unknown', () => {
    const v = view([member('pg1', { role: 'unknown', state: 'running' })], { leader: 'pg1' });
    expect(chooseLeader(v)).toMatchObject({ ok: true, member: { name: 'pg1' } });
  });
});

describe('chooseReplica', () => {
  it('picks the least-lagged healthy replica', () => {
    const v = view([leader(), member('pg2', { lagBytes: 4096 }), member('pg3', { lagBytes: 128, role: 'sync_standby' }), member('pg4', { lagBytes: 9999 })]);
    expect(chooseReplica(v)).toMatchObject({ ok: true, member: { name: 'pg3' } });
  });

  it('accepts Patroni 3.0 replicas, which report state running', () => {
    expect(chooseReplica(view([leader(), member('pg2', { state: 'running' })]))).toMatchObject({ ok: true, member: { name: 'pg2' } });
  });

  it('skips replicas that are not following, lag unknown, on an old timeline, or too far behind', () => {
    const v = view([
      leader('pg1', { timeline: 3 }),
      member('a', { state: 'starting', timeline: 3 }),
      member('b', { lagBytes: null, timeline: 3 }),
      member('c', { timeline: 2 }),
      member('d', { lagBytes: 50_000_000, timeline: 3 }),
      member('e', { host: null, timeline: 3 }),
      member('f', { lagBytes: 10, timeline: 3 }),
    ]);
    expect(chooseReplica(v, { maxLagBytes: 16 * 1024 * 1024 })).toMatchObject({ ok: true, member: { name: 'f' } });
    const none = chooseReplica(view(v.members.filter((m) => m.name !== 'f')), { maxLagBytes: 16 * 1024 * 1024 });
    expect(none.ok).toBe(false);
    if (!none.ok) {
      expect(none.retryable).toBe(true);
      expect(none.problem).toMatch(/a: state starting/);
      expect(none.problem).toMatch(/b: lag unknown/);
      expect(none.problem).toMatch(/c: on timeline 2, the leader is on 3/);
      expect(none.problem).toMatch(/d: 50000000 bytes behind/);
      expect(none.problem).toMatch(/e: no PostgreSQL address/);
    }
  });

  it('needs a leader to finish the WAL of the backup', () => {
    expect(chooseReplica(view([member('pg2'), member('pg3')]))).toMatchObject({ ok: false, retryable: true, problem: expect.stringMatching(/no leader/) });
  });

  it('never picks the leader', () => {
    expect(chooseReplica(view([leader()]))).toMatchObject({ ok: false, problem: 'the cluster has no replica' });
  });

  it('breaks ties by the clonefrom tag, then by name', () => {
    expect(chooseReplica(view([leader(), member('b'), member('a')]))).toMatchObject({ ok: true, member: { name: 'a' } });
    expect(chooseReplica(view([leader(), member('a'), member('b', { tags: { clonefrom: true } })]))).toMatchObject({ ok: true, member: { name: 'b' } });
  });

  it('always returns a healthy replica with the smallest lag, whatever the order (property)', () => {
    const memberArb = fc.record({
      lag: fc.option(fc.integer({ min: 0, max: 1e9 }), { nil: null }),
      state: fc.constantFrom('running', 'streaming', 'starting', 'stopped', 'crashed'),
      timeline: fc.constantFrom(1, 2),
    });
    fc.assert(
      fc.property(fc.array(memberArb, { maxLength: 8 }), (specs) => {
        const members = specs.map((s, i) => member(`m${i}`, { lagBytes: s.lag, state: s.state, timeline: s.timeline }));
        const v = view([leader('lead', { timeline: 2 }), ...members]);
        const healthy = members.filter((m) => (m.state === 'running' || m.state === 'streaming') && m.lagBytes !== null && m.timeline === 2);
        const choice = chooseBackupSource(v, 'replica');
        if (healthy.length === 0) return !choice.ok;
        const min = Math.min(...healthy.map((m) => m.lagBytes as number));
        return choice.ok && healthy.includes(choice.member) && choice.member.lagBytes === min;
      }),
    );
  });
});
