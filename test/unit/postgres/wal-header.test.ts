import { describe, expect, it } from 'vitest';
import { readWalSegmentHeader } from '../../../src/postgres/wal-header.js';

function header(magic: number, info: number, sysid: bigint): Buffer {
  const page = Buffer.alloc(8192);
  page.writeUInt16LE(magic, 0);
  page.writeUInt16LE(info, 2);
  page.writeUInt32LE(1, 4);
  page.writeBigUInt64LE(0x3000000n, 8);
  page.writeBigUInt64LE(sysid, 24);
  page.writeUInt32LE(16 * 1024 * 1024, 32);
  page.writeUInt32LE(8192, 36);
  return page;
}

describe('WAL segment long page header', () => {
  it('reads the system identifier, version and segment size', () => {
    const parsed = readWalSegmentHeader(header(0xd110, 0x0002 | 0x0004, 7312345678901234567n));
    expect(parsed).toEqual({
      magic: 0xd110,
      pgMajor: 15,
      timeline: 1,
      pageAddress: 0x3000000n,
      systemIdentifier: '7312345678901234567',
      segmentSize: 16 * 1024 * 1024,
      blockSize: 8192,
    });
  });

  it('returns null without a long header or when too short', () => {
    expect(readWalSegmentHeader(header(0xd110, 0, 1n))).toBeNull();
    expect(readWalSegmentHeader(Buffer.alloc(10))).toBeNull();
  });

  it('leaves the major version unknown for a magic it does not know', () => {
    expect(readWalSegmentHeader(header(0xd0ff, 2, 1n))?.pgMajor).toBeUndefined();
  });
});
