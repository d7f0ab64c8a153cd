import { describe, expect, it } from 'vitest';
import type { FileListEntry } from '../../../src/repo/file-list.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import type { BackupManifest } from '../../../src/repo/manifest.js';
import { checkChains, checkFileListParts } from '../../../src/verify/backup-chains.js';
import { backup, filesBackup } from '../retention/fixtures.js';

const layout = new RepositoryLayout('main');

const full = filesBackup({ start: '2024-05-05T02:00:00Z', type: 'full' });
const incr1 = filesBackup({ start: '2024-05-06T02:00:00Z', type: 'incr', chain: [full] });
const incr2 = filesBackup({ start: '2024-05-07T02:00:00Z', type: 'incr', chain: [full, incr1] });
const diff = filesBackup({ start: '2024-05-08T02:00:00Z', type: 'diff', chain: [full] });

function catalog(complete: BackupManifest[], incomplete: string[] = [], invalid: string[] = []) {
  return { complete, incomplete: incomplete.map((backupId) => ({ backupId })), invalid: invalid.map((backupId) => ({ backupId })) };
}

describe('checkChains', () => {
  it('finds nothing wrong with a full, two incrs and a diff that all hold', () => {
    expect(checkChains(catalog([full, incr1, incr2, diff]), layout)).toEqual([]);
  });

  it('names a chain member removed by hand once, with every backup that builds on it', () => {
    expect(checkChains(catalog([incr1, incr2, diff]), layout)).toEqual([
      {
        kind: 'broken-chain',
        key: `main/backups/${full.backupId}/manifest.json`,
        detail: `backups ${incr1.backupId}, ${incr2.backupId} and ${diff.backupId} cannot be restored: they build on backup ${full.backupId}, which is not in the repository (removed by hand, or never copied here)`,
        breaks: [incr1.backupId, incr2.backupId, diff.backupId],
      },
    ]);
  });

  it('says whether the member has no manifest or one that does not validate', () => {
    const lostManifest = checkChains(catalog([full, incr2], [incr1.backupId]), layout);
    expect(lostManifest).toHaveLength(1);
    expect(lostManifest[0]).toMatchObject({
      kind: 'broken-chain',
      detail: `backup ${incr2.backupId} cannot be restored: it builds on backup ${incr1.backupId}, which has objects but no manifest (an interrupted backup, or its manifest was removed)`,
      breaks: [incr2.backupId],
    });
    const damaged = checkChains(catalog([incr1], [], [full.backupId]), layout);
    expect(damaged[0]!.detail).toContain(`on backup ${full.backupId}, whose manifest does not validate`);
  });

  it('reports a chain its members disagree with: another chain, a basebackup backup, no full first, another cluster, a wrong reference', () => {
    const otherFull = filesBackup({ start: '2024-05-04T02:00:00Z', type: 'full' });
    // incr2 claims to build on otherFull then incr1, but incr1 builds on full.
    const misled = { ...incr2, chain: [otherFull.backupId, incr1.backupId] };
    const basebackup = backup({ start: '2024-05-03T02:00:00Z' });
    const onBasebackup = { ...incr1, backupId: '20240506T030000Z', reference: basebackup.backupId, chain: [basebackup.backupId] };
    const onIncr = { ...diff, reference: incr1.backupId, chain: [incr1.backupId] };
    const foreign = { ...full, backupId: '20240505T030000Z', systemIdentifier: '42' };
    const onForeign = { ...incr1, backupId: '20240506T040000Z', reference: foreign.backupId, chain: [foreign.backupId] };
    const wrongReference = { ...incr2, backupId: '20240507T030000Z', reference: full.backupId };
    const problems = checkChains(catalog([basebackup, otherFull, full, foreign, incr1, onBasebackup, onForeign, misled, wrongReference, onIncr]), layout);
    expect(problems.map((p) => [p.kind, p.breaks])).toEqual([
      ['chain-mismatch', [onBasebackup.backupId]],
      ['chain-mismatch', [onForeign.backupId]],
      ['chain-mismatch', [misled.backupId]],
      ['chain-mismatch', [wrongReference.backupId]],
      ['chain-mismatch', [onIncr.backupId]],
    ]);
    const detail = (id: string) => problems.find((p) => p.breaks[0] === id)!.detail;
    expect(detail(onBasebackup.backupId)).toContain(`it builds on ${basebackup.backupId}, a basebackup-engine backup`);
    expect(detail(onForeign.backupId)).toContain('a backup of another cluster (system identifier 42)');
    expect(detail(misled.backupId)).toContain(`${incr1.backupId} builds on ${full.backupId}, not on ${otherFull.backupId} as this chain says`);
    expect(detail(wrongReference.backupId)).toContain(`its reference ${full.backupId} is not the last of its chain`);
    expect(detail(onIncr.backupId)).toContain(`its chain starts with ${incr1.backupId}, a incr backup, not a full one`);
    expect(problems.every((p) => p.key === `main/backups/${p.breaks[0]}/manifest.json`)).toBe(true);
  });
});

describe('checkFileListParts', () => {
  const blocksObject = { name: 'blocks-000001.tar.zst', bytes: 10, storedBytes: 5, sha256: 'c'.repeat(64), encoding: 'tar+zstd' as const, content: 'blocks' as const };
  const withBlocks: BackupManifest = { ...incr2, objects: [...incr2.objects, blocksObject], fileCount: 2, restoredBytes: 16384 + 100 };
  const complete = new Map([full, incr1].map((m) => [m.backupId, m]));
  const file = (path: string, size: number, parts: FileListEntry extends infer E ? (E extends { parts: infer P } ? P : never) : never): FileListEntry => ({
    type: 'file',
    path,
    mode: 0o600,
    size,
    mtime: '1',
    sha256: 'd'.repeat(64),
    parts,
  });
  const good: FileListEntry[] = [
    { type: 'dir', path: 'base', mode: 0o700 },
    file('base/1/1234', 16384, [
      { backup: full.backupId, object: 'files-000001.tar.zst' },
      { backup: incr2.backupId, object: 'blocks-000001.tar.zst', blocks: [[1, 1]] },
    ]),
    file('PG_VERSION', 100, [{ backup: incr1.backupId, object: 'files-000001.tar.zst' }]),
  ];

  it('accepts parts that all lie in the chain with the right content', () => {
    expect(checkFileListParts(withBlocks, good, complete, layout)).toBeUndefined();
  });

  it('reports parts outside the chain, objects a manifest does not list, the wrong content and counts that disagree', () => {
    const bad: FileListEntry[] = [
      file('a', 1, [{ backup: diff.backupId, object: 'files-000001.tar.zst' }]),
      file('b', 1, [{ backup: full.backupId, object: 'files-000009.tar.zst' }]),
      file('c', 1, [{ backup: incr2.backupId, object: 'blocks-000001.tar.zst' }]),
      file('d', 1, [
        { backup: full.backupId, object: 'files-000001.tar.zst' },
        { backup: incr1.backupId, object: 'files-000001.tar.zst', blocks: [[0, 1]] },
      ]),
    ];
    const problem = checkFileListParts(withBlocks, bad, complete, layout);
    expect(problem).toMatchObject({ kind: 'file-list-mismatch', key: `main/backups/${incr2.backupId}/files.jsonl.zst`, breaks: [incr2.backupId] });
    expect(problem!.detail).toMatch(/^backup \S+ cannot be restored: its file list does not match its chain \(6 problems\): /);
    expect(problem!.detail).toContain(`a part 1 is in backup ${diff.backupId}, which is not in its chain`);
    expect(problem!.detail).toContain(`b part 1 is in ${full.backupId}/files-000009.tar.zst, which that backup's manifest does not list`);
    expect(problem!.detail).toContain(`c part 1 should be a whole copy in a files object, but names ${incr2.backupId}/blocks-000001.tar.zst (blocks)`);
    expect(problem!.detail).toMatch(/; …$/);
  });

  it('reports a part whose object holds another tablespace, and the file and byte counts', () => {
    const ts = { ...full.objects[0]!, name: 'files-000002.tar.zst', tablespace: { oid: 16390, location: '/srv/ts' } };
    const owner = { ...full, objects: [...full.objects, ts] };
    const list = [file('PG_VERSION', 3, [{ backup: owner.backupId, object: 'files-000002.tar.zst' }])];
    const problem = checkFileListParts(owner, list, new Map(), layout);
    expect(problem!.detail).toContain('PG_VERSION part 1 is in');
    expect(problem!.detail).toContain('which holds tablespace 16390 files');
    expect(problem!.detail).toContain('the manifest says 1000 bytes restored, the list adds up to 3');
  });

  it('leaves parts in a member that is not complete to the chain check', () => {
    const onlyMine = [file('x', 16384 + 100, [{ backup: full.backupId, object: 'files-000001.tar.zst' }])];
    expect(checkFileListParts({ ...incr1, restoredBytes: 16484 }, onlyMine, new Map(), layout)).toBeUndefined();
  });
});
