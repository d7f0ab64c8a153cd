import { describe, expect, it } from 'vitest';
import { MTIME_MARGIN_NS, planBundles, planFileAction, type FileAction, type ReferenceBackup } from '../../../../src/backup/engines/files/plan.js';
import type { FoundEntry } from '../../../../src/backup/engines/files/walk.js';
import type { FileEntry } from '../../../../src/repo/file-list.js';

const start = new Date('2026-11-23T01:00:00Z');
const startNs = BigInt(start.getTime()) * 1_000_000n;

function found(path: string, size: number, mtimeNs: bigint, extra: Partial<FoundEntry> = {}): FoundEntry {
  return { path, type: 'file', absolute: `/pgdata/${path}`, mode: 0o600, size, mtimeNs, ...extra };
}

function listed(path: string, size: number, mtimeNs: bigint): FileEntry {
  return { type: 'file', path, mode: 0o600, size, mtime: String(mtimeNs), sha256: 'a'.repeat(64), parts: [{ backup: '20261123T010000Z', object: 'files-000001.tar.zst' }] };
}

function reference(...entries: FileEntry[]): ReferenceBackup {
  return { backupId: '20261123T010000Z', startTime: start, startLsn: 0x3000028n, files: new Map(entries.map((e) => [`0:${e.path}`, e])) };
}

describe('planFileAction', () => {
  const old = startNs - MTIME_MARGIN_NS - 1n;

  it('stores every file whole in a full backup, and a file the reference lacks', () => {
    expect(planFileAction(found('base/5/1', 8192, old), undefined).kind).toBe('whole');
    expect(planFileAction(found('base/5/2', 8192, old), reference()).kind).toBe('whole');
  });

  it('points at the reference for a file of the same size and mtime, written well before the reference began', () => {
    const ref = reference(listed('PG_VERSION', 3, old));
    expect(planFileAction(found('PG_VERSION', 3, old), ref)).toEqual({ kind: 'reference', base: ref.files.get('0:PG_VERSION') });
  });

  it('reads again a file whose mtime is too close to the reference start to prove anything', () => {
    const close = startNs - MTIME_MARGIN_NS + 1n;
    expect(planFileAction(found('postgresql.conf', 10, close), reference(listed('postgresql.conf', 10, close))).kind).toBe('whole');
  });

  it('compares the blocks of a changed main fork, and copies other changed files whole', () => {
    const ref = reference(listed('base/5/16384', 16384, old), listed('base/5/16384_vm', 8192, old), listed('pg_xact/0000', 8192, old));
    const later = startNs + 10n;
    expect(planFileAction(found('base/5/16384', 24576, later), ref)).toMatchObject({ kind: 'blocks', sinceLsn: 0x3000028n });
    expect(planFileAction(found('base/5/16384_vm', 8192, later), ref).kind).toBe('whole');
    expect(planFileAction(found('pg_xact/0000', 8192, later), ref).kind).toBe('whole');
  });

  it('copies a relation file whole when its size is not whole pages', () => {
    expect(planFileAction(found('base/5/16384', 1000, startNs), reference(listed('base/5/16384', 8192, 1n))).kind).toBe('whole');
  });
});

describe('planBundles', () => {
  it('bundles small files per root, gives a large file its own object, and puts directories in the first object of their root', () => {
    const entries: FoundEntry[] = [
      { path: 'base', type: 'dir', absolute: '/pgdata/base', mode: 0o700, size: 0, mtimeNs: 0n },
      ...Array.from({ length: 20 }, (_, i) => found(`base/5/${1000 + i}`, 8192, 0n)),
      found('base/5/big', 400 * 1024 * 1024, 0n),
      { path: 'PG_15_1', tablespace: 16400, type: 'dir', absolute: '/ts/PG_15_1', mode: 0o700, size: 0, mtimeNs: 0n },
      found('PG_15_1/5/17000', 8192, 0n, { tablespace: 16400 }),
      found('base/5/changed', 16384, 0n),
    ];
    const actions = new Map<FoundEntry, FileAction>(entries.map((e) => [e, { kind: 'whole' }]));
    actions.set(entries.find((e) => e.path === 'base/5/changed')!, { kind: 'blocks', base: {} as FileEntry, sinceLsn: 1n });
    const tasks = planBundles(entries, actions, { jobs: 2 });
    expect(tasks[0]!.entries.map((e) => e.path)).toEqual(['base/5/big']);
    const data = tasks.filter((t) => t.content === 'files' && t.tablespace === undefined);
    expect(data.flatMap((t) => t.entries.map((e) => e.path))).toContain('base');
    expect(data.find((t) => t.entries.some((e) => e.path === 'base'))!.entries[0]!.path).toBe('base');
    const ts = tasks.filter((t) => t.tablespace === 16400);
    expect(ts).toHaveLength(1);
    expect(ts[0]!.entries.map((e) => e.path)).toEqual(['PG_15_1', 'PG_15_1/5/17000']);
    const blocks = tasks.filter((t) => t.content === 'blocks');
    expect(blocks.map((t) => t.entries.map((e) => e.path))).toEqual([['base/5/changed']]);
    expect(tasks.map((t) => t.bytes)).toEqual([...tasks.map((t) => t.bytes)].sort((a, b) => b - a));
  });

  it('leaves unchanged files out: nothing is read for them', () => {
    const entry = found('base/5/1', 8192, 0n);
    const tasks = planBundles([entry], new Map([[entry, { kind: 'reference', base: {} as FileEntry }]]), { jobs: 1 });
    expect(tasks).toEqual([]);
  });
});
