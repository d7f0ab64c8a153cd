import { describe, expect, it } from 'vitest';
import { buildClusterStatus, formatClusterStatus } from '../../../src/cli/cluster.js';
import type { ClusterView } from '../../../src/cluster/members.js';

const view: ClusterView = {
  scope: 'main',
  source: { kind: 'patroni', endpoint: 'http://10.0.0.1:8008' },
  leader: 'pg1',
  paused: false,
  members: [
    { name: 'pg1', role: 'leader', state: 'running', host: '10.0.0.1', port: 5432, apiUrl: null, timeline: 2, lagBytes: null, tags: {} },
    { name: 'pg2', role: 'replica', state: 'streaming', host: '10.0.0.2', port: 5432, apiUrl: null, timeline: 2, lagBytes: 16384, tags: {} },
    { name: 'pg3', role: 'replica', state: 'starting', host: '10.0.0.3', port: 5432, apiUrl: null, timeline: null, lagBytes: null, tags: {} },
  ],
};

describe('cluster status', () => {
  it('names the backup sources and lists every member', () => {
    const status = buildClusterStatus(view, [
      { kind: 'patroni', endpoint: 'http://10.0.0.9:8008', ok: false, error: 'Patroni at http://10.0.0.9:8008 is unreachable: ECONNREFUSED' },
      { kind: 'patroni', endpoint: 'http://10.0.0.1:8008', ok: true },
    ]);
    expect(status.backupSource.leader).toMatchObject({ member: 'pg1', host: '10.0.0.1', port: 5432 });
    expect(status.backupSource.replica).toMatchObject({ member: 'pg2' });
    expect(status.problems).toEqual(['Patroni at http://10.0.0.9:8008 is unreachable: ECONNREFUSED']);
    const text = formatClusterStatus(status);
    expect(text.split('\n')).toEqual([
      'cluster main, as seen by patroni http://10.0.0.1:8008',
      'member  role     state      address        timeline  lag',
      'pg1     leader   running    10.0.0.1:5432  2',
      'pg2     replica  streaming  10.0.0.2:5432  2         16.0 KiB',
      'pg3     replica  starting   10.0.0.3:5432  -         unknown',
      'backup now would read from: pg1 (10.0.0.1:5432)',
      'backup now --from replica would read from: pg2 (10.0.0.2:5432)',
      'unreachable: patroni http://10.0.0.9:8008: Patroni at http://10.0.0.9:8008 is unreachable: ECONNREFUSED',
    ]);
  });

  it('without a leader says why nothing can be backed up', () => {
    const status = buildClusterStatus({ ...view, leader: null, members: view.members.slice(1) }, []);
    expect(status.backupSource).toEqual({ leader: null, replica: null });
    expect(status.problems).toEqual([
      'backup from the leader: the cluster has no leader',
      'backup from a replica: the cluster has no leader to finish the WAL of a backup from a replica',
    ]);
    expect(formatClusterStatus(status)).toContain('backup now would read from: none');
  });

  it('with no answer at all', () => {
    expect(formatClusterStatus(buildClusterStatus(null, []))).toBe('no Patroni or etcd endpoint answered');
  });
});
