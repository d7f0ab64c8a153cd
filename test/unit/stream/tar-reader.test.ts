import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { tarEnd, tarHeader, tarPadding } from '../../../src/stream/tar-header.js';
import { TarFormatError, TarReader } from '../../../src/stream/tar-reader.js';

/** Every member the reader sees, with the data it hands to the sink, reading `tar` in chunks of `chunk` bytes. */
async function read(tar: Buffer, chunk: number, want: (name: string) => boolean = () => true): Promise<{ name: string; typeflag: string; data: Buffer }[]> {
  const seen: { name: string; typeflag: string; data: Buffer }[] = [];
  const reader = new TarReader((member) => {
    const entry = { name: member.name, typeflag: member.typeflag, data: Buffer.alloc(0) };
    seen.push(entry);
    if (!want(member.name)) return undefined;
    const parts: Buffer[] = [];
    return {
      write: (b) => {
        parts.push(Buffer.from(b));
      },
      end: () => {
        entry.data = Buffer.concat(parts);
      },
    };
  });
  const chunks: Buffer[] = [];
  for (let at = 0; at < tar.length; at += chunk) chunks.push(tar.subarray(at, at + chunk));
  await pipeline(Readable.from(chunks), reader);
  return seen;
}

function ours(members: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) parts.push(tarHeader({ name: m.name, type: 'file', mode: 0o600, size: m.data.length, mtime: 0 }), m.data, tarPadding(m.data.length));
  parts.push(tarEnd());
  return Buffer.concat(parts);
}

describe('tar reader', () => {
  const members = [
    { name: 'base/5/16384@0', data: Buffer.alloc(8192, 1) },
    { name: `base/5/${'9'.repeat(120)}@7`, data: Buffer.alloc(3 * 8192, 2) },
    { name: 'odd', data: Buffer.from('seven b') },
    { name: 'empty', data: Buffer.alloc(0) },
  ];

  it('reads back what pgdr writes, pax names included, whatever the chunking', async () => {
    const tar = ours(members);
    for (const chunk of [1, 511, 512, 513, 8192, tar.length]) {
      const seen = await read(tar, chunk);
      expect(seen.map((s) => s.name)).toEqual(members.map((m) => m.name));
      expect(seen.map((s) => s.data.equals(members.find((m) => m.name === s.name)!.data))).toEqual([true, true, true, true]);
    }
  });

  it('reads past members nobody wants', async () => {
    const seen = await read(ours(members), 1000, (name) => name === 'odd');
    expect(seen.find((s) => s.name === 'odd')!.data.toString()).toBe('seven b');
    expect(seen.find((s) => s.name === 'base/5/16384@0')!.data.length).toBe(0);
  });

  it('reads what GNU tar writes (long names, directories, links)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tar-reader-'));
    try {
      mkdirSync(join(dir, 'd'));
      writeFileSync(join(dir, 'd', 'x'.repeat(150)), 'long');
      writeFileSync(join(dir, 'd', 'small'), Buffer.alloc(10_000, 3));
      execFileSync('ln', ['-s', 'small', join(dir, 'd', 'link')]);
      for (const format of ['gnu', 'posix']) {
        const tar = execFileSync('tar', ['-c', `--format=${format}`, '-C', dir, '--sort=name', 'd']);
        const seen = await read(tar, 4096);
        expect(seen.map((s) => [s.name.replace(/\/$/, ''), s.typeflag])).toEqual([
          ['d', '5'],
          ['d/link', '2'],
          ['d/small', '0'],
          [`d/${'x'.repeat(150)}`, '0'],
        ]);
        expect(seen[2]!.data.equals(Buffer.alloc(10_000, 3))).toBe(true);
        expect(seen[3]!.data.toString()).toBe('long');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a damaged header and an archive cut short', async () => {
    const tar = ours(members);
    const flipped = Buffer.from(tar);
    flipped[10] = flipped[10]! ^ 0xff;
    await expect(read(flipped, 512)).rejects.toBeInstanceOf(TarFormatError);
    await expect(read(tar.subarray(0, 512 + 4096), 512)).rejects.toBeInstanceOf(TarFormatError);
    await expect(read(tar.subarray(0, tar.length - 1024), 512)).rejects.toThrow(/end-of-archive/);
  });
});
