import { describe, expect, it } from 'vitest';
import { RepositoryError, UsageError } from '../../../src/errors.js';
import { chooseEtcdSnapshot, type EtcdSnapshotCatalog } from '../../../src/etcd/catalog.js';
import {
  EtcdSnapshotManifestSchema,
  parseEtcdSnapshotManifest,
  serializeEtcdSnapshotManifest,
  type EtcdSnapshotManifest,
} from '../../../src/etcd/manifest.js';

function manifest(overrides: Partial<EtcdSnapshotManifest> = {}): EtcdSnapshotManifest {
  return EtcdSnapshotManifestSchema.parse({
    format: 1,
    snapshotId: '20261123T125304Z',
    cluster: 'main',
    startTime: '2026-11-23T12:53:04.120Z',
    stopTime: '2026-11-23T12:53:05.002Z',
    revision: 4242,
    totalKeys: 97,
    member: { name: 'etcd-1', id: 'bdae9bbc11dd390d', endpoint: 'https://10.0.0.1:2379' },
    etcdClusterId: 'd1cfaf999eb97a2a',
    etcdVersion: '3.4.23',
    dbSize: 98304,
    object: 'snapshot.db.zst',
    compression: { algorithm: 'zstd', level: 3 },
    bytes: 98336,
    storedBytes: 5120,
    sha256: 'a'.repeat(64),
    snapshotSha256: 'b'.repeat(64),
    databaseSha256: 'c'.repeat(64),
    pgdrVersion: '0.1.0',
    ...overrides,
  });
}

const where = { snapshotId: '20261123T125304Z', cluster: 'main' };
const raw = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('etcd snapshot manifest', () => {
  it('round-trips through serialize and parse', () => {
    const m = manifest();
    expect(parseEtcdSnapshotManifest(serializeEtcdSnapshotManifest(m), where)).toEqual(m);
  });

  it('ignores fields a newer pgdr added', () => {
    expect(parseEtcdSnapshotManifest(raw({ ...manifest(), somethingNew: true }), where)).toEqual(manifest());
  });

  it.each([
    ['a missing revision', { revision: undefined }, /revision/],
    ['a negative revision', { revision: -1 }, /revision/],
    ['an uppercase sha256', { sha256: 'A'.repeat(64) }, /sha256: expected a lowercase hex sha256/],
    ['a short snapshotSha256', { snapshotSha256: 'ab' }, /snapshotSha256/],
    ['a decimal member id', { member: { name: 'm', id: '13668033151171901709', endpoint: 'x' } }, /member\.id/],
    ['another object name', { object: 'snapshot.db' }, /object/],
    ['a time without zone', { startTime: '2026-11-23T12:53:04' }, /startTime/],
    ['format 2', { format: 2 }, /format/],
    ['zero stored bytes', { storedBytes: 0 }, /storedBytes/],
  ])('refuses %s, naming the field', (_what, change, message) => {
    const bad = { ...manifest(), ...change };
    expect(() => parseEtcdSnapshotManifest(raw(bad), where)).toThrow(RepositoryError);
    expect(() => parseEtcdSnapshotManifest(raw(bad), where)).toThrow(message);
  });

  it('refuses text that is not JSON', () => {
    expect(() => parseEtcdSnapshotManifest(Buffer.from('{"format": 1,'), where)).toThrow(/not valid JSON/);
  });

  it('refuses a manifest found under another snapshot id or cluster', () => {
    expect(() => parseEtcdSnapshotManifest(raw(manifest()), { snapshotId: '20261124T000000Z', cluster: 'main' })).toThrow(/edited by hand|names snapshot/);
    expect(() => parseEtcdSnapshotManifest(raw(manifest()), { snapshotId: '20261123T125304Z', cluster: 'other' })).toThrow(/of cluster main/);
  });

  it('refuses to serialize an invalid manifest', () => {
    expect(() => serializeEtcdSnapshotManifest({ ...manifest(), revision: 1.5 })).toThrow();
  });
});

describe('chooseEtcdSnapshot', () => {
  const catalog: EtcdSnapshotCatalog = {
    complete: [manifest({ snapshotId: '20261121T000000Z' }), manifest({ snapshotId: '20261122T000000Z' })],
    incomplete: [{ snapshotId: '20261123T000000Z', objectCount: 1, storedBytes: 10, lastModified: new Date() }],
    invalid: [{ snapshotId: '20261120T000000Z', problem: 'manifest of etcd snapshot 20261120T000000Z is invalid: revision' }],
  };

  it('latest is the newest complete snapshot, never an incomplete one', () => {
    expect(chooseEtcdSnapshot(catalog, 'latest', 'repo').snapshotId).toBe('20261122T000000Z');
  });

  it('an id picks that complete snapshot', () => {
    expect(chooseEtcdSnapshot(catalog, '20261121T000000Z', 'repo').snapshotId).toBe('20261121T000000Z');
  });

  it('refuses incomplete, invalid, unknown and malformed ids, and an empty repository', () => {
    expect(() => chooseEtcdSnapshot(catalog, '20261123T000000Z', 'repo')).toThrow(/incomplete/);
    expect(() => chooseEtcdSnapshot(catalog, '20261120T000000Z', 'repo')).toThrow(RepositoryError);
    expect(() => chooseEtcdSnapshot(catalog, '20261119T000000Z', 'repo')).toThrow(UsageError);
    expect(() => chooseEtcdSnapshot(catalog, 'yesterday', 'repo')).toThrow(/not a snapshot id/);
    expect(() => chooseEtcdSnapshot({ complete: [], incomplete: [], invalid: [] }, 'latest', 'repo')).toThrow(/no complete etcd snapshot/);
  });
});
