import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE, pageChecksum, pageIsNew, pageIsZero, pageLsnAtLeast, splitLsn, storedChecksum } from '../../../src/postgres/page.js';

// Two heap pages written by PostgreSQL 15 with data checksums on: blocks 3 and 100 of one relation.
const fixture = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'heap-pages.bin'));
const pages = [
  { page: fixture.subarray(0, BLOCK_SIZE), block: 3 },
  { page: fixture.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE), block: 100 },
];

describe('page checksums', () => {
  it('computes the checksum PostgreSQL stored in each page', () => {
    for (const { page, block } of pages) expect(pageChecksum(page, block)).toBe(storedChecksum(page));
  });

  it('mixes in the block number: the same page at another block does not verify', () => {
    const { page, block } = pages[0]!;
    expect(pageChecksum(page, block + 1)).not.toBe(storedChecksum(page));
  });

  it('detects one flipped bit anywhere in the page', () => {
    const { page, block } = pages[1]!;
    for (const offset of [0, 100, 4095, 8191]) {
      const copy = Buffer.from(page);
      copy[offset] = copy[offset]! ^ 0x04;
      expect(pageChecksum(copy, block)).not.toBe(storedChecksum(page));
    }
  });

  it('ignores pd_checksum itself, and reads an unaligned page', () => {
    const { page, block } = pages[0]!;
    const copy = Buffer.from(page);
    copy.writeUInt16LE(0, 8);
    expect(pageChecksum(copy, block)).toBe(storedChecksum(page));
    const unaligned = Buffer.alloc(BLOCK_SIZE + 1).subarray(1);
    page.copy(unaligned);
    expect(pageChecksum(unaligned, block)).toBe(storedChecksum(page));
  });

  it('reads pd_lsn and tells new pages', () => {
    const { page } = pages[0]!;
    expect(pageLsnAtLeast(page, splitLsn(1n))).toBe(true);
    expect(pageIsNew(page)).toBe(false);
    expect(pageIsNew(Buffer.alloc(BLOCK_SIZE))).toBe(true);
    expect(pageIsZero(Buffer.alloc(BLOCK_SIZE))).toBe(true);
    expect(pageIsZero(page)).toBe(false);
    const lsn = Buffer.alloc(BLOCK_SIZE);
    lsn.writeUInt32LE(0x1, 0);
    lsn.writeUInt32LE(0x2000028, 4);
    // pd_lsn 1/2000028: compared by both halves, the low one only when the high ones are equal.
    expect(pageLsnAtLeast(lsn, splitLsn(0x1_02000028n))).toBe(true);
    expect(pageLsnAtLeast(lsn, splitLsn(0x1_02000029n))).toBe(false);
    expect(pageLsnAtLeast(lsn, splitLsn(0x0_ffffffffn))).toBe(true);
    expect(pageLsnAtLeast(lsn, splitLsn(0x2_00000000n))).toBe(false);
    expect(pageLsnAtLeast(lsn, splitLsn(0x1_00000000n))).toBe(true);
    expect(splitLsn(0xabcdef01_23456789n)).toEqual({ high: 0xabcdef01, low: 0x23456789 });
  });
});
