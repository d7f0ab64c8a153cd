import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkSnapshotTrailer, SnapshotTrailerStage, SNAPSHOT_HASH_BYTES } from '../../../src/etcd/snapshot-integrity.js';

/** A snapshot as etcd streams it: `pages` pages of database bytes, then the sha256 of those bytes. */
function snapshot(pages: number, pageSize = 4096, seed = 7): Buffer {
  const database = Buffer.alloc(pages * pageSize);
  for (let i = 0; i < database.length; i++) database[i] = (i * 31 + seed) & 0xff;
  return Buffer.concat([database, createHash('sha256').update(database).digest()]);
}

/** Streams `data` through the stage in the given chunk sizes and returns what came out and the verdict. */
async function throughStage(data: Buffer, chunkSizes: number[]): Promise<{ out: Buffer; stage: SnapshotTrailerStage }> {
  const chunks: Buffer[] = [];
  let offset = 0;
  let i = 0;
  while (offset < data.length) {
    const size = Math.max(1, chunkSizes[i++ % chunkSizes.length] ?? 1);
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  const stage = new SnapshotTrailerStage();
  const received: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    stage,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        callback();
      },
    }),
  );
  return { out: Buffer.concat(received), stage };
}

describe('checkSnapshotTrailer', () => {
  it('accepts a database followed by its sha256', () => {
    const data = snapshot(5);
    const check = checkSnapshotTrailer(data);
    expect(check.problem).toBeUndefined();
    expect(check.bytes).toBe(5 * 4096 + 32);
    expect(check.trailer).toBe(check.databaseSha256);
    expect(check.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('refuses a flipped byte anywhere in the database', () => {
    const data = snapshot(3);
    for (const at of [0, 1, 4095, 4096, 3 * 4096 - 1]) {
      const damaged = Buffer.from(data);
      damaged[at] = (damaged[at] ?? 0) ^ 0x01;
      expect(checkSnapshotTrailer(damaged).problem).toMatch(/does not match its database/);
    }
  });

  it('refuses a flipped byte in the trailer itself', () => {
    const damaged = Buffer.from(snapshot(2));
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] ?? 0) ^ 0x80;
    expect(checkSnapshotTrailer(damaged).problem).toMatch(/does not match its database/);
  });

  it('refuses a snapshot without a trailer, a truncated one, and an empty one', () => {
    const data = snapshot(2);
    expect(checkSnapshotTrailer(data.subarray(0, data.length - SNAPSHOT_HASH_BYTES)).problem).toMatch(/truncated or has no trailer/);
    expect(checkSnapshotTrailer(data.subarray(0, data.length - 1)).problem).toMatch(/truncated or has no trailer/);
    expect(checkSnapshotTrailer(data.subarray(0, 100)).problem).toMatch(/too short/);
    expect(checkSnapshotTrailer(Buffer.alloc(0)).problem).toMatch(/too short/);
  });
});

describe('SnapshotTrailerStage', () => {
  it('passes every byte through unchanged and agrees with checkSnapshotTrailer, whatever the chunking', async () => {
    const data = snapshot(3, 512, 3);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }), fc.option(fc.nat(data.length - 1)), async (sizes, flip) => {
        const input = Buffer.from(data);
        if (flip !== null) input[flip] = (input[flip] ?? 0) ^ 0x10;
        const { out, stage } = await throughStage(input, sizes);
        expect(out.equals(input)).toBe(true);
        expect(stage.result).toEqual(checkSnapshotTrailer(input));
        expect(stage.result.problem === undefined).toBe(flip === null);
      }),
      { numRuns: 60 },
    );
  });

  it('a chunk shorter than the trailer at the end still splits database and trailer right', async () => {
    const data = snapshot(1, 512);
    const { stage } = await throughStage(data, [data.length - 10, 3, 3, 4]);
    expect(stage.result.problem).toBeUndefined();
  });

  it('has no result before the stream ended', () => {
    expect(() => new SnapshotTrailerStage().result).toThrow(/before the stream ended/);
  });
});
