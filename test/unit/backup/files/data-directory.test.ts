import { describe, expect, it } from 'vitest';
import { dataDirectoryDecision, relationFileInfo, tablespaceDecision, unloggedRelationFiles } from '../../../../src/backup/engines/files/data-directory.js';

describe('what the files engine copies', () => {
  it('keeps runtime directories empty and leaves runtime files out', () => {
    for (const dir of ['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']) {
      expect(dataDirectoryDecision(dir, true)).toBe('empty-directory');
    }
    for (const file of ['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'postgresql.auto.conf.tmp', 'recovery.signal']) {
      expect(dataDirectoryDecision(file, false)).toBe('skip');
    }
    expect(dataDirectoryDecision('base/5/pgsql_tmp', true)).toBe('skip');
    expect(dataDirectoryDecision('base/16384/pg_internal.init', false)).toBe('skip');
    expect(dataDirectoryDecision('global/pg_internal.init.1234', false)).toBe('skip');
  });

  it('copies the cluster: config, relations, SLRUs, and a pg_wal below the top is just a name', () => {
    for (const path of ['PG_VERSION', 'postgresql.conf', 'postgresql.auto.conf', 'global/pg_control', 'base/5/16384', 'pg_xact/0000', 'base/pg_wal']) {
      expect(dataDirectoryDecision(path, false)).toBe('copy');
    }
    expect(dataDirectoryDecision('base', true)).toBe('copy');
  });

  it('leaves temporary relations out, in the data directory and in tablespaces', () => {
    expect(dataDirectoryDecision('base/5/t3_16400', false)).toBe('skip');
    expect(dataDirectoryDecision('base/5/t3_16400_fsm', false)).toBe('skip');
    expect(tablespaceDecision('PG_15_202209061/5/t4_16500.1', false)).toBe('skip');
    expect(tablespaceDecision('PG_15_202209061/5/16500', false)).toBe('copy');
  });

  it('keeps only the init fork of an unlogged relation', () => {
    const skipped = unloggedRelationFiles(['16384', '16384_fsm', '16384_vm', '16384.1', '16384_init', '16390', '16390_fsm', 'PG_VERSION']);
    expect([...skipped].sort()).toEqual(['16384', '16384.1', '16384_fsm', '16384_vm']);
  });

  it('knows relation files and their first block, and which have page LSNs to compare', () => {
    expect(relationFileInfo('base/5/16384', false)).toEqual({ mainFork: true, firstBlock: 0 });
    expect(relationFileInfo('base/5/16384.2', false)).toEqual({ mainFork: true, firstBlock: 262144 });
    expect(relationFileInfo('base/5/16384_vm', false)).toEqual({ mainFork: false, firstBlock: 0 });
    expect(relationFileInfo('global/1262', false)).toEqual({ mainFork: true, firstBlock: 0 });
    expect(relationFileInfo('pg_tblspc/16400/PG_15_202209061/5/16401', false)).toEqual({ mainFork: true, firstBlock: 0 });
    expect(relationFileInfo('PG_15_202209061/5/16401', true)).toEqual({ mainFork: true, firstBlock: 0 });
    expect(relationFileInfo('global/pg_control', false)).toBeUndefined();
    expect(relationFileInfo('base/5/PG_VERSION', false)).toBeUndefined();
    expect(relationFileInfo('pg_xact/0000', false)).toBeUndefined();
  });
});
