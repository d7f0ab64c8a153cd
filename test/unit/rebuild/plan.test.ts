import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { planEtcdRestore } from '../../../src/etcd/restore-plan.js';
import { parseRecoveryTarget } from '../../../src/postgres/recovery-target.js';
import { parsePatroniConfig } from '../../../src/rebuild/patroni-config.js';
import { fillTemplate, formatRebuildPlan, planRebuild, targetArgs, type RebuildRequest } from '../../../src/rebuild/plan.js';
import { memberYaml } from './fixtures.js';

const members = ['pg1', 'pg2', 'pg3'].map((n) => parsePatroniConfig(memberYaml(n), `/etc/patroni/${n}.yml`));
const etcdRestore = planEtcdRestore(
  { members: 'e1=/var/lib/etcd/e1,e2=/var/lib/etcd/e2', initialCluster: 'e1=http://10.0.0.11:2380,e2=http://10.0.0.12:2380', initialClusterToken: 'tok' },
  '/',
);

function request(overrides: Partial<RebuildRequest> = {}): RebuildRequest {
  return {
    members,
    target: parseRecoveryTarget({ targetTime: '2026-11-23T12:00:00Z' }),
    backup: { backupId: '20261123T100000Z', stopTime: '2026-11-23T10:05:00Z', timeline: 1, reason: 'newest before the target' },
    newestBackupId: '20261123T100000Z',
    etcd: { mode: 'snapshot', snapshotId: '20261123T110000Z', revision: 42, restore: etcdRestore, clientUrls: { e1: 'http://10.0.0.11:2379', e2: 'http://10.0.0.12:2379' } },
    start: 'run',
    pgdr: ['/usr/bin/node', '/opt/pgdr/bin/pgdr'],
    repositoryArgs: ['--repo', 's3://b/p', '--cluster', 'main'],
    ...overrides,
  };
}

describe('planRebuild', () => {
  it('numbers the steps: etcd restore, start, clear the scope, configs, leader, replicas, status', () => {
    const { plan } = planRebuild(request());
    expect(plan.steps.map((s) => [s.number, s.action, s.manual])).toEqual([
      [1, 'restore-etcd', false],
      [2, 'start-etcd', false],
      [3, 'clear-scope', false],
      [4, 'write-configs', false],
      [5, 'start-leader', false],
      [6, 'start-replicas', false],
      [7, 'report-status', false],
    ]);
    expect(plan).toMatchObject({ scope: 'main', namespace: '/service', leader: 'pg1', backupId: '20261123T100000Z', replicasFrom: 'repository', manual: false, notes: [] });
    expect(plan.members.map((m) => [m.name, m.role])).toEqual([['pg1', 'leader'], ['pg2', 'replica'], ['pg3', 'replica']]);
    expect(plan.members[0]).toMatchObject({
      configFile: '/var/lib/postgresql/15/patroni-pg1.pgdr-rebuild.yml',
      pidFile: '/var/lib/postgresql/15/patroni-pg1.pgdr-rebuild.pid',
      logFile: '/var/lib/postgresql/15/patroni-pg1.pgdr-rebuild.log',
      startCommand: ['patroni', '/var/lib/postgresql/15/patroni-pg1.pgdr-rebuild.yml'],
      detached: true,
    });
    expect(plan.etcd.endpoints).toEqual(['http://10.0.0.11:2379', 'http://10.0.0.12:2379']);
    expect(plan.etcd.members[0]?.startCommand).toEqual([
      'etcd', '--name', 'e1', '--data-dir', '/var/lib/etcd/e1',
      '--listen-client-urls', 'http://10.0.0.11:2379', '--advertise-client-urls', 'http://10.0.0.11:2379',
      '--listen-peer-urls', 'http://10.0.0.11:2380', '--initial-advertise-peer-urls', 'http://10.0.0.11:2380',
      '--initial-cluster', 'e1=http://10.0.0.11:2380,e2=http://10.0.0.12:2380', '--initial-cluster-token', 'tok',
    ]);
    expect(plan.steps[2]?.title).toContain('/service/main/');
    const text = formatRebuildPlan(plan);
    expect(text).toMatch(/^rebuild of Patroni cluster main/);
    expect(text).toContain('\n5. start pg1: Patroni bootstraps it by point-in-time restore of backup 20261123T100000Z to time 2026-11-23 12:00:00+00:00, then it leads on a new timeline');
  });

  it('pins the backup and the target in the bootstrap command and keeps passwords out of the plan', () => {
    const { plan, configs } = planRebuild(request());
    const bootstrap = (configs.pg1?.bootstrap as { pgdr: { command: string } }).pgdr.command;
    expect(bootstrap).toBe('/usr/bin/node /opt/pgdr/bin/pgdr patroni bootstrap --repo s3://b/p --cluster main --target-time \'2026-11-23 12:00:00+00:00\' --backup-id 20261123T100000Z');
    const replica = (configs.pg2?.postgresql as { pgdr: { command: string }; recovery_conf: { restore_command: string } });
    expect(replica.pgdr.command).toBe('/usr/bin/node /opt/pgdr/bin/pgdr patroni create-replica --repo s3://b/p --cluster main');
    expect(replica.recovery_conf.restore_command).toBe('/usr/bin/node /opt/pgdr/bin/pgdr wal fetch %f %p --abort-recovery-on-error --repo s3://b/p --cluster main');
    expect(JSON.stringify(plan)).not.toContain('secret');
    expect(Object.keys(configs)).toEqual(['pg1', 'pg2', 'pg3']);
  });

  it('gives every member\'s restore the --tablespace-map pairs of the rebuild', () => {
    const { configs } = planRebuild(request({ tablespaceMap: ['ts1=/data/ts1'] }));
    expect((configs.pg1?.bootstrap as { pgdr: { command: string } }).pgdr.command).toMatch(/ --backup-id 20261123T100000Z --tablespace-map ts1=\/data\/ts1$/);
    expect((configs.pg2?.postgresql as { pgdr: { command: string } }).pgdr.command).toMatch(/create-replica --repo s3:\/\/b\/p --cluster main --tablespace-map ts1=\/data\/ts1$/);
  });

  it('clones replicas from the leader when a newer backup than the target exists (it lies past the fork)', () => {
    const { plan, configs } = planRebuild(request({ newestBackupId: '20261123T130000Z' }));
    expect(plan.replicasFrom).toBe('leader');
    expect((configs.pg2?.postgresql as { create_replica_methods: string[] }).create_replica_methods).toEqual(['basebackup']);
    expect(plan.notes.join('\n')).toContain('20261123T130000Z');
  });

  it('with --etcd-snapshot none only clears the scope in the given (or the configs\') etcd', () => {
    const { plan, configs } = planRebuild(request({ etcd: { mode: 'existing', endpoints: [] } }));
    expect(plan.steps.map((s) => s.action)).toEqual(['clear-scope', 'write-configs', 'start-leader', 'start-replicas', 'report-status']);
    expect(plan.etcd.endpoints).toEqual(['http://10.0.0.11:2379', 'http://10.0.0.12:2379']);
    expect(configs.pg1?.etcd3).toEqual({ hosts: ['10.0.0.11:2379', '10.0.0.12:2379'] });

    const moved = planRebuild(request({ etcd: { mode: 'existing', endpoints: ['http://10.9.9.9:2379'] } }));
    expect(moved.configs.pg1?.etcd3).toEqual({ hosts: ['10.9.9.9:2379'], protocol: 'http' });
    expect(moved.plan.notes[0]).toContain('the rebuilt cluster uses http://10.9.9.9:2379');
  });

  it('with --no-start marks the starting steps as the operator\'s, with the commands to run', () => {
    const { plan } = planRebuild(request({ start: 'manual' }));
    expect(plan.manual).toBe(true);
    expect(plan.steps.filter((s) => !s.manual).map((s) => s.action)).toEqual(['restore-etcd', 'write-configs']);
    expect(plan.steps.find((s) => s.action === 'clear-scope')?.details.join('\n')).toContain('etcdctl --endpoints http://10.0.0.11:2379,http://10.0.0.12:2379 del --prefix /service/main/');
    expect(formatRebuildPlan(plan)).toContain('[you] start pg1');
  });

  it('fills start templates instead of detached children', () => {
    const { plan } = planRebuild(request({ patroniStartTemplate: 'systemctl start patroni@{name}', etcdStartTemplate: 'systemctl start etcd-{name}' }));
    expect(plan.members[1]).toMatchObject({ startCommand: ['systemctl', 'start', 'patroni@pg2'], detached: false });
    expect(plan.etcd.members[1]).toMatchObject({ startCommand: ['systemctl', 'start', 'etcd-e2'], detached: false });
    expect(() => planRebuild(request({ patroniStartTemplate: 'start {nope}' }))).toThrow(/--start-command uses \{nope\}/);
  });

  it('a single member plans no replica step', () => {
    const { plan } = planRebuild(request({ members: [members[0]!] }));
    expect(plan.steps.map((s) => s.action)).not.toContain('start-replicas');
  });

  it.each<[string, () => Partial<RebuildRequest>, RegExp]>([
    ['no members', () => ({ members: [] }), /needs the members' Patroni configs/],
    ['scopes that disagree', () => ({ members: [members[0]!, parsePatroniConfig(memberYaml('pg2', { scope: 'other' }), '/etc/patroni/pg2.yml')] }), /disagree on scope: \/etc\/patroni\/pg1\.yml says main, \/etc\/patroni\/pg2\.yml says other/],
    ['namespaces that disagree', () => ({ members: [members[0]!, parsePatroniConfig(memberYaml('pg2', { namespace: '/x/' }), 'b.yml')] }), /disagree on namespace/],
    ['a member twice', () => ({ members: [members[0]!, members[0]!] }), /same member name pg1/],
    ['a shared data_dir', () => ({ members: [members[0]!, parsePatroniConfig(memberYaml('pg2', { postgresql: { data_dir: '/var/lib/postgresql/15/pg1' } }), 'b.yml')] }), /same data_dir/],
    ['nested data dirs', () => ({ members: [members[0]!, parsePatroniConfig(memberYaml('pg2', { postgresql: { data_dir: '/var/lib/postgresql/15/pg1/x' } }), 'b.yml')] }), /lies inside/],
    ['an etcd member left out', () => ({ etcd: { mode: 'snapshot', snapshotId: 's', revision: 1, restore: { ...etcdRestore, notRestored: ['e3'] }, clientUrls: { e1: 'http://a:1', e2: 'http://b:1' } } }), /leaves out e3/],
    ['an etcd member without a client URL', () => ({ etcd: { mode: 'snapshot', snapshotId: 's', revision: 1, restore: etcdRestore, clientUrls: { e1: 'http://a:1' } } }), /no client URL for etcd member e2/],
    ['a client URL for an unknown member', () => ({ etcd: { mode: 'snapshot', snapshotId: 's', revision: 1, restore: etcdRestore, clientUrls: { e1: 'http://a:1', e2: 'http://b:1', e9: 'http://c:1' } } }), /names e9/],
  ])('refuses %s', (_, overrides, message) => {
    expect(() => planRebuild(request(overrides()))).toThrow(UsageError);
    expect(() => planRebuild(request(overrides()))).toThrow(message);
  });
});

describe('targetArgs and fillTemplate', () => {
  it('turns every target kind into patroni bootstrap flags', () => {
    expect(targetArgs(parseRecoveryTarget({ target: 'latest' }))).toEqual(['--target', 'latest']);
    expect(targetArgs(parseRecoveryTarget({ targetLsn: '0/3000060' }))).toEqual(['--target-lsn', '0/3000060']);
    expect(targetArgs(parseRecoveryTarget({ targetName: 'before-upgrade' }))).toEqual(['--target-name', 'before-upgrade']);
    expect(targetArgs(parseRecoveryTarget({ targetTime: '2026-11-23 12:00:00+01' }))).toEqual(['--target-time', '2026-11-23 12:00:00+01:00']);
  });

  it('splits templates into words without a shell', () => {
    expect(fillTemplate('ssh {name} systemctl start patroni', { name: 'pg1' }, '--start-command')).toEqual(['ssh', 'pg1', 'systemctl', 'start', 'patroni']);
    expect(() => fillTemplate('  ', {}, '--start-command')).toThrow(/is empty/);
  });
});
