import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { acquireLock } from '../../../src/repo/lock.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';

const dirs: string[] = [];
function store(): ObjectStore {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-lock-'));
  dirs.push(dir);
  return createFsStore({ root: dir });
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const layout = new RepositoryLayout('c1');

describe('repository locks', () => {
  it('lets one holder in, refuses a second with who holds it, and frees on release', async () => {
    const s = store();
    const first = await acquireLock(s, layout, 'backup', 'a base backup');
    const refused = acquireLock(s, layout, 'backup', 'expire');
    await expect(refused).rejects.toThrow(RepositoryError);
    await expect(refused).rejects.toThrow(/locked for a base backup by .* pid \d+/);
    await first.release();
    const second = await acquireLock(s, layout, 'backup', 'expire');
    await second.release();
    expect(await s.head(layout.lock('backup'))).toBeNull();
  });

  it('waits for a held lock when asked to', async () => {
    const s = store();
    const first = await acquireLock(s, layout, 'backup', 'a base backup');
    setTimeout(() => void first.release(), 300);
    const second = await acquireLock(s, layout, 'backup', 'expire', { waitMs: 5000, pollMs: 50 });
    await second.release();
  });

  it('takes over an expired lock and one whose holder on this host is gone', async () => {
    const s = store();
    const past = new Date(Date.now() - 3_600_000);
    await acquireLock(s, layout, 'backup', 'crashed', { ttlMs: 1000, now: () => past });
    const taken = await acquireLock(s, layout, 'backup', 'next');
    await taken.release();

    const host = (await import('node:os')).hostname();
    const dead = { id: 'x', purpose: 'killed backup', host, pid: 2 ** 22 + 12345, acquiredAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
    await s.put(layout.lock('backup'), { kind: 'buffer', data: Buffer.from(JSON.stringify(dead)) });
    const again = await acquireLock(s, layout, 'backup', 'next');
    await again.release();
  });

  it('reports the lock lost when the repository stops answering', async () => {
    const s = store();
    let failing = false;
    const flaky: ObjectStore = {
      ...s,
      location: s.location,
      put: (key, body, options) => (failing ? Promise.reject(new RepositoryError('cannot reach the store', 'retry')) : s.put(key, body, options)),
      getBuffer: (key) => (failing ? Promise.reject(new RepositoryError('cannot reach the store', 'retry')) : s.getBuffer(key)),
    };
    const lock = await acquireLock(flaky, layout, 'backup', 'a base backup', { refreshMs: 50 });
    failing = true;
    await expect(lock.lost).rejects.toThrow(/cannot reach the store/);
    await lock.release();
  });
});
