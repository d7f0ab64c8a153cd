import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PageReaderPool, ReaderError, VANISHED_FILE } from '../../../src/postgres/page-reader.js';
import { BLOCK_SIZE } from '../../../src/postgres/page.js';
import { rateLimiter } from '../../../src/backup/engines/files/rate-limit.js';
import { sha256Hex } from '../../../src/stream/checksum.js';

// Two heap pages written by PostgreSQL 15 with data checksums on: blocks 3 and 100 of one relation.
const fixture = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'heap-pages.bin'));
const block3 = fixture.subarray(0, BLOCK_SIZE);
const dir = mkdtempSync(join(tmpdir(), 'pgdr-page-reader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pool of `threads` reader threads for the test, closed whatever the test does. */
async function withPool(threads: number, test: (pool: PageReaderPool) => Promise<void>): Promise<void> {
  const pool = new PageReaderPool(threads);
  try {
    await test(pool);
  } finally {
    await pool.close();
  }
}

async function readAll(pool: PageReaderPool, path: string, size: number, firstBlock?: number, limited = false) {
  const chunks: Buffer[] = [];
  const outcome = await pool.read(
    { path, size, ...(firstBlock === undefined ? {} : { firstBlock }), startLsn: (1n << 62n).toString(), failpointDetail: path },
    limited ? rateLimiter(1024 * 1024 * 1024) : undefined,
    async (chunk, release) => {
      chunks.push(Buffer.from(chunk));
      release();
    },
  );
  return { outcome, data: Buffer.concat(chunks) };
}

describe('files-engine reader threads', () => {
  it('hands over a file larger than one chunk in order, with its sha256, reusing the chunk buffers', async () => {
    await withPool(2, async (pool) => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 12345);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(i, i);
    const path = join(dir, 'big');
    writeFileSync(path, data);
    const [a, b] = await Promise.all([readAll(pool, path, data.length, undefined, true), readAll(pool, path, data.length)]);
    for (const { outcome, data: got } of [a, b]) {
      expect(got.equals(data)).toBe(true);
      expect(outcome).toEqual({ sha256: sha256Hex(data), badBlocks: [] });
    }
    });
  });

  it('pads a file that shrank with zeros, and reports a vanished file', async () => {
    await withPool(1, async (pool) => {
    const path = join(dir, 'short');
    writeFileSync(path, Buffer.from('abc'));
    const { outcome, data } = await readAll(pool, path, 10);
    expect(data).toEqual(Buffer.from('abc\0\0\0\0\0\0\0'));
    expect(outcome).toEqual({ sha256: sha256Hex(data), badBlocks: [] });
    expect((await readAll(pool, join(dir, 'gone'), 10)).outcome).toBe(VANISHED_FILE);
    });
  });

  it('checks page checksums with the block numbers of the relation, and reports the blocks that fail', async () => {
    await withPool(1, async (pool) => {
    const path = join(dir, '16384');
    // Block 3's page stored at block 3 verifies; the same page at block 4 does not.
    writeFileSync(path, Buffer.concat([Buffer.alloc(3 * BLOCK_SIZE), block3, block3]));
    const { outcome } = await readAll(pool, path, 5 * BLOCK_SIZE, 0);
    expect(outcome).toMatchObject({ badBlocks: [4] });
    });
  });

  it('hashes whole files, and says why a file cannot be read', async () => {
    await withPool(2, async (pool) => {
    const path = join(dir, 'hashed');
    // Sizes around the 1 MiB reads, which alternate between two buffers: each byte differs, so a chunk hashed twice,
    // skipped or taken from the wrong buffer changes the digest.
    for (const size of [0, 1, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 - 5]) {
      writeFileSync(path, Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + (i >> 20)) & 0xff)));
      expect(await pool.hash(path)).toBe(sha256Hex(readFileSync(path)));
    }
    const err = await pool.hash(join(dir, 'missing')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReaderError);
    expect((err as ReaderError).code).toBe('ENOENT');
    });
  });

  it('stops the thread of a read whose consumer failed, and goes on with a fresh one', async () => {
    await withPool(1, async (pool) => {
    const path = join(dir, 'consumer');
    writeFileSync(path, Buffer.alloc(4 * 1024 * 1024, 1));
    const failed = pool.read({ path, size: 4 * 1024 * 1024, startLsn: '0', failpointDetail: path }, undefined, async () => {
      throw new Error('the bundle failed');
    });
    await expect(failed).rejects.toThrow('the bundle failed');
    expect((await readAll(pool, path, 4 * 1024 * 1024)).outcome).toMatchObject({ badBlocks: [] });
    });
  });
});
