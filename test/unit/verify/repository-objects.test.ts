import { describe, expect, it } from 'vitest';
import { classifyObject, type RepositoryManifests } from '../../../src/verify/repository-objects.js';
import { layout } from './fixtures.js';

const manifests: RepositoryManifests = {
  backups: new Map([
    ['20240503T020000Z', { state: 'complete', objectNames: new Set(['base.tar.zst']) }],
    ['20240504T020000Z', { state: 'invalid' }],
    ['20240505T020000Z', { state: 'incomplete' }],
  ]),
  etcdSnapshots: new Map([
    ['20240503T030000Z', { state: 'complete', objectNames: new Set(['snapshot.db.zst']) }],
    ['20240504T030000Z', { state: 'incomplete' }],
  ]),
};
const role = (key: string) => classifyObject(key, layout, manifests);

describe('classifyObject', () => {
  it('knows every object pgdr writes', () => {
    expect(role('main/cluster.json')).toBe('cluster-info');
    expect(role('main/backups/20240503T020000Z/manifest.json')).toBe('backup-manifest');
    expect(role('main/backups/20240503T020000Z/base.tar.zst')).toBe('backup-object');
    expect(role('main/wal/00000001/000000010000000000000003.zst')).toBe('wal');
    expect(role('main/wal/00000001/000000010000000000000003.partial.zst')).toBe('wal');
    expect(role('main/wal/00000002/00000002.history.zst')).toBe('wal');
    expect(role('main/wal/00000001/000000010000000000000003.00000028.backup.zst')).toBe('wal');
    expect(role('main/etcd/20240503T030000Z/manifest.json')).toBe('etcd-manifest');
    expect(role('main/etcd/20240503T030000Z/snapshot.db.zst')).toBe('etcd-object');
    expect(role('main/drills/20240503T040000Z.json')).toBe('drill-report');
    expect(role('main/locks/backup.json')).toBe('lock');
  });

  it('leaves the objects of invalid and incomplete backups to their own reports', () => {
    expect(role('main/backups/20240504T020000Z/manifest.json')).toBe('invalid-backup-object');
    expect(role('main/backups/20240504T020000Z/base.tar.zst')).toBe('invalid-backup-object');
    expect(role('main/backups/20240505T020000Z/base.tar.zst')).toBe('incomplete-backup-object');
    // Listed, but no manifest was seen: a backup that started after the catalog was read.
    expect(role('main/backups/20240506T020000Z/base.tar.zst')).toBe('incomplete-backup-object');
    expect(role('main/etcd/20240504T030000Z/snapshot.db.zst')).toBe('incomplete-etcd-object');
  });

  it('calls everything else foreign', () => {
    for (const key of [
      'main/notes.txt',
      'main/backups/20240503T020000Z/extra.tar.zst',
      'main/backups/20240503T020000Z/sub/base.tar.zst',
      'main/backups/latest/base.tar.zst',
      'main/backups/readme',
      'main/wal/00000001/000000010000000000000003',
      'main/wal/00000001/000000020000000000000003.zst',
      'main/wal/00000001/garbage.zst',
      'main/wal/000000010000000000000003.zst',
      'main/etcd/snapshot-1/snapshot.db.zst',
      'main/etcd/20240503T030000Z/snapshot.db',
      'main/drills/latest.json',
      'main/locks/backup.txt',
      'main/something/else',
      'other/cluster.json',
    ]) {
      expect(role(key), key).toBe('foreign');
    }
  });
});
