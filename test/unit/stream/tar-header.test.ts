import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { TAR_BLOCK, tarEnd, tarHeader, tarPadding } from '../../../src/stream/tar-header.js';

function archive(members: { name: string; type: 'file' | 'dir' | 'link'; data?: Buffer; target?: string; mode?: number }[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const data = m.data ?? Buffer.alloc(0);
    parts.push(tarHeader({ name: m.name, type: m.type, mode: m.mode ?? 0o600, size: data.length, mtime: 1_790_000_000, uid: 101, gid: 104, ...(m.target ? { linkTarget: m.target } : {}) }));
    if (m.type === 'file') parts.push(data, tarPadding(data.length));
  }
  parts.push(tarEnd());
  return Buffer.concat(parts);
}

/** GNU tar's own listing of an archive: what every restore of a files-engine backup relies on. */
function gnuTarList(tar: Buffer): string[] {
  return execFileSync('tar', ['-tv', '--quoting-style=literal', '-f', '-'], { input: tar, env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } })
    .toString()
    .trim()
    .split('\n');
}

describe('tar headers', () => {
  it('writes files, directories and links GNU tar reads back with their sizes, modes and owners', () => {
    const lines = gnuTarList(
      archive([
        { name: 'base', type: 'dir', mode: 0o700 },
        { name: 'base/1/1259', type: 'file', data: Buffer.alloc(8192, 7) },
        { name: 'PG_VERSION', type: 'file', data: Buffer.from('15\n') },
        { name: 'pg_wal', type: 'link', target: '/srv/wal' },
      ]),
    );
    expect(lines[0]).toMatch(/^drwx------ 101\/104\s+0 .* base\/$/);
    expect(lines[1]).toMatch(/^-rw------- 101\/104\s+8192 .* base\/1\/1259$/);
    expect(lines[2]).toMatch(/^-rw------- 101\/104\s+3 .* PG_VERSION$/);
    expect(lines[3]).toMatch(/pg_wal -> \/srv\/wal$/);
  });

  it('keeps names longer than 100 bytes, split at a slash or in a pax header', () => {
    const split = `${'a'.repeat(90)}/${'b'.repeat(90)}`;
    const long = `${'c'.repeat(120)}@123`;
    const lines = gnuTarList(archive([{ name: split, type: 'file', data: Buffer.from('x') }, { name: long, type: 'file', data: Buffer.from('yy') }]));
    expect(lines[0]!.endsWith(split)).toBe(true);
    expect(lines[1]!.endsWith(long)).toBe(true);
  });

  it('pads members to whole records', () => {
    expect(tarHeader({ name: 'x', type: 'file', mode: 0o600, size: 1, mtime: 0 }).length).toBe(TAR_BLOCK);
    expect(tarPadding(1).length).toBe(TAR_BLOCK - 1);
    expect(tarPadding(8192).length).toBe(0);
    expect(tarEnd().length).toBe(2 * TAR_BLOCK);
  });
});
