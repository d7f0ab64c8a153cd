import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { childEnv } from '../../../src/process/child-env.js';

const SECRETS = {
  AWS_SECRET_ACCESS_KEY: 'aws-secret-for-test',
  AWS_ACCESS_KEY_ID: 'aws-key-for-test',
  PGPASSWORD: 'pg-secret-for-test',
  PGDR_ETCD_PASSWORD: 'etcd-secret-for-test',
  PGDR_ETCD_PASSWORD_FILE: '/run/secrets/etcd',
};

describe('childEnv: what each kind of child may see', () => {
  const env = { PATH: '/usr/bin', HOME: '/h', LANG: 'C.UTF-8', LC_ALL: 'C', PGHOST: 'db', PGPASSFILE: '/h/.pgpass', PGDR_REPO: 's3://b/p', PGDR_IDENTITY_FILE: '/k', ...SECRETS };

  it('gives a tool (zstd, tar, etcdutl, age) only the basics', () => {
    expect(childEnv('tool', env)).toEqual({ PATH: '/usr/bin', HOME: '/h', LANG: 'C.UTF-8', LC_ALL: 'C' });
  });

  it("gives a PostgreSQL client libpq's variables and none of pgdr's", () => {
    expect(childEnv('postgres-client', env)).toEqual({
      PATH: '/usr/bin', HOME: '/h', LANG: 'C.UTF-8', LC_ALL: 'C', PGHOST: 'db', PGPASSFILE: '/h/.pgpass', PGPASSWORD: 'pg-secret-for-test',
    });
  });

  it("gives a restored server what its restore_command (pgdr wal fetch) needs, but not PGPASSWORD or etcd's credentials", () => {
    const server = childEnv('postgres-server', env);
    expect(server).toMatchObject({ PGDR_REPO: 's3://b/p', PGDR_IDENTITY_FILE: '/k', AWS_SECRET_ACCESS_KEY: 'aws-secret-for-test', AWS_ACCESS_KEY_ID: 'aws-key-for-test' });
    expect(Object.keys(server)).not.toContain('PGPASSWORD');
    expect(Object.keys(server)).not.toContain('PGDR_ETCD_PASSWORD');
    expect(Object.keys(server)).not.toContain('PGDR_ETCD_PASSWORD_FILE');
  });

  it("gives pgdr's own children everything", () => {
    expect(childEnv('pgdr', env)).toEqual(env);
  });
});

/**
 * The real spawn paths: a fake zstd first on the way (PGDR_ZSTD_BIN) records the environment it was started with,
 * then runs the real zstd; pgdr's process environment holds secrets meanwhile.
 */
describe('a secret in pgdr\'s environment does not reach zstd or tar', () => {
  let dir: string;
  let dump: string;
  const saved = new Map<string, string | undefined>();

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgdr-child-env-'));
    dump = join(dir, 'env.txt');
    const fake = join(dir, 'zstd');
    writeFileSync(fake, `#!/bin/sh\nenv >> '${dump}'\necho --- >> '${dump}'\nexec zstd "$@"\n`);
    chmodSync(fake, 0o755);
    for (const [key, value] of Object.entries({ ...SECRETS, PGDR_ZSTD_BIN: fake })) {
      saved.set(key, process.env[key]);
      process.env[key] = value;
    }
    vi.resetModules();
  });

  afterAll(() => {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function recorded(): string[] {
    const runs = readFileSync(dump, 'utf8').split('---\n').filter((r) => r.trim() !== '');
    writeFileSync(dump, '');
    return runs;
  }

  function expectClean(runs: string[], count: number): void {
    expect(runs).toHaveLength(count);
    for (const run of runs) {
      expect(run).toMatch(/^PATH=/m);
      for (const value of Object.values(SECRETS)) expect(run).not.toContain(value);
      for (const name of Object.keys(SECRETS)) expect(run).not.toMatch(new RegExp(`^${name}=`, 'm'));
    }
  }

  it('zstd on a buffer (wal push, manifests) and as a streaming stage (backups, restore)', async () => {
    const { zstdCompressBuffer, zstdDecompressBuffer, zstdCompressStage } = await import('../../../src/stream/zstd.js');
    const data = Buffer.from('some WAL, say\n'.repeat(1000));
    expect((await zstdDecompressBuffer(await zstdCompressBuffer(data, { level: 3 }))).equals(data)).toBe(true);
    const chunks: Buffer[] = [];
    await pipeline(Readable.from([data]), zstdCompressStage({ level: 1 }), new Writable({ write(chunk: Buffer, _e, done) { chunks.push(chunk); done(); } }));
    expect((await zstdDecompressBuffer(Buffer.concat(chunks))).equals(data)).toBe(true);
    expectClean(recorded(), 4); // compress, decompress, the stage, decompress
  });

  it('zstd -d | tar -x at restore', async () => {
    const { zstdCompressBuffer } = await import('../../../src/stream/zstd.js');
    const { startZstdTarUnpack } = await import('../../../src/process/unpack.js');
    const source = join(dir, 'src');
    execFileSync('mkdir', ['-p', source]);
    writeFileSync(join(source, 'PG_VERSION'), '15\n');
    const tar = execFileSync('tar', ['-c', '-C', source, 'PG_VERSION']);
    const packed = await zstdCompressBuffer(tar, { level: 1 });
    recorded();
    const target = join(dir, 'out');
    execFileSync('mkdir', ['-p', target]);
    const unpack = startZstdTarUnpack(target);
    unpack.stdin.end(packed);
    await unpack.wait();
    expect(readFileSync(join(target, 'PG_VERSION'), 'utf8')).toBe('15\n');
    expectClean(recorded(), 1);
  });
});
