import { describe, expect, it } from 'vitest';
import { defaultPolicy } from '../../../src/config/policy.js';
import { resolveSettingsFrom } from '../../../src/config/resolve-settings.js';
import { settingsFor } from '../../../src/cli/repository.js';
import { UsageError } from '../../../src/errors.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { keptBackupRetainUntil, lockedKind, lockHorizons, needsExtension, retentionAtWrite, withObjectLock } from '../../../src/repo/object-lock.js';
import type { ObjectStore, PutOptions } from '../../../src/storage/object-store.js';

const DAY = 86_400_000;
const layout = new RepositoryLayout('main');
const retention = defaultPolicy().retention; // 7 daily, 4 weekly, 12 monthly, 0 yearly; PITR window 30 days

describe('which keys are written under retention', () => {
  it.each([
    ['main/cluster.json', 'permanent'],
    ['main/backups/20240101T020000Z/base.tar.zst', 'backup'],
    ['main/backups/20240101T020000Z/manifest.json', 'backup'],
    ['main/wal/00000001/000000010000000000000003.zst', 'wal'],
    ['main/wal/00000001/000000010000000000000002.00000028.backup.zst', 'wal'],
    ['main/wal/00000002/00000002.history.zst', 'permanent'],
    ['main/etcd/20240101T021500Z/snapshot.db.zst', 'etcd'],
    ['main/drills/20240101T060000Z.json', 'permanent'],
    ['main/restore-points/before-migration.json', 'permanent'],
    ['main/locks/backup.json', null],
    ['main/state/store-probe.json', null],
    ['main/state/probe-0b1c', null],
    ['other/backups/20240101T020000Z/manifest.json', null],
  ])('%s: %s', (key, kind) => {
    expect(lockedKind(layout, key)).toBe(kind);
  });
});

describe('how long', () => {
  it('locks a new backup for what the policy guarantees it, WAL for the longest tier, etcd for its own longest tier', () => {
    expect(lockHorizons(retention)).toEqual({ backupMs: 30 * DAY, walMs: 12 * 31 * DAY, etcdMs: 12 * 31 * DAY, permanentMs: 12 * 31 * DAY });
    const now = new Date('2024-05-01T02:00:00Z');
    expect(retentionAtWrite('backup', lockHorizons(retention), { mode: 'compliance', marginMs: 7 * DAY }, now)).toEqual({
      mode: 'compliance',
      retainUntil: new Date('2024-06-07T02:00:00Z'),
    });
  });

  it('extends a kept backup to the end of what its tiers keep it for, plus the margin', () => {
    const settings = { mode: 'governance' as const, marginMs: DAY };
    const start = new Date('2024-04-30T02:00:00Z');
    const now = new Date('2024-05-10T04:00:00Z');
    // monthly 12: about twelve months past its start
    expect(keptBackupRetainUntil(['monthly 2024-04'], start, retention, settings, now)).toEqual(new Date(start.getTime() + 12 * 31 * DAY + DAY));
    // daily only: seven days past its start, which the write-time lock (the 30-day window) already covers
    expect(keptBackupRetainUntil(['daily 2024-04-30'], start, retention, settings, now)).toEqual(new Date(start.getTime() + 30 * DAY + DAY));
    expect(keptBackupRetainUntil(['newest'], start, retention, settings, now)).toEqual(new Date(now.getTime() + 30 * DAY + DAY));
  });

  it('extends only what falls short, and a moving target only once half of its lock is used up', () => {
    const wanted = new Date('2024-06-01T00:00:00Z');
    expect(needsExtension(undefined, wanted, 0)).toBe(true);
    expect(needsExtension(new Date('2024-05-31T00:00:00Z'), wanted, 0)).toBe(true);
    expect(needsExtension(new Date('2024-05-31T00:00:00Z'), wanted, 2 * DAY)).toBe(false);
    expect(needsExtension(new Date('2024-06-02T00:00:00Z'), wanted, 0)).toBe(false);
  });
});

describe('withObjectLock', () => {
  it('adds retention to the puts of keys that never change, and to nothing else', async () => {
    const puts: [string, PutOptions | undefined][] = [];
    const store = { location: 's3://b/p', put: async (key: string, _body: unknown, options?: PutOptions) => (puts.push([key, options]), { key, size: 0 }) } as unknown as ObjectStore;
    const now = new Date('2024-05-01T00:00:00Z');
    const locked = withObjectLock(store, layout, { mode: 'governance', marginMs: DAY }, async () => retention, () => now);
    await locked.put(layout.walObject('000000010000000000000003'), { kind: 'buffer', data: Buffer.alloc(0) }, { ifNoneMatch: true });
    await locked.put(layout.lock('backup'), { kind: 'buffer', data: Buffer.alloc(0) });
    expect(puts).toEqual([
      [layout.walObject('000000010000000000000003'), { ifNoneMatch: true, retention: { mode: 'governance', retainUntil: new Date(now.getTime() + 12 * 31 * DAY + DAY) } }],
      [layout.lock('backup'), {}],
    ]);
  });
});

describe('Object Lock settings', () => {
  it('are off by default, and read from flags, environment or config file', () => {
    expect(resolveSettingsFrom({ repo: 's3://b/p' }, {}, '/h', {}).objectLock).toBeUndefined();
    expect(resolveSettingsFrom({ repo: 's3://b/p' }, { PGDR_OBJECT_LOCK_MODE: 'governance' }, '/h', {}).objectLock).toEqual({ mode: 'governance', marginMs: 7 * DAY });
    expect(resolveSettingsFrom({ repo: 's3://b/p', objectLockMode: 'Compliance', objectLockMargin: '2d' }, {}, '/h', {}).objectLock).toEqual({ mode: 'compliance', marginMs: 2 * DAY });
    expect(resolveSettingsFrom({ repo: 's3://b/p' }, {}, '/h', { objectLockMode: 'off' }).objectLock).toBeUndefined();
  });

  it('refuses an unknown mode, and Object Lock on a local directory', () => {
    expect(() => resolveSettingsFrom({ repo: 's3://b/p', objectLockMode: 'strict' }, {}, '/h', {})).toThrow(/must be governance, compliance or off/);
    expect(() => resolveSettingsFrom({ repo: 'file:///r', objectLockMode: 'governance' }, {}, '/h', {})).toThrow(UsageError);
    expect(() => resolveSettingsFrom({ repo: 'file:///r', objectLockMode: 'governance' }, {}, '/h', {})).toThrow(/is a local directory/);
  });

  it('each configured repository may have its own, or turn the global one off (an estate that locks only its off-site copy)', () => {
    const repositories = [
      { name: 'r2', url: 's3://wal/prod', objectLockMode: 'off' as const },
      { name: 'b2', url: 's3://offsite/prod', objectLockMode: 'compliance' as const, objectLockMargin: '3d' },
      { name: 'spare', url: 's3://spare/prod' },
      { name: 'local', url: 'file:///var/backups/pgdr', objectLockMode: 'off' as const },
    ];
    const settings = resolveSettingsFrom({}, { PGDR_OBJECT_LOCK_MODE: 'governance' }, '/h', { repositories });
    const byName = (name: string) => settingsFor(settings, settings.repositories.find((r) => r.name === name)!);
    expect(byName('r2').objectLock).toBeUndefined();
    expect(byName('b2').objectLock).toEqual({ mode: 'compliance', marginMs: 3 * DAY });
    expect(byName('spare').objectLock).toEqual({ mode: 'governance', marginMs: 7 * DAY });
    expect(byName('local').objectLock).toBeUndefined();
  });

  it('refuses a repository whose own or inherited Object Lock cannot apply, by name', () => {
    expect(() => resolveSettingsFrom({}, { PGDR_OBJECT_LOCK_MODE: 'governance' }, '/h', { repositories: [{ name: 'local', url: 'file:///r' }] })).toThrow(
      /the repository local is a local directory/,
    );
    expect(() => resolveSettingsFrom({}, {}, '/h', { repositories: [{ name: 'b2', url: 's3://b/p', objectLockMargin: '2d' }] })).toThrow(/objectLockMargin is set without objectLockMode/);
  });
});
