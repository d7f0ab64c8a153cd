import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { parseLsn } from '../../../src/postgres/lsn.js';
import {
  formatWalSegmentName,
  historyFileName,
  isValidWalSegmentSize,
  MIB,
  nextWalSegment,
  parseWalFileName,
  parseWalSegmentName,
  segmentsPerLogId,
  segmentStartLsn,
  timelineHex,
  walSegmentForLsn,
  walSegmentFromNumber,
  walSegmentNumber,
  walSegmentRange,
  type WalSegmentName,
} from '../../../src/postgres/wal-file-name.js';

const GIB = 1024 * MIB;
const name = (text: string) => parseWalSegmentName(text);
const format = (segments: Iterable<WalSegmentName>) => [...segments].map(formatWalSegmentName);

describe('segment sizes', () => {
  it('accepts powers of two from 1 MiB to 1 GiB', () => {
    for (let size = MIB; size <= GIB; size *= 2) expect(isValidWalSegmentSize(size)).toBe(true);
    for (const size of [0, MIB / 2, 3 * MIB, 2 * GIB, 16 * MIB + 1, 16.5 * MIB, -16 * MIB]) {
      expect(isValidWalSegmentSize(size)).toBe(false);
    }
    expect(() => segmentsPerLogId(3 * MIB)).toThrow(UsageError);
  });

  it('fits 0x100000000 bytes of WAL in one log id', () => {
    expect(segmentsPerLogId()).toBe(256);
    expect(segmentsPerLogId(16 * MIB)).toBe(256);
    expect(segmentsPerLogId(MIB)).toBe(4096);
    expect(segmentsPerLogId(GIB)).toBe(4);
  });
});

describe('parseWalFileName', () => {
  it('classifies each kind of file PostgreSQL archives', () => {
    expect(parseWalFileName('00000001000000000000000A')).toEqual({
      kind: 'segment',
      name: '00000001000000000000000A',
      segmentName: { timeline: 1, logId: 0, segment: 10 },
    });
    expect(parseWalFileName('00000002.history')).toEqual({ kind: 'history', name: '00000002.history', timeline: 2 });
    expect(parseWalFileName('0000000200000016000000B3.partial')).toEqual({
      kind: 'partial',
      name: '0000000200000016000000B3.partial',
      segmentName: { timeline: 2, logId: 0x16, segment: 0xb3 },
    });
    expect(parseWalFileName('000000010000000000000002.00000028.backup')).toEqual({
      kind: 'backup',
      name: '000000010000000000000002.00000028.backup',
      segmentName: { timeline: 1, logId: 0, segment: 2 },
      startOffset: 0x28,
    });
    expect(parseWalFileName('0000000A.history')).toMatchObject({ timeline: 10 });
    expect(parseWalFileName('FFFFFFFF0000000000000001')).toMatchObject({ segmentName: { timeline: 0xffffffff } });
  });

  it.each([
    '',
    '00000001000000000000000a', // PostgreSQL writes and recognises only uppercase
    '0000000100000000000000',
    '0000000100000000000000000',
    '00000000.history',
    '000000000000000000000001',
    '00000002.HISTORY',
    '0000002.history',
    '000000010000000000000002.backup',
    '000000010000000000000002.0028.backup',
    '000000010000000000000002.partial.zst',
    '000000010000000000000002.zst',
    'archive_status',
    '../000000010000000000000002',
  ])('rejects %j', (text) => {
    expect(() => parseWalFileName(text)).toThrow(UsageError);
  });

  it('checks the segment part against the segment size when it is given', () => {
    expect(parseWalFileName('0000000100000000000000FF', 16 * MIB).kind).toBe('segment');
    expect(() => parseWalFileName('000000010000000000000100', 16 * MIB)).toThrow(/does not exist with 16 MiB/);
    expect(parseWalFileName('000000010000000000000100', MIB).kind).toBe('segment');
    expect(parseWalFileName('000000010000000000000100').kind).toBe('segment');
    expect(() => parseWalFileName('000000010000000000000004', GIB)).toThrow(UsageError);
    expect(() => parseWalFileName('000000010000000000000004.partial', GIB)).toThrow(UsageError);
    expect(() => parseWalFileName('000000010000000000000001.01000000.backup', 16 * MIB)).toThrow(/offset/);
  });

  it('parseWalSegmentName accepts plain segments only', () => {
    expect(parseWalSegmentName('000000030000000100000002')).toEqual({ timeline: 3, logId: 1, segment: 2 });
    expect(() => parseWalSegmentName('00000003.history')).toThrow(/history file is not a WAL segment/);
    expect(() => parseWalSegmentName('000000030000000100000002.partial')).toThrow(UsageError);
  });
});

describe('names and positions', () => {
  it('formats names with uppercase, zero-padded parts', () => {
    expect(formatWalSegmentName({ timeline: 1, logId: 0x16, segment: 0xb3 })).toBe('0000000100000016000000B3');
    expect(timelineHex(10)).toBe('0000000A');
    expect(historyFileName(5)).toBe('00000005.history');
    expect(() => timelineHex(0)).toThrow(RangeError);
    expect(() => formatWalSegmentName({ timeline: 1, logId: -1, segment: 0 })).toThrow(RangeError);
  });

  it('finds the segment that holds an LSN', () => {
    expect(formatWalSegmentName(walSegmentForLsn(parseLsn('16/B374D848'), 1))).toBe('0000000100000016000000B3');
    expect(formatWalSegmentName(walSegmentForLsn(parseLsn('0/3000000'), 2))).toBe('000000020000000000000003');
    expect(formatWalSegmentName(walSegmentForLsn(parseLsn('0/2FFFFFF'), 2))).toBe('000000020000000000000002');
    expect(formatWalSegmentName(walSegmentForLsn(parseLsn('16/B374D848'), 1, GIB))).toBe('000000010000001600000002');
    expect(formatWalSegmentName(walSegmentForLsn(parseLsn('16/B374D848'), 1, MIB))).toBe('000000010000001600000B37');
  });

  it('gives the first LSN of a segment', () => {
    expect(segmentStartLsn(name('0000000100000016000000B3'))).toBe(parseLsn('16/B3000000'));
    expect(segmentStartLsn(name('000000010000001600000002'), GIB)).toBe(parseLsn('16/80000000'));
    expect(() => segmentStartLsn(name('000000010000000000000100'))).toThrow(RangeError);
  });

  it('walSegmentForLsn and segmentStartLsn agree for every size', () => {
    const sizes = fc.integer({ min: 20, max: 30 }).map((bits) => 2 ** bits);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }), sizes, fc.integer({ min: 1, max: 0xffffffff }), (lsn, size, tli) => {
        const segment = walSegmentForLsn(lsn, tli, size);
        const start = segmentStartLsn(segment, size);
        expect(start <= lsn && lsn < start + BigInt(size)).toBe(true);
        expect(walSegmentFromNumber(tli, walSegmentNumber(segment, size), size)).toEqual(segment);
        expect(parseWalSegmentName(formatWalSegmentName(segment), size)).toEqual(segment);
      }),
    );
  });
});

describe('nextWalSegment', () => {
  it('moves to the next log id after segment FF at 16 MiB', () => {
    expect(formatWalSegmentName(nextWalSegment(name('0000000100000000000000FE')))).toBe('0000000100000000000000FF');
    expect(formatWalSegmentName(nextWalSegment(name('0000000100000000000000FF')))).toBe('000000010000000100000000');
    expect(formatWalSegmentName(nextWalSegment(name('0000000500000016000000FF'), 16 * MIB))).toBe('000000050000001700000000');
  });

  it('moves to the next log id after segment 3 at 1 GiB', () => {
    expect(formatWalSegmentName(nextWalSegment(name('000000010000000000000002'), GIB))).toBe('000000010000000000000003');
    expect(formatWalSegmentName(nextWalSegment(name('000000010000000000000003'), GIB))).toBe('000000010000000100000000');
  });

  it('moves to the next log id after segment FFF at 1 MiB', () => {
    expect(formatWalSegmentName(nextWalSegment(name('000000010000000000000FFF'), MIB))).toBe('000000010000000100000000');
  });

  it('stops at the end of the address space', () => {
    expect(() => nextWalSegment(name('00000001FFFFFFFF000000FF'))).toThrow(RangeError);
  });
});

describe('walSegmentRange', () => {
  it('lists both ends and everything between, across a log id', () => {
    expect(format(walSegmentRange(name('0000000100000000000000FE'), name('000000010000000100000001')))).toEqual([
      '0000000100000000000000FE',
      '0000000100000000000000FF',
      '000000010000000100000000',
      '000000010000000100000001',
    ]);
    expect(format(walSegmentRange(name('000000020000000000000003'), name('000000020000000000000003')))).toEqual([
      '000000020000000000000003',
    ]);
    expect(format(walSegmentRange(name('000000010000000000000003'), name('000000010000000100000000'), GIB))).toEqual([
      '000000010000000000000003',
      '000000010000000100000000',
    ]);
  });

  it('refuses, when called, a range over two timelines or running backwards', () => {
    expect(() => walSegmentRange(name('000000010000000000000003'), name('000000020000000000000004'))).toThrow(/two timelines/);
    expect(() => walSegmentRange(name('000000010000000000000004'), name('000000010000000000000003'))).toThrow(/backwards/);
  });

  it('has end - start + 1 consecutive members', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 40n) - 601n }), fc.integer({ min: 0, max: 600 }), (startNumber, length) => {
        const start = walSegmentFromNumber(3, startNumber);
        const end = walSegmentFromNumber(3, startNumber + BigInt(length));
        const members = [...walSegmentRange(start, end)];
        expect(members).toHaveLength(length + 1);
        members.forEach((m, i) => expect(walSegmentNumber(m)).toBe(startNumber + BigInt(i)));
      }),
      { numRuns: 50 },
    );
  });
});
