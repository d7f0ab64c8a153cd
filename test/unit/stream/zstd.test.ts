import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { zstdCompressBuffer, zstdCompressStage, zstdDecompressBuffer, zstdDecompressStage } from '../../../src/stream/zstd.js';

describe('zstd through the zstd CLI', () => {
  it('round-trips data that ends in a newline byte, whose compressed form may too', { timeout: 120_000 }, async () => {
    // Every input ends in 0x0A, and inputs go on until two compressed frames end in it too (about 1 in 256):
    // a text-minded subprocess wrapper once dropped that byte on both sides.
    let framesEndingInNewline = 0;
    for (let i = 0; i < 5000 && framesEndingInNewline < 2; i++) {
      const data = Buffer.from(`row ${i} ${'x'.repeat(i % 37)}\n`.repeat(1 + (i % 5)));
      const compressed = await zstdCompressBuffer(data, { level: 3 });
      if (compressed.at(-1) === 0x0a) framesEndingInNewline++;
      expect((await zstdDecompressBuffer(compressed)).equals(data)).toBe(true);
    }
    expect(framesEndingInNewline).toBe(2);
  });

  it('streams standard frames that the buffer API reads back', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 'pgdr ');
    const parts: Buffer[] = [];
    await pipeline(Readable.from([data]), zstdCompressStage({ level: 3, threads: 2 }), new Writable({ write: (c, _e, cb) => (parts.push(c), cb()) }));
    const compressed = Buffer.concat(parts);
    expect(compressed.length).toBeLessThan(data.length / 10);
    expect((await zstdDecompressBuffer(compressed)).equals(data)).toBe(true);
    const back: Buffer[] = [];
    await pipeline(Readable.from([compressed]), zstdDecompressStage(), new Writable({ write: (c, _e, cb) => (back.push(c), cb()) }));
    expect(Buffer.concat(back).equals(data)).toBe(true);
  });

  it('fails on a damaged frame instead of returning garbage', async () => {
    const compressed = await zstdCompressBuffer(Buffer.alloc(100_000, 'abc'), { level: 3 });
    const damaged = Buffer.from(compressed);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await expect(zstdDecompressBuffer(damaged)).rejects.toThrow(/zstd/);
  });
});
