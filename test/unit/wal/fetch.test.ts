import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError, RepositoryError } from '../../../src/errors.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';
import { zstdCompressBuffer } from '../../../src/stream/zstd-buffer.js';
import { fetchWal, type WalFetchOptions } from '../../../src/wal/fetch.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-fetch-'));
  dirs.push(dir);
  return dir;
}

const layout = new RepositoryLayout('c1');
const HISTORY = '00000002.history';

function failing(store: ObjectStore): ObjectStore {
  const broken: ObjectStore = Object.create(store);
  broken.get = () => Promise.reject(new RepositoryError('cannot reach the S3 endpoint http://b2 (ECONNREFUSED during get)', 'start it'));
  return broken;
}

async function setup() {
  const [a, b] = [createFsStore({ root: temp() }), createFsStore({ root: temp() })];
  await b.put(layout.walObject(HISTORY), { kind: 'buffer', data: await zstdCompressBuffer(Buffer.from('1\t0/3000000\tno recovery target specified\n'), { level: 3 }) });
  const lines: string[] = [];
  const options = (sources: { store: ObjectStore; label: string }[]): WalFetchOptions => ({
    sources,
    layout,
    lookahead: 0,
    spoolDir: temp(),
    repoUrl: 'file:///a file:///b',
    dataDirectory: temp(),
    log: (m) => lines.push(m),
  });
  return { a, b, lines, options, dest: join(temp(), 'RECOVERYHISTORY') };
}

describe('fetchWal over several repositories', () => {
  it('takes a file the first lacks from the next', async () => {
    const { a, b, options, dest } = await setup();
    await fetchWal(HISTORY, dest, options([{ store: a, label: 'a' }, { store: b, label: 'b' }]));
    expect(readFileSync(dest, 'utf8')).toContain('no recovery target specified');
  });

  it('names a repository that fails and asks the next', async () => {
    const { a, b, lines, options, dest } = await setup();
    await fetchWal(HISTORY, dest, options([{ store: failing(a), label: 'a' }, { store: b, label: 'b' }]));
    expect(readFileSync(dest, 'utf8')).toContain('no recovery target specified');
    expect(lines).toEqual([`${HISTORY}: repository a failed (cannot reach the S3 endpoint http://b2 (ECONNREFUSED during get)); asking the next`]);
  });

  it('is "not in the archive" only when every repository answered so; one that failed makes it that failure', async () => {
    const { a, b, options, dest } = await setup();
    await expect(fetchWal('00000003.history', dest, options([{ store: a, label: 'a' }, { store: b, label: 'b' }]))).rejects.toThrow(NotFoundError);
    await expect(fetchWal('00000003.history', dest, options([{ store: a, label: 'a' }, { store: failing(b), label: 'b' }]))).rejects.toThrow(RepositoryError);
  });
});
