import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import { zstdDecompressBuffer } from '../../../src/stream/zstd.js';
import { runPusher } from '../../../src/wal/background-pusher.js';
import { pushWal, type WalPushOptions } from '../../../src/wal/push.js';
import { claimPath, markedFiles, pusherPidFile, readMarker, releaseClaim, tryClaim, writeMarker } from '../../../src/wal/spool.js';
import { MAX_SPOOL_MARKERS, pushReadyFiles } from '../../../src/wal/push.js';
import { tryWalFastPath } from '../../../src/cli/wal-fast-path.js';

const dirs: string[] = [];
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-pusher-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A WAL segment as PostgreSQL 15 writes it: a long page header with the system identifier, then data. */
function segment(fill: number): Buffer {
  const data = Buffer.alloc(1024 * 1024, fill);
  data.writeUInt16LE(0xd110, 0);
  data.writeUInt16LE(0x0002, 2);
  data.writeUInt32LE(1, 4);
  data.writeBigUInt64LE(7300000000000000001n, 24);
  data.writeUInt32LE(1024 * 1024, 32);
  data.writeUInt32LE(8192, 36);
  return data;
}

function setup() {
  const pgWal = temp();
  mkdirSync(join(pgWal, 'archive_status'));
  const repo = temp();
  const spool = temp();
  const store = createFsStore({ root: repo });
  const layout = new RepositoryLayout('c1');
  const options: WalPushOptions = { targets: [{ store, id: 'r', label: 'r' }], layout, compressLevel: 3, spoolDir: spool, repoUrl: `file://${repo}`, log: () => undefined };
  const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
  names.forEach((name, i) => {
    writeFileSync(join(pgWal, name), segment(i + 1));
    writeFileSync(join(pgWal, 'archive_status', `${name}.ready`), '');
  });
  return { pgWal, repo, spool, store, layout, options, names };
}

describe('background WAL pusher', () => {
  it('stores every ready file with a marker, so archive_command answers through the fast path, then exits when idle', async () => {
    const { pgWal, spool, store, layout, options, names } = setup();
    const started = Date.now();
    await runPusher(pgWal, options);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5000);
    expect(existsSync(pusherPidFile(spool, 'c1'))).toBe(false);
    for (const [i, name] of names.entries()) {
      const stored = await zstdDecompressBuffer(await store.getBuffer(layout.walObject(name)));
      expect(stored.equals(segment(i + 1))).toBe(true);
      expect(readMarker(spool, 'c1', name)).not.toBeNull();
      const argv = ['wal', 'push', join(pgWal, name), '--repo', options.repoUrl, '--cluster', 'c1', '--spool-dir', spool];
      expect(await tryWalFastPath(argv, {})).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(options.repoUrl.slice('file://'.length), 'c1', 'cluster.json'), 'utf8')).systemIdentifier).toBe('7300000000000000001');
  }, 20_000);

  it('does not run twice for one spool, and the foreground push agrees with what it stored', async () => {
    const { pgWal, spool, options, names } = setup();
    mkdirSync(join(spool, 'c1'), { recursive: true });
    writeFileSync(pusherPidFile(spool, 'c1'), `${process.pid}\n`);
    await runPusher(pgWal, options);
    expect(readMarker(spool, 'c1', names[0]!)).toBeNull();
    rmSync(pusherPidFile(spool, 'c1'));
    expect(await pushWal(join(pgWal, names[0]!), options)).toBe('stored');
    expect(await pushWal(join(pgWal, names[0]!), options)).toBe('already-stored');
  });

  it('skips a file someone else is pushing, and pushes it once the claim is gone', async () => {
    const { pgWal, spool, options, names } = setup();
    expect(tryClaim(spool, 'c1', names[1]!)).toBe(true);
    expect(await pushReadyFiles(pgWal, options, 16)).toBe(2);
    expect(readMarker(spool, 'c1', names[1]!)).toBeNull();
    releaseClaim(spool, 'c1', names[1]!);
    expect(await pushReadyFiles(pgWal, options, 16)).toBe(1);
    expect(readMarker(spool, 'c1', names[1]!)).not.toBeNull();
    expect(existsSync(claimPath(spool, 'c1', names[1]!))).toBe(false);
  });

  it('takes over the claim of a process that is gone', async () => {
    const { pgWal, spool, options, names } = setup();
    mkdirSync(join(spool, 'c1'), { recursive: true });
    writeFileSync(claimPath(spool, 'c1', names[0]!), '4194305\n');
    expect(await pushReadyFiles(pgWal, options, 16)).toBe(3);
  });

  it('sweeps markers of files PostgreSQL no longer waits for, and leaves none for a file archived meanwhile', async () => {
    const { pgWal, spool, options, names } = setup();
    writeMarker(spool, 'c1', '0000000100000000000000AA', { sha256: 'x', repo: options.repoUrl });
    rmSync(join(pgWal, 'archive_status', `${names[2]!}.ready`));
    writeFileSync(join(pgWal, 'archive_status', `${names[2]!}.done`), '');
    await pushReadyFiles(pgWal, options, 16);
    expect(markedFiles(spool, 'c1').sort()).toEqual([names[0], names[1]]);
  });

  it(`never holds more than ${MAX_SPOOL_MARKERS} markers`, async () => {
    const { pgWal, spool, options } = setup();
    for (let i = 0; i < MAX_SPOOL_MARKERS; i++) {
      const name = `0000000100000001000000${i.toString(16).toUpperCase().padStart(2, '0')}`;
      writeFileSync(join(pgWal, 'archive_status', `${name}.ready`), '');
      writeMarker(spool, 'c1', name, { sha256: 'x', repo: options.repoUrl });
    }
    expect(await pushReadyFiles(pgWal, options, 16)).toBe(0);
    expect(markedFiles(spool, 'c1')).toHaveLength(MAX_SPOOL_MARKERS);
  });

  it("a pusher starting while PostgreSQL's own call has just stored a file neither uploads nor compares it again", async () => {
    const { pgWal, spool, store, options, names } = setup();
    expect(await pushWal(join(pgWal, names[0]!), options)).toBe('stored');
    expect(readMarker(spool, 'c1', names[0]!)).toBeNull();
    let puts = 0;
    let reads = 0;
    const countingStore = Object.create(store) as typeof store;
    countingStore.put = (...args) => {
      puts++;
      return store.put(...args);
    };
    countingStore.getBuffer = (key) => {
      if (key.includes('/wal/')) reads++;
      return store.getBuffer(key);
    };
    const lines: string[] = [];
    expect(await pushReadyFiles(pgWal, { ...options, targets: [{ store: countingStore, id: 'r', label: 'r' }], log: (m) => lines.push(m) }, 16)).toBe(2);
    expect(puts).toBe(2);
    expect(reads).toBe(0);
    expect(readMarker(spool, 'c1', names[0]!)).toBeNull();
    expect(lines).toEqual([`${names[0]} is stored already; left to PostgreSQL's own call`]);
  });

});
