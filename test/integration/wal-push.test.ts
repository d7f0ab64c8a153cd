import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr } from '../harness/cli.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { startPostgres, type PostgresServer } from '../harness/postgres.js';
import { repoRoot } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { RepositoryLayout } from '../../src/repo/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';

/**
 * `pgdr wal push` takes its own entry (bin/pgdr → dist/cli/wal-push.cjs, without the full CLI) because PostgreSQL
 * starts it once per segment. That entry must keep every rule of the full command: settings from a config file
 * (--config or PGDR_CONFIG) as well as flags, an s3:// repository, never overwriting a stored segment with other
 * content, --json documents, and the full CLI for anything it does not read itself.
 */
type RepoKind = 'fs' | 's3';

function walPushSuite(kind: RepoKind): void {
  describe(`wal push's own entry on a ${kind === 'fs' ? 'local directory' : 'MinIO (S3)'} repository, configured by a file`, () => {
    let minio: MinioServer | undefined;
    let server: PostgresServer;
    let store: ObjectStore;
    let config = '';
    /** Credentials only: the endpoint and path style come from the config file. */
    let credentials: Record<string, string> = {};
    const layout = new RepositoryLayout('byfile');
    const pgdr = (args: string[], env: Record<string, string> = {}) => runPgdr(args, { env: { ...credentials, ...env }, timeoutMs: 120_000 });

    beforeAll(async () => {
      const work = makeTempDir(`walpush-config-${kind}`, { owner: 'service' });
      const lines = ['cluster: byfile', `spoolDir: ${join(work, 'spool')}`];
      if (kind === 's3') {
        minio = await startMinio();
        credentials = Object.fromEntries(Object.entries(minio.env()).filter(([key]) => key.startsWith('AWS_')));
        lines.push(`repo: s3://${minio.bucket}/by-file`, `s3Endpoint: ${minio.endpoint}`, 's3ForcePathStyle: true');
        store = openStore(`s3://${minio.bucket}/by-file`, { s3Endpoint: minio.endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
        Object.assign(process.env, credentials);
      } else {
        const repo = join(work, 'repo');
        lines.push(`repo: file://${repo}`);
        store = openStore(`file://${repo}`, {});
      }
      config = join(work, 'pgdr.yaml');
      writeFileSync(config, `${lines.join('\n')}\n`);
      chownToServiceUser(config);
      server = await startPostgres({ name: `walpush-${kind}`, archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--config', config]), env: credentials });
    });

    afterAll(async () => {
      await store?.close();
      await stopAll();
    });

    it('archives every segment PostgreSQL hands it, with the repository and cluster of the config file', async () => {
      await server.query('CREATE TABLE t AS SELECT g FROM generate_series(1, 50000) g');
      const [{ walfile }] = (await server.query<{ walfile: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile')) as [{ walfile: string }];
      await switchWalAndWaitForArchive(server);
      expect(await store.head(layout.walObject(walfile))).not.toBeNull();
      expect(JSON.parse((await store.getBuffer(layout.clusterInfo())).toString('utf8')).cluster).toBe('byfile');
      const [{ failed }] = (await server.query<{ failed: string }>('SELECT failed_count::text AS failed FROM pg_stat_archiver')) as [{ failed: string }];
      expect(failed).toBe('0');
    });

    it('accepts an identical re-push and refuses a changed segment under the same name, with --config or PGDR_CONFIG, and --json', async () => {
      const [{ walfile }] = (await server.query<{ walfile: string }>('SELECT last_archived_wal AS walfile FROM pg_stat_archiver')) as [{ walfile: string }];
      const work = makeTempDir(`walpush-copy-${kind}`, { owner: 'service' });
      const copy = join(work, walfile);
      expect((await pgdr(['wal', 'fetch', walfile, copy, '--config', config])).exitCode).toBe(0);
      const stored = await store.getBuffer(layout.walObject(walfile));

      const again = await pgdr(['wal', 'push', copy, '--config', config, '--json']);
      expect(again.exitCode).toBe(0);
      expect(again.json()).toEqual({ file: copy, outcome: 'already-stored' });
      expect((await pgdr(['wal', 'push', copy], { PGDR_CONFIG: config })).exitCode).toBe(0);

      const changed = readFileSync(copy);
      changed[8192 + 100] = (changed[8192 + 100]! ^ 0xff) & 0xff;
      writeFileSync(copy, changed);
      const refused = await pgdr(['wal', 'push', copy, '--config', config]);
      expect(refused.exitCode).toBe(3);
      expect(refused.stderr).toMatch(/different content; nothing was overwritten\nhint: /);
      const refusedJson = await pgdr(['wal', 'push', copy, '--json'], { PGDR_CONFIG: config });
      expect(refusedJson.exitCode).toBe(3);
      expect(refusedJson.json()).toMatchObject({ exitCode: 3, error: expect.stringMatching(/different content/) });
      expect((await store.getBuffer(layout.walObject(walfile))).equals(stored)).toBe(true);
    });

    it('refuses a segment of another PostgreSQL system and leaves the repository as it was', async () => {
      const other = await startPostgres({ name: `walpush-other-${kind}` });
      try {
        const [{ walfile }] = (await other.query<{ walfile: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile')) as [{ walfile: string }];
        // This server may have archived a segment of the same name: whatever is stored under it stays.
        const before = (await store.head(layout.walObject(walfile))) === null ? null : await store.getBuffer(layout.walObject(walfile));
        const result = await pgdr(['wal', 'push', join(other.pgdata, 'pg_wal', walfile), '--config', config]);
        expect(result.exitCode).toBe(3);
        expect(result.stderr).toMatch(/belongs to PostgreSQL system \d+, not \d+/);
        const after = (await store.head(layout.walObject(walfile))) === null ? null : await store.getBuffer(layout.walObject(walfile));
        expect(after === null ? before === null : before !== null && after.equals(before)).toBe(true);
      } finally {
        await other.stop();
      }
    });
  });
}

walPushSuite('fs');
walPushSuite('s3');

describe('wal push outside its own entry', () => {
  it('leaves a command line its entry does not read to the full CLI', async () => {
    const help = await runPgdr(['wal', 'push', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/Usage: pgdr wal push \[options\] <path>/);
    const twoPaths = await runPgdr(['wal', 'push', 'a', 'b', '--repo', 'file:///nonexistent']);
    expect(twoPaths.exitCode).toBe(2);
    expect(twoPaths.stderr).toMatch(/too many arguments/);
  });

  it('reports a bad config file as the full CLI does: a usage error, exit 2', async () => {
    const dir = makeTempDir('walpush-badconfig', { owner: 'service' });
    const config = join(dir, 'pgdr.yaml');
    writeFileSync(config, 'repo: file:///tmp/x\nclustr: typo\n');
    chownToServiceUser(config);
    const result = await runPgdr(['wal', 'push', join(dir, '000000010000000000000001'), '--config', config]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^pgdr: config file .*pgdr\.yaml: .*clustr/m);
    expect(result.stderr).not.toMatch(/unexpected error/);
  });

  it('is one bundle that loads no npm package but signal-exit (the build refuses others)', () => {
    const bundle = readFileSync(join(repoRoot, 'dist', 'cli', 'wal-push.cjs'), 'utf8');
    // esbuild names each module by its path from here: `../main/node_modules/…` in a worktree whose node_modules is a symlink.
    const packages = new Set([...bundle.matchAll(/^\/\/ (?:[^\n]*\/)?node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)].map((m) => m[1]));
    expect([...packages]).toEqual(['signal-exit']);
  });
});
