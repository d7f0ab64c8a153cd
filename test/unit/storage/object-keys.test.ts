import fc from 'fast-check';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import { assertListPrefix, assertObjectKey, createFsStore } from '../../../src/storage/fs-store.js';

const scratch = mkdtempSync(join(tmpdir(), 'pgdr-keys-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const invalidKeys = [
  '',
  '/abs',
  'a/',
  'a//b',
  '..',
  '../x',
  'a/../b',
  'a/..',
  '.',
  './a',
  'a/./b',
  'a\\b',
  '..\\x',
  'a\u0000b',
  'a\nb',
  '.tmp-x',
  'a/.tmp-y/z',
  'x'.repeat(256),
  `${'a/'.repeat(600)}b`,
];

describe('object key rules', () => {
  it('accepts the keys the repository layout makes', () => {
    for (const key of [
      'default/cluster.json',
      'default/backups/20261123T125304Z/base.tar.zst',
      'default/wal/00000001/000000010000000000000001.zst',
      'default/wal/00000002/00000002.history.zst',
      'default/locks/backup.json',
      'a',
      '.hidden',
      'a..b',
      '...',
      'tmp-x',
      'x.tmp-y',
      '\u00e9t\u00e9/\u65e5\u672c',
      'x'.repeat(255),
    ]) {
      expect(() => assertObjectKey(key), key).not.toThrow();
    }
  });

  it('refuses keys that are empty, absolute, escape upwards, use backslashes or name temp files', () => {
    for (const key of invalidKeys) {
      expect(() => assertObjectKey(key), JSON.stringify(key)).toThrow(RepositoryError);
    }
  });

  it('says why in one line', () => {
    try {
      assertObjectKey('a/../b');
      expect.unreachable();
    } catch (err) {
      expect((err as RepositoryError).message).toBe(`invalid object key "a/../b": it has a '..' segment`);
      expect((err as RepositoryError).exitCode).toBe(3);
    }
  });

  it('accepts list prefixes that are empty, end in a slash or stop mid-name', () => {
    for (const prefix of ['', 'default/', 'default/wal/0000000100000000000000', 'default/wal/00000001/', 'de', 'a/.', 'a/..x']) {
      expect(() => assertListPrefix(prefix), prefix).not.toThrow();
    }
    for (const prefix of ['/', '/a', '../', 'a/../', 'a//', 'a\\', '.tmp-x/']) {
      expect(() => assertListPrefix(prefix), prefix).toThrow(RepositoryError);
    }
  });

  it('never lets a key accepted by the rules resolve outside the store root (property)', () => {
    const segment = fc.oneof(
      fc.constantFrom('.', '..', '', '.tmp-a', 'a\\b', 'ok', '..a', 'a..'),
      fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !s.includes('/')),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.boolean(), (segments, leadingSlash) => {
        const key = (leadingSlash ? '/' : '') + segments.join('/');
        let accepted = true;
        try {
          assertObjectKey(key);
        } catch (err) {
          expect(err).toBeInstanceOf(RepositoryError);
          accepted = false;
        }
        if (accepted) {
          const resolved = join('/root', ...key.split('/'));
          expect(resolved.startsWith('/root/')).toBe(true);
          expect(resolved.slice('/root/'.length)).toBe(key);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('fs store key validation', () => {
  it('refuses invalid keys on every operation before touching the disk', async () => {
    const root = join(scratch, 'repo');
    const store = createFsStore({ root });
    for (const key of invalidKeys) {
      await expect(store.put(key, { kind: 'buffer', data: Buffer.from('x') })).rejects.toBeInstanceOf(RepositoryError);
      await expect(store.get(key)).rejects.toBeInstanceOf(RepositoryError);
      await expect(store.getBuffer(key)).rejects.toBeInstanceOf(RepositoryError);
      await expect(store.head(key)).rejects.toBeInstanceOf(RepositoryError);
      await expect(store.delete(['fine', key])).rejects.toBeInstanceOf(RepositoryError);
    }
    expect(readdirSync(scratch)).toEqual([]);
  });

  it('turns a relative root into an absolute file:// location', () => {
    const store = createFsStore({ root: 'relative/repo' });
    expect(store.location).toBe(`file://${process.cwd()}/relative/repo`);
  });
});
