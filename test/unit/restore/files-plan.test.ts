import { describe, expect, it } from 'vitest';
import { VerificationError } from '../../../src/errors.js';
import type { FileListEntry } from '../../../src/repo/file-list.js';
import { planFilesRestore } from '../../../src/restore/files-plan.js';
import { filesManifest } from '../support/files-manifest.js';

const FULL = '20261120T010000Z';
const INCR = '20261121T010000Z';
const sha = 'a'.repeat(64);
const obj = (name: string, content: 'files' | 'blocks', bytes = 100) => ({ name, bytes, storedBytes: 10, sha256: sha, encoding: 'tar+zstd' as const, content });
const list = (name = 'files.jsonl.zst') => ({ name, bytes: 1, storedBytes: 1, sha256: sha, encoding: 'zstd' as const, content: 'file-list' as const });

const full = filesManifest({ backupId: FULL, objects: [obj('files-000001.tar.zst', 'files', 500), obj('files-000002.tar.zst', 'files', 900), list()] });
const incr = filesManifest({ backupId: INCR, type: 'incr', chain: [FULL], objects: [obj('files-000001.tar.zst', 'files'), obj('blocks-000001.tar.zst', 'blocks'), list()] });

const file = (path: string, parts: { backup: string; object: string; blocks?: [number, number][] }[], size = 8192): FileListEntry => ({ type: 'file', path, mode: 0o600, size, mtime: '1', sha256: sha, parts });

const entries: FileListEntry[] = [
  { type: 'dir', path: 'base', mode: 0o700 },
  file('PG_VERSION', [{ backup: FULL, object: 'files-000001.tar.zst' }]),
  file('base/5/1', [{ backup: FULL, object: 'files-000002.tar.zst' }, { backup: INCR, object: 'blocks-000001.tar.zst', blocks: [[0, 1], [7, 2]] }], 73728),
  file('base/5/2', [{ backup: INCR, object: 'files-000001.tar.zst' }]),
];

describe('planFilesRestore', () => {
  it('restores a chain oldest layer first, taking only the members each object holds for the restored backup', () => {
    const plan = planFilesRestore([full, incr], entries);
    expect(plan.layers.map((l) => l.backupId)).toEqual([FULL, INCR]);
    const [first, second] = plan.layers;
    expect(first!.extracts.map((e) => [e.object.name, e.members])).toEqual([
      ['files-000002.tar.zst', ['base/5/1']],
      ['files-000001.tar.zst', ['PG_VERSION']],
    ]);
    const blocks = second!.extracts.find((e) => e.object.content === 'blocks')!;
    expect(blocks.members).toEqual(['base/5/1@0', 'base/5/1@7']);
    expect(blocks.runs.map((r) => [r.member, r.first, r.count])).toEqual([
      ['base/5/1@0', 0, 1],
      ['base/5/1@7', 7, 2],
    ]);
    // The restored backup's own whole-file objects hold only what it restores: unpacked whole.
    expect(second!.extracts.find((e) => e.object.name === 'files-000001.tar.zst')!.members).toBe('all');
    expect(plan.truncate.map((f) => f.path)).toEqual(['base/5/1']);
    expect(plan.structure).toEqual([entries[0]]);
    expect(plan.bytes).toBe(8192 + 73728 + 8192);
  });

  it('puts an object of block runs after the objects holding the older parts of its files, and nothing else after anything', () => {
    const third = '20261122T010000Z';
    const incr2 = filesManifest({ backupId: third, type: 'incr', chain: [FULL, INCR], objects: [obj('blocks-000001.tar.zst', 'blocks'), obj('blocks-000002.tar.zst', 'blocks'), list()] });
    const chained: FileListEntry[] = [
      ...entries,
      file('base/5/3', [{ backup: FULL, object: 'files-000001.tar.zst' }, { backup: third, object: 'blocks-000002.tar.zst', blocks: [[1, 1]] }], 16384),
    ];
    chained[2] = file('base/5/1', [
      { backup: FULL, object: 'files-000002.tar.zst' },
      { backup: INCR, object: 'blocks-000001.tar.zst', blocks: [[0, 1]] },
      { backup: third, object: 'blocks-000001.tar.zst', blocks: [[7, 2]] },
    ], 73728);
    const plan = planFilesRestore([full, incr, incr2], chained);
    const named = (backupId: string, name: string) => plan.layers.flatMap((l) => l.extracts).find((e) => e.backupId === backupId && e.object.name === name)!;
    const after = (backupId: string, name: string) => named(backupId, name).after.map((e) => `${e.backupId}/${e.object.name}`).sort();
    expect(after(FULL, 'files-000001.tar.zst')).toEqual([]);
    expect(after(FULL, 'files-000002.tar.zst')).toEqual([]);
    expect(after(INCR, 'files-000001.tar.zst')).toEqual([]);
    expect(after(INCR, 'blocks-000001.tar.zst')).toEqual([`${FULL}/files-000002.tar.zst`]);
    // The previous part only: the whole copy is already before the incr's runs.
    expect(after(third, 'blocks-000001.tar.zst')).toEqual([`${INCR}/blocks-000001.tar.zst`]);
    expect(after(third, 'blocks-000002.tar.zst')).toEqual([`${FULL}/files-000001.tar.zst`]);
  });

  it('leaves out what a delta restore already has, and then lists members even from the restored backup', () => {
    const plan = planFilesRestore([full, incr], entries, new Set(['0:PG_VERSION', '0:base/5/1']));
    expect(plan.layers.map((l) => l.backupId)).toEqual([INCR]);
    expect(plan.layers[0]!.extracts.map((e) => [e.object.name, e.members])).toEqual([['files-000001.tar.zst', ['base/5/2']]]);
    expect(plan.files.map((f) => f.path)).toEqual(['base/5/2']);
  });

  it('names every member for a delta restore that keeps nothing, so that pg_control can still be held back', () => {
    const plan = planFilesRestore([full, incr], entries, new Set(), true);
    expect(plan.layers.flatMap((l) => l.extracts).every((e) => e.members !== 'all')).toBe(true);
    expect(plan.layers[1]!.extracts.find((e) => e.object.name === 'files-000001.tar.zst')!.members).toEqual(['base/5/2']);
  });

  it('refuses a file list that points outside the chain or at the wrong kind of object', () => {
    expect(() => planFilesRestore([incr], entries)).toThrow(VerificationError);
    const wrongKind = [file('x', [{ backup: INCR, object: 'blocks-000001.tar.zst' }])];
    expect(() => planFilesRestore([full, incr], wrongKind)).toThrow(/not a whole copy/);
  });
});
