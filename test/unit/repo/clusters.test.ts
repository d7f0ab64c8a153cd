import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listClusters } from '../../../src/repo/clusters.js';
import { createFsStore } from '../../../src/storage/fs-store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('listClusters', () => {
  it('names the first-level entries that hold cluster.json, backups/ or wal/, in key order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-clusters-'));
    dirs.push(dir);
    const store = createFsStore({ root: dir });
    const put = (key: string) => store.put(key, { kind: 'buffer', data: Buffer.from(key) });
    await put('orders/cluster.json');
    await put('billing/wal/00000001/000000010000000000000001.zst');
    await put('auth/backups/20240503T090000Z/base.tar.zst');
    // Not clusters: a stray file, another tool's directory, a name pgdr would refuse, only drill reports.
    await put('README.md');
    await put('pgbackrest/archive/x');
    await put('.hidden/wal/00000001/000000010000000000000001.zst');
    await put('reports-only/drills/20240503T090000Z.json');
    expect(await listClusters(store)).toEqual(['auth', 'billing', 'orders']);
  });

  it('finds none in an empty repository', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-clusters-'));
    dirs.push(dir);
    expect(await listClusters(createFsStore({ root: join(dir, 'not-created-yet') }))).toEqual([]);
  });
});
