import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { parseInitialCluster, planEtcdRestore } from '../../../src/etcd/restore-plan.js';

const cluster = 'm1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380';

describe('parseInitialCluster', () => {
  it('reads name=url pairs, a name repeating for a member with several peer URLs', () => {
    expect(parseInitialCluster('a=http://h1:2380,b=https://h2:2380,a=http://h1b:2380')).toEqual(
      new Map([
        ['a', ['http://h1:2380', 'http://h1b:2380']],
        ['b', ['https://h2:2380']],
      ]),
    );
  });

  it.each([
    ['', /empty entry/],
    ['m1=http://h:2380,', /empty entry/],
    ['http://h:2380', /not name=peerURL/],
    ['=http://h:2380', /not name=peerURL/],
    ['m1=h:2380', /not a peer URL|not a URL/],
    ['m1=http://h', /not a peer URL/],
    ['m1=ftp://h:2380', /not a peer URL/],
    ['m1=http://u:p@h:2380', /not a peer URL/],
    ['m1=http://h:2380/path', /not a peer URL/],
    ['m1=http://h:2380,m2=http://h:2380', /twice/],
  ])('refuses %j', (text, message) => {
    expect(() => parseInitialCluster(text)).toThrow(UsageError);
    expect(() => parseInitialCluster(text)).toThrow(message);
  });
});

describe('planEtcdRestore', () => {
  it('plans every member at once with --members, peer URLs from --initial-cluster, relative dirs from cwd', () => {
    const plan = planEtcdRestore(
      { members: 'm1=/data/m1,m2=rel/m2,m3=/data/m3', initialCluster: cluster, initialClusterToken: 'new-token' },
      '/work',
    );
    expect(plan).toEqual({
      initialCluster: cluster,
      initialClusterToken: 'new-token',
      members: [
        { name: 'm1', dataDir: '/data/m1', peerUrls: ['http://10.0.0.1:2380'] },
        { name: 'm2', dataDir: '/work/rel/m2', peerUrls: ['http://10.0.0.2:2380'] },
        { name: 'm3', dataDir: '/data/m3', peerUrls: ['http://10.0.0.3:2380'] },
      ],
      notRestored: [],
    });
  });

  it('plans one member with --name and --data-dir, and reports the members left to restore elsewhere', () => {
    const plan = planEtcdRestore({ name: 'm2', dataDir: '/data/m2/', initialCluster: cluster, initialClusterToken: 't' }, '/');
    expect(plan.members).toEqual([{ name: 'm2', dataDir: '/data/m2', peerUrls: ['http://10.0.0.2:2380'] }]);
    expect(plan.notRestored).toEqual(['m1', 'm3']);
  });

  it('accepts --initial-advertise-peer-urls that agree with --initial-cluster (normalised)', () => {
    const plan = planEtcdRestore(
      { name: 'm1', dataDir: '/d', initialAdvertisePeerUrls: 'http://10.0.0.1:2380/', initialCluster: cluster, initialClusterToken: 't' },
      '/',
    );
    expect(plan.members[0]?.peerUrls).toEqual(['http://10.0.0.1:2380']);
  });

  it.each([
    ['no --initial-cluster', { members: 'm1=/a' }, /needs --initial-cluster/],
    ['no token', { members: 'm1=/a', initialCluster: cluster, initialClusterToken: undefined }, /needs --initial-cluster-token/],
    ['a token with spaces', { members: 'm1=/a', initialCluster: cluster, initialClusterToken: 'a b' }, /not a plain token/],
    ['no members at all', { initialCluster: cluster }, /needs the members/],
    ['--members with --name', { members: 'm1=/a', name: 'm1', initialCluster: cluster }, /does not go with/],
    ['--name without --data-dir', { name: 'm1', initialCluster: cluster }, /both --name and --data-dir/],
    ['--data-dir without --name', { dataDir: '/a', initialCluster: cluster }, /both --name and --data-dir/],
    ['a name not in --initial-cluster', { name: 'm9', dataDir: '/a', initialCluster: cluster }, /does not list/],
    ['a --members name not in --initial-cluster', { members: 'm1=/a,x=/b', initialCluster: cluster }, /does not list/],
    ['a malformed --members entry', { members: 'm1', initialCluster: cluster }, /not name=dataDir/],
    ['an empty directory in --members', { members: 'm1=', initialCluster: cluster }, /not name=dataDir/],
    ['a member twice', { members: 'm1=/a,m1=/b', initialCluster: cluster }, /twice/],
    ['two members in one directory', { members: 'm1=/a,m2=/a/', initialCluster: cluster }, /share the data directory/],
    ['a directory inside another', { members: 'm1=/a,m2=/a/b', initialCluster: cluster }, /lies inside/],
    [
      'advertise URLs that differ',
      { name: 'm1', dataDir: '/a', initialAdvertisePeerUrls: 'http://10.0.0.9:2380', initialCluster: cluster },
      /differs from m1's peer URLs/,
    ],
  ])('refuses %s', (_what, request, message) => {
    const full = { initialClusterToken: 'tok', ...request };
    expect(() => planEtcdRestore(full, '/work')).toThrow(UsageError);
    expect(() => planEtcdRestore(full, '/work')).toThrow(message);
  });
});
