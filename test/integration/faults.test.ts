import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdr, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { descendantPids, runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin, pgdrBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { treeDigest } from '../harness/tree.js';
import { RepositoryLayout } from '../../src/repo/layout.js';

/**
 * The fault suite: what pgdr survives, one `describe` per kind of fault, each against real PostgreSQL (and MinIO
 * where the fault is the store's). Read the `it` lines top to bottom for the list.
 */

interface BackupRow {
  backupId: string;
  status: string;
}

describe('restore never makes things worse', () => {
  let server: PostgresServer;
  let repo: string;
  let repoArgs: string[];
  let backupId: string;
  let work: string;
  let working: string;
  const layout = new RepositoryLayout('faults');

  const pgdr = (args: string[], env: Record<string, string> = {}) => runPgdr([...args, ...repoArgs, '--no-progress'], { env, timeoutMs: 180_000 });
  const objectPath = (id: string, name = 'base.tar.zst') => join(repo, ...layout.backupObject(id, name).split('/'));
  const pgCtl = (pgdata: string, ...args: string[]) => runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, ...args], { reject: false, timeout: 120_000 });

  beforeAll(async () => {
    repo = makeTempDir('faults-repo', { owner: 'service' });
    repoArgs = ['--repo', `file://${repo}`, '--cluster', 'faults'];
    server = await startPostgres({ name: 'faults-restore', archiveCommand: pgdrCommandLine(['wal', 'push', '%p', ...repoArgs]) });
    await server.query('CREATE TABLE t (id int PRIMARY KEY, note text)');
    await server.query("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    backupId = (await runPgdrOk(['backup', 'now', '--json', ...repoArgs, '--no-progress'], { env: server.libpqEnv() })).json<{ backupId: string }>().backupId;
    await switchWalAndWaitForArchive(server);

    // A working data directory to restore over: a restore of that backup, recovered and stopped cleanly.
    work = makeTempDir('faults-work', { owner: 'service' });
    working = join(work, 'pgdata');
    const port = await freePort();
    await runPgdrOk(['restore', '--pgdata', working, '--target', 'latest', '--start', '--port', String(port), '--archive-mode', 'off', ...repoArgs, '--no-progress'], {
      timeoutMs: 180_000,
    });
    await pgCtl(working, '-m', 'fast', '-w', 'stop');
  });

  afterAll(async () => {
    await pgCtl(working, '-m', 'immediate', 'stop').catch(() => undefined);
    await stopAll();
  });

  it('a flipped byte in the backup fails restore --force with exit 5 and leaves the old data directory byte for byte', async () => {
    const before = treeDigest(working);
    const original = readFileSync(objectPath(backupId));
    const damaged = Buffer.from(original);
    const at = Math.floor(damaged.length / 2);
    damaged[at] = damaged[at]! ^ 0x5a;
    writeFileSync(objectPath(backupId), damaged);
    try {
      const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
      expect(result.exitCode).toBe(5);
      expect(result.stderr).toMatch(/failed its checksum/);
      expect(result.stderr).toMatch(/was left as it was/);
      expect(treeDigest(working)).toEqual(before);
      expect(readdirSync(work)).toEqual(['pgdata']);
    } finally {
      writeFileSync(objectPath(backupId), original);
    }
  });

  it('--force on a directory without PG_VERSION exits 2 and deletes nothing', async () => {
    const dir = join(makeTempDir('faults-home', { owner: 'service' }), 'home');
    mkdirSync(join(dir, 'documents'), { recursive: true });
    writeFileSync(join(dir, 'documents', 'thesis.txt'), 'years of work');
    chownToServiceUser(dir, { recursive: true });
    const before = treeDigest(dir);
    const result = await pgdr(['restore', '--pgdata', dir, '--force', '--target', 'latest']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/holds no PG_VERSION/);
    expect(result.stderr).toMatch(/nothing was deleted/);
    expect(result.stderr).toMatch(/^hint: /m);
    expect(treeDigest(dir)).toEqual(before);
  });

  it('--force while a server runs in the directory exits 2 and names its pid', async () => {
    const port = await freePort();
    const started = await pgCtl(working, '-w', '-o', `-p ${port} -c listen_addresses='' -c archive_mode=off`, '-l', join(work, 'server.log'), 'start');
    expect(started.exitCode).toBe(0);
    try {
      const before = treeDigest(join(working, 'base'));
      const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(/a PostgreSQL server \(pid \d+\) is running in it/);
      expect(treeDigest(join(working, 'base'))).toEqual(before);
    } finally {
      await pgCtl(working, '-m', 'fast', '-w', 'stop');
    }
  });

  it('a directory pgdr may not write to is exit 2, naming its owner and the user pgdr runs as', async () => {
    const locked = makeTempDir('faults-locked');
    chmodSync(locked, 0o755);
    const result = await pgdr(['restore', '--pgdata', join(locked, 'pgdata'), '--target', 'latest']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/permission denied \(.*owned by root \(uid 0\), mode 0755; pgdr runs as postgres \(uid \d+\)\)/);
    expect(readdirSync(locked)).toEqual([]);
  });

  it('a backup whose tar holds names that reach outside is exit 5 naming them, and nothing lands outside or in the target', async () => {
    const outside = makeTempDir('faults-outside', { owner: 'service' });
    const forged = makeTempDir('faults-forged', { owner: 'service' });
    const tarFile = join(forged, 'evil.tar');
    const script = [
      'import io, sys, tarfile',
      'out, outside = sys.argv[1], sys.argv[2]',
      "t = tarfile.open(out, 'w')",
      'def add(name, data=b"x", kind=tarfile.REGTYPE, link=""):',
      '    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link',
      '    if kind == tarfile.REGTYPE: ti.size = len(data); t.addfile(ti, io.BytesIO(data))',
      '    else: t.addfile(ti)',
      "add('PG_VERSION', b'15\\n')",
      "add('../escaped.txt')",
      "add(outside + '/absolute.txt')",
      "add('pg_tblspc/99', kind=tarfile.SYMTYPE, link=outside)",
      "add('pg_tblspc/99/through.txt', b'pwned')",
      't.close()',
    ].join('\n');
    await execa('python3', ['-c', script, tarFile, outside]);
    await execa('zstd', ['-q', '-3', '--check', tarFile, '-o', `${tarFile}.zst`]);
    const body = readFileSync(`${tarFile}.zst`);
    const manifest = JSON.parse(readFileSync(join(repo, ...layout.backupManifest(backupId).split('/')), 'utf8')) as Record<string, unknown>;
    const forgedId = '29991231T235959Z';
    const sha256 = (await execa('sha256sum', [`${tarFile}.zst`])).stdout.split(' ')[0];
    Object.assign(manifest, {
      backupId: forgedId,
      bytes: 10240,
      storedBytes: body.length,
      objects: [{ name: 'base.tar.zst', bytes: 10240, storedBytes: body.length, sha256, encoding: 'tar+zstd' }],
    });
    mkdirSync(join(repo, ...layout.backupPrefix(forgedId).split('/')), { recursive: true });
    writeFileSync(objectPath(forgedId), body);
    writeFileSync(join(repo, ...layout.backupManifest(forgedId).split('/')), JSON.stringify(manifest));
    chownToServiceUser(join(repo, 'faults'), { recursive: true });

    const target = join(makeTempDir('faults-unsafe', { owner: 'service' }), 'pgdata');
    const result = await pgdr(['restore', '--pgdata', target, '--backup-id', forgedId, '--target', 'latest']);
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toMatch(/member names? that could write outside the data directory/);
    expect(result.stderr).toMatch(/\.\.\/escaped\.txt/);
    expect(result.stderr).toMatch(/absolute\.txt \(an absolute name\)/);
    expect(result.stderr).toMatch(/pg_tblspc\/99\/through\.txt \(it passes through the symlink pg_tblspc\/99\)/);
    expect(readdirSync(outside)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(join(target, '..'))).toEqual([]);
    await execa('rm', ['-rf', join(repo, ...layout.backupPrefix(forgedId).split('/'))]);
  });

  it('kill -9 during the unpack leaves the target as it was, and the next restore --force cleans up and succeeds', async () => {
    const before = treeDigest(working);
    // A zstd that waits before decompressing: long enough to kill pgdr while the staging directory exists.
    const bin = makeTempDir('faults-slow-zstd', { owner: 'service' });
    const slow = join(bin, 'zstd');
    writeFileSync(slow, '#!/bin/bash\ncase " $* " in *" -d "*) sleep 3;; esac\nexec zstd "$@"\n', { mode: 0o755 });
    const env = pgdrEnvironment({ PGDR_ZSTD_BIN: slow });
    const child = runAsPostgres(process.execPath, [pgdrBin, 'restore', '--pgdata', working, '--force', '--target', 'latest', ...repoArgs, '--no-progress'], {
      env,
      extendEnv: false,
      reject: false,
      cwd: env.HOME,
    });
    const staging = (): string[] => readdirSync(work).filter((n) => n.includes('pgdr-restore-'));
    await waitFor(() => staging().length > 0, 30_000, 'the staging directory');
    const nodePid = descendantPids(child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('restore'));
    process.kill(nodePid!, 'SIGKILL');
    await child;
    expect(treeDigest(working)).toEqual(before);

    const again = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toMatch(/left by an interrupted restore/);
    expect(readdirSync(work).filter((n) => n !== 'server.log')).toEqual(['pgdata']);
    expect(existsSync(join(working, 'recovery.signal'))).toBe(true);
  });

  it('restore --force replaces a stopped data directory and leaves nothing beside it', async () => {
    const result = await pgdr(['restore', '--pgdata', working, '--force', '--target', 'latest']);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/old data directory is kept at .* until the new one is in place/);
    expect(result.stderr).toMatch(/removed the old data directory/);
    expect(readdirSync(work).filter((n) => n !== 'server.log')).toEqual(['pgdata']);
    const list = (await runPgdrOk(['backup', 'list', '--json', ...repoArgs])).json<BackupRow[]>();
    expect(list.filter((b) => b.status === 'complete').map((b) => b.backupId)).toEqual([backupId]);
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
