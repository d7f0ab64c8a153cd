import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { localDataDirectoryProblem, type LocalServerFacts } from '../../../../src/backup/engines/files/local-server.js';

describe('whether a data directory on this host is the connected server\'s', () => {
  const pgdata = mkdtempSync(join(tmpdir(), 'local-server-'));
  mkdirSync(join(pgdata, 'global'));
  writeFileSync(join(pgdata, 'global', 'pg_control'), Buffer.alloc(8192));
  afterAll(() => rmSync(pgdata, { recursive: true, force: true }));
  const pidFile = (started: number, port: number) => writeFileSync(join(pgdata, 'postmaster.pid'), `4242\n${pgdata}\n${started}\n${port}\n/tmp\n*\n  1234   5678\nready\n`);
  const facts = (postmasterStart: number, port = 5432): LocalServerFacts => ({
    dataDirectory: pgdata,
    port,
    postmasterStart,
    dataChecksums: true,
    catalogVersion: 202209061,
    inRecovery: false,
    tablespaceNames: new Map(),
  });

  it('takes the same port and a start time the server reports up to a few seconds after the pid file\'s', () => {
    pidFile(1_790_000_000, 5432);
    expect(localDataDirectoryProblem(pgdata, facts(1_790_000_000))).toBeUndefined();
    // pg_postmaster_start_time() is taken after shared_preload_libraries load: on a busy host a second or two later.
    expect(localDataDirectoryProblem(pgdata, facts(1_790_000_002))).toBeUndefined();
  });

  it('refuses another port, a start time before the pid file\'s, or one long after it', () => {
    pidFile(1_790_000_000, 5432);
    expect(localDataDirectoryProblem(pgdata, facts(1_790_000_000, 5433))).toMatch(/belongs to another server .*port 5432.*port 5433/);
    expect(localDataDirectoryProblem(pgdata, facts(1_789_999_999))).toMatch(/belongs to another server/);
    expect(localDataDirectoryProblem(pgdata, facts(1_790_000_060))).toMatch(/started 2026-.*started 2026-/);
  });
});
