import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { archivedWalPosition } from '../../../src/health/sources.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectInfo, ObjectStore } from '../../../src/storage/object-store.js';

/**
 * Where the archive stands against the server, read from a real file repository. The store is wrapped only to
 * count the keys it lists: the search must not read the whole archive.
 */
const layout = new RepositoryLayout('main');
const SIZE = 16 * 1024 * 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function seg(timeline: number, n: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}${Math.floor(n / 256).toString(16).toUpperCase().padStart(8, '0')}${(n % 256).toString(16).toUpperCase().padStart(8, '0')}`;
}

async function repository(names: string[]): Promise<{ store: ObjectStore; listed: () => number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-health-sources-'));
  dirs.push(dir);
  const fs = createFsStore({ root: dir });
  for (let i = 0; i < names.length; i += 64) {
    await Promise.all(names.slice(i, i + 64).map((name) => fs.put(layout.walObject(name), { kind: 'buffer', data: Buffer.from(name) })));
  }
  let listed = 0;
  const counting: ObjectStore = {
    location: fs.location,
    put: (key, body, options) => fs.put(key, body, options),
    get: (key, options) => fs.get(key, options),
    getBuffer: (key) => fs.getBuffer(key),
    head: (key) => fs.head(key),
    delete: (keys) => fs.delete(keys),
    close: () => fs.close(),
    listPrefixes: (prefix) => fs.listPrefixes(prefix),
    listPendingWrites: (prefix) => fs.listPendingWrites(prefix),
    abortPendingWrite: (write) => fs.abortPendingWrite(write),
    list: (prefix, options) => ({
      async *[Symbol.asyncIterator](): AsyncGenerator<ObjectInfo> {
        for await (const info of fs.list(prefix, options)) {
          listed++;
          yield info;
        }
      },
    }),
  };
  return { store: counting, listed: () => listed };
}

const range = (timeline: number, from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => seg(timeline, from + i));
const position = (store: ObjectStore, current: string) => archivedWalPosition(store, layout, { currentWalFile: current, walSegmentSize: SIZE });
const names = (p: Awaited<ReturnType<typeof position>>) => ({ newest: p.newest?.name ?? null, ahead: p.ahead?.name ?? null });

describe('archivedWalPosition', () => {
  it('finds the newest segment below the server from just before it, not by listing the archive', async () => {
    const repo = await repository([...range(1, 1, 600), `${seg(1, 5)}.00000028.backup`]);
    expect(names(await position(repo.store, seg(1, 601)))).toEqual({ newest: seg(1, 600), ahead: null });
    expect(repo.listed()).toBeLessThanOrEqual(64);
  });

  it('looks deeper while nothing is found below the server (a lagging archive), across log ids', async () => {
    const repo = await repository(range(1, 1, 2500));
    // 900 segments behind: the first look (64 below) finds nothing, the second (1024 below) finds 2376..2500.
    expect(names(await position(repo.store, seg(1, 3400)))).toEqual({ newest: seg(1, 2500), ahead: null });
    expect(repo.listed()).toBe(125);
    expect(names(await position((await repository([])).store, seg(1, 10)))).toEqual({ newest: null, ahead: null });
  });

  it('flags a segment at or past the one the server writes on its own timeline', async () => {
    const repo = await repository(range(1, 1, 310));
    expect(names(await position(repo.store, seg(1, 301)))).toEqual({ newest: seg(1, 300), ahead: seg(1, 310) });
    expect(names(await position(repo.store, seg(1, 310)))).toEqual({ newest: seg(1, 309), ahead: seg(1, 310) });
  });

  it('after a failover counts from the new timeline and flags an old primary only once it writes past the server', async () => {
    // Timeline 2 began in segment 10; the old timeline's copy of segment 10 was archived before the switch.
    const failover = [...range(1, 1, 10), '00000002.history', ...range(2, 10, 12)];
    expect(names(await position((await repository(failover)).store, seg(2, 13)))).toEqual({ newest: seg(2, 12), ahead: null });
    expect(names(await position((await repository([...failover, seg(1, 13)])).store, seg(2, 13)))).toEqual({ newest: seg(2, 12), ahead: null });
    expect(names(await position((await repository([...failover, ...range(1, 13, 14)])).store, seg(2, 13)))).toEqual({
      newest: seg(2, 12),
      ahead: seg(1, 14),
    });
    // Right after the switch the new timeline has no segment yet: the old one's newest counts.
    expect(names(await position((await repository([...range(1, 1, 9), '00000002.history'])).store, seg(2, 10)))).toEqual({ newest: seg(1, 9), ahead: null });
  });

  it('flags WAL of a newer timeline than the server is on', async () => {
    const repo = await repository([...range(1, 1, 20), '00000002.history']);
    expect(names(await position(repo.store, seg(1, 21)))).toEqual({ newest: seg(1, 20), ahead: '00000002.history' });
  });
});
