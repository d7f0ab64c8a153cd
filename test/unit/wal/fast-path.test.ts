import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tryWalFastPath } from '../../../src/cli/wal-fast-path.js';
import { markerPath, pusherPidFile, writeMarker } from '../../../src/wal/spool.js';
import { prefetchDir, resetPrefetchDir } from '../../../src/wal/prefetch-spool.js';

const dirs: string[] = [];
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-fast-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const segment = '000000010000000000000003';

describe('wal push fast path', () => {
  it('answers from a marker whose sha256 matches, once', async () => {
    const spool = temp();
    const file = join(temp(), segment);
    writeFileSync(file, 'segment bytes');
    const sha256 = createHash('sha256').update('segment bytes').digest('hex');
    writeMarker(spool, 'c1', segment, { sha256, repo: 'file:///repo' });
    const argv = ['wal', 'push', file, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool];
    expect(await tryWalFastPath(argv, {})).toBe(true);
    expect(existsSync(markerPath(spool, 'c1', segment))).toBe(false);
    expect(await tryWalFastPath(argv, {})).toBe(false);
  });

  it('waits for a running pusher only for a file PostgreSQL marked ready, the only kind the pusher takes', async () => {
    const spool = temp();
    const pgWal = temp();
    mkdirSync(join(pgWal, 'archive_status'));
    mkdirSync(join(spool, 'c1'), { recursive: true });
    // A live process in the pid file: this test's own.
    writeFileSync(pusherPidFile(spool, 'c1'), `${process.pid}\n`);
    const file = join(pgWal, segment);
    writeFileSync(file, 'segment bytes');
    const argv = ['wal', 'push', file, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool];

    let started = Date.now();
    expect(await tryWalFastPath(argv, {})).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);

    writeFileSync(join(pgWal, 'archive_status', `${segment}.ready`), '');
    const sha256 = createHash('sha256').update('segment bytes').digest('hex');
    setTimeout(() => writeMarker(spool, 'c1', segment, { sha256, repo: 'file:///repo' }), 300);
    started = Date.now();
    expect(await tryWalFastPath(argv, {})).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('never trusts a marker for other content, another repository or an unknown flag', async () => {
    const spool = temp();
    const file = join(temp(), segment);
    writeFileSync(file, 'new content');
    const sha256 = createHash('sha256').update('old content').digest('hex');
    writeMarker(spool, 'c1', segment, { sha256, repo: 'file:///repo' });
    expect(await tryWalFastPath(['wal', 'push', file, '--repo', 'file:///other', '--cluster', 'c1', '--spool-dir', spool], {})).toBe(false);
    expect(await tryWalFastPath(['wal', 'push', file, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool, '--json'], {})).toBe(false);
    expect(await tryWalFastPath(['wal', 'push', file, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool], { PGDR_CONFIG: '/nonexistent.yaml' })).toBe(false);
    expect(await tryWalFastPath(['wal', 'push', file, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool], {})).toBe(false);
  });

  it('reads the repository, cluster and spool from a config file', async () => {
    const spool = temp();
    const work = temp();
    const file = join(work, segment);
    writeFileSync(file, 'segment bytes');
    const config = join(work, 'pgdr.yaml');
    writeFileSync(config, `repo: file:///repo\ncluster: c2\nspoolDir: ${spool}\n`);
    writeMarker(spool, 'c2', segment, { sha256: createHash('sha256').update('segment bytes').digest('hex'), repo: 'file:///repo' });
    expect(await tryWalFastPath(['wal', 'push', file, '--config', config], {})).toBe(true);
  });
});

describe('wal fetch fast path', () => {
  it('serves a prefetched segment for the same repository and data directory, then never again', async () => {
    const spool = temp();
    const dest = join(temp(), 'RECOVERYXLOG');
    const dir = prefetchDir(spool, 'c1', process.cwd());
    resetPrefetchDir(dir, { repo: 'file:///repo', cluster: 'c1' });
    writeFileSync(join(dir, segment), 'prefetched');
    const argv = ['wal', 'fetch', segment, dest, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool];
    expect(await tryWalFastPath(['wal', 'fetch', segment, dest, '--repo', 'file:///elsewhere', '--cluster', 'c1', '--spool-dir', spool], {})).toBe(false);
    expect(await tryWalFastPath(argv, {})).toBe(true);
    expect(readFileSync(dest, 'utf8')).toBe('prefetched');
    expect(await tryWalFastPath(argv, {})).toBe(false);
  });

  it('does not serve history files or files it never prefetched', async () => {
    const spool = temp();
    const dir = prefetchDir(spool, 'c1', process.cwd());
    mkdirSync(dir, { recursive: true });
    resetPrefetchDir(dir, { repo: 'file:///repo', cluster: 'c1' });
    writeFileSync(join(dir, '00000002.history'), 'x');
    const dest = join(temp(), 'RECOVERYHISTORY');
    expect(await tryWalFastPath(['wal', 'fetch', '00000002.history', dest, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool], {})).toBe(false);
    expect(await tryWalFastPath(['wal', 'fetch', segment, dest, '--repo', 'file:///repo', '--cluster', 'c1', '--spool-dir', spool], {})).toBe(false);
  });
});
