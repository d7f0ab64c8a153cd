import { describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import { parseFileList, serializeFileList, type FileListEntry } from '../../../src/repo/file-list.js';

const entries: FileListEntry[] = [
  { type: 'file', path: 'base/5/16384', mode: 0o600, size: 16384, mtime: '1795471718186644229', sha256: 'a'.repeat(64), parts: [{ backup: '20261123T010000Z', object: 'files-000001.tar.zst' }, { backup: '20261124T010000Z', object: 'blocks-000001.tar.zst', blocks: [[1, 1]] }] },
  { type: 'dir', path: 'base', mode: 0o700 },
  { type: 'link', path: 'pg_wal', mode: 0o777, target: '/srv/wal' },
  { type: 'file', path: 'PG_15_202209061/5/17000', tablespace: 16400, mode: 0o600, size: 0, mtime: '1', sha256: 'b'.repeat(64), parts: [{ backup: '20261123T010000Z', object: 'files-000002.tar.zst' }] },
];

describe('file list', () => {
  it('round-trips, sorted so that a directory comes before what it holds and the data directory before tablespaces', () => {
    const text = serializeFileList(entries).toString();
    const parsed = parseFileList(text, 'test');
    expect(parsed.map((e) => `${e.tablespace ?? 0}:${e.path}`)).toEqual(['0:base', '0:base/5/16384', '0:pg_wal', '16400:PG_15_202209061/5/17000']);
    expect(parsed).toEqual(expect.arrayContaining(entries));
    expect(text.split('\n').filter(Boolean)).toHaveLength(4);
  });

  it('refuses paths that could leave the directory, duplicates, and damaged lines, naming the line', () => {
    const bad = (line: object | string) => () => parseFileList(typeof line === 'string' ? line : JSON.stringify(line), 'backup X file list');
    expect(bad({ type: 'dir', path: '../etc', mode: 448 })).toThrow(RepositoryError);
    expect(bad({ type: 'dir', path: '/etc', mode: 448 })).toThrow(/line 1 is not valid/);
    expect(bad({ type: 'dir', path: 'a//b', mode: 448 })).toThrow(RepositoryError);
    expect(bad('{"type":')).toThrow(/not JSON/);
    expect(bad({ type: 'file', path: 'x', mode: 384, size: 1, mtime: '1', sha256: 'z', parts: [] })).toThrow(RepositoryError);
    const twice = `${JSON.stringify(entries[1])}\n${JSON.stringify(entries[1])}\n`;
    expect(() => parseFileList(twice, 'l')).toThrow(/listed twice/);
  });
});
