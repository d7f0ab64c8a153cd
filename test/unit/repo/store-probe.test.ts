import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseLockKeeper } from '../../../src/repo/lock-policy.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { conditionalWriteSupport, probeConditionalWrites, readStoreProbe, type StoreProbeRecord } from '../../../src/repo/store-probe.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';

/** A real local store with If-None-Match dropped: what an S3 server that ignores the header does to every put. */
function ignoringConditions(store: ObjectStore): ObjectStore & { puts: number } {
  const wrapped = Object.create(store) as ObjectStore & { puts: number };
  wrapped.puts = 0;
  wrapped.put = (key, body, options = {}) => {
    wrapped.puts++;
    return store.put(key, body, { ...options, ifNoneMatch: false });
  };
  return wrapped;
}

let root: string;
const layout = new RepositoryLayout('probe');
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'pgdr-unit-probe-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('probeConditionalWrites', () => {
  it('finds that a local directory honours conditional writes, records it, and leaves no scratch key', async () => {
    const store = createFsStore({ root });
    const record = await probeConditionalWrites(store, layout, new Date('2026-11-23T10:00:00Z'));
    expect(record).toMatchObject({ format: 1, conditionalWrites: 'honoured', probedAt: '2026-11-23T10:00:00.000Z', location: store.location });
    expect(await readStoreProbe(store, layout)).toEqual(record);
    const keys: string[] = [];
    for await (const info of store.list(layout.root)) keys.push(info.key);
    expect(keys).toEqual([layout.storeProbe()]);
  });

  it('finds that a store which replaces on a conditional put ignores conditional writes', async () => {
    const store = ignoringConditions(createFsStore({ root }));
    expect((await probeConditionalWrites(store, layout)).conditionalWrites).toBe('ignored');
  });
});

describe('conditionalWriteSupport', () => {
  it('uses a fresh record, and probes again once it is older than the interval or names another store', async () => {
    const store = createFsStore({ root });
    const first = await conditionalWriteSupport(store, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T10:00:00Z') });
    const counting = ignoringConditions(store);
    const again = await conditionalWriteSupport(counting, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T10:30:00Z') });
    expect(again).toEqual(first);
    expect(counting.puts).toBe(0);
    const later = await conditionalWriteSupport(counting, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T11:30:00Z') });
    expect(later.conditionalWrites).toBe('ignored');
    expect(later.probedAt).toBe('2026-11-23T11:30:00.000Z');
    const elsewhere = await conditionalWriteSupport(store, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T11:31:00Z'), identity: 'another endpoint' });
    expect(elsewhere).toMatchObject({ conditionalWrites: 'honoured', location: 'another endpoint' });
  });

  it('answers from the local cache without touching the store while it is fresh', async () => {
    const store = createFsStore({ root: join(root, 'repo') });
    const cacheFile = join(root, 'spool', 'probe', 'store-probe.json');
    await conditionalWriteSupport(store, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T10:00:00Z'), cacheFile });
    const unreachable = { ...store, getBuffer: () => Promise.reject(new Error('must not be read')), put: () => Promise.reject(new Error('must not be written')) } as ObjectStore;
    const cached = await conditionalWriteSupport(unreachable, layout, { intervalMs: 3_600_000, now: new Date('2026-11-23T10:10:00Z'), cacheFile });
    expect(cached.conditionalWrites).toBe('honoured');
  });
});

describe('chooseLockKeeper', () => {
  const record = (conditionalWrites: StoreProbeRecord['conditionalWrites']): StoreProbeRecord => ({
    format: 1,
    conditionalWrites,
    probedAt: '2026-11-23T10:00:00.000Z',
    location: 's3://b/p',
    pgdrVersion: '0.1.0',
  });
  it('keeps locks in the repository when the store honours conditional writes, whatever else is configured', () => {
    expect(chooseLockKeeper(record('honoured'), { etcdConfigured: true, acceptRisk: true })).toEqual({ kind: 'repository' });
  });
  it('moves locks to etcd, else accepts the risk only when told, else refuses', () => {
    expect(chooseLockKeeper(record('ignored'), { etcdConfigured: true, acceptRisk: false }).kind).toBe('etcd');
    expect(chooseLockKeeper(record('ignored'), { etcdConfigured: false, acceptRisk: true }).kind).toBe('repository-at-risk');
    expect(chooseLockKeeper(record('ignored'), { etcdConfigured: false, acceptRisk: false })).toEqual({ kind: 'refuse' });
  });
});
