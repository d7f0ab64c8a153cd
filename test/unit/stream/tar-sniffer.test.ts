import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { TarEntrySniffer } from '../../../src/stream/tar-sniffer.js';

const work = mkdtempSync(join(tmpdir(), 'pgdr-tar-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A tar made by GNU tar, as pg_basebackup's is ustar with long names in the prefix field. */
function makeTar(files: Record<string, Buffer | string>): Buffer {
  const dir = mkdtempSync(join(work, 'src-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return execFileSync('tar', ['-c', '-f', '-', '--format=ustar', '-C', dir, ...Object.keys(files)]);
}

async function sniff(tar: Buffer, wanted: string[], chunkSizes: number[]): Promise<{ sniffer: TarEntrySniffer; out: Buffer }> {
  const chunks: Buffer[] = [];
  let offset = 0;
  let i = 0;
  while (offset < tar.length) {
    const size = chunkSizes[i++ % chunkSizes.length]!;
    chunks.push(tar.subarray(offset, offset + size));
    offset += size;
  }
  const sniffer = new TarEntrySniffer(new Set(wanted));
  const received: Buffer[] = [];
  await pipeline(Readable.from(chunks), sniffer, new Writable({ write: (c, _e, cb) => (received.push(c), cb()) }));
  return { sniffer, out: Buffer.concat(received) };
}

describe('TarEntrySniffer', () => {
  const label = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n';
  const manifest = JSON.stringify({ 'WAL-Ranges': [{ Timeline: 1, 'Start-LSN': '0/2000028', 'End-LSN': '0/2000100' }] });
  const tar = makeTar({
    backup_label: label,
    'base/1/1259': Buffer.alloc(20_000, 7),
    [`${'deep/'.repeat(25)}file`]: 'long path in the ustar prefix field',
    backup_manifest: manifest,
  });

  it('passes every byte through and captures the wanted entries whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 8 }), async (sizes) => {
        const { sniffer, out } = await sniff(tar, ['backup_label', 'backup_manifest'], sizes);
        expect(out.equals(tar)).toBe(true);
        expect(sniffer.captured.get('backup_label')?.toString()).toBe(label);
        expect(sniffer.captured.get('backup_manifest')?.toString()).toBe(manifest);
        expect(sniffer.entryCount).toBe(4);
      }),
      { numRuns: 40 },
    );
  });

  it('captures names held in the ustar prefix field', async () => {
    const name = `${'deep/'.repeat(25)}file`;
    const { sniffer } = await sniff(tar, [name], [512]);
    expect(sniffer.captured.get(name)?.toString()).toBe('long path in the ustar prefix field');
  });
});
