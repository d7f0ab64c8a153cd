import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import { parseLsn } from '../../../src/postgres/lsn.js';
import {
  formatTimelineHistory,
  parseTimelineHistory,
  rootTimelineHistory,
  timelineOfLsn,
  timelineSpans,
  walSegmentsOnPath,
  type TimelineHistory,
} from '../../../src/postgres/timeline-history.js';
import { formatWalSegmentName, MIB, segmentStartLsn } from '../../../src/postgres/wal-file-name.js';

// Timeline 4 branched off 3 and died; 5 is the survivor. Its history, as PostgreSQL writes it (a blank line
// between entries), with a comment added by hand.
const HISTORY_OF_5 = [
  '1\t0/3000000\tno recovery target specified',
  '',
  '2\t0/50000A8\tno recovery target specified',
  '',
  '# promoted by Patroni after the failover of node b',
  '3\t0/7123456\tbefore 2026-11-23 12:53:04+00',
  '',
].join('\n');

const history5 = parseTimelineHistory(5, HISTORY_OF_5);
const lsn = parseLsn;
const names = (h: TimelineHistory, from: string, to: string, segSize?: number) =>
  walSegmentsOnPath(h, lsn(from), lsn(to), segSize).map(formatWalSegmentName);

/** Histories with 0..6 switches, parents rising with gaps (dead branches), switch points never going back. */
const arbitraryHistory: fc.Arbitrary<TimelineHistory> = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.bigInt({ min: 0n, max: 1n << 28n }), fc.constantFrom('no recovery target specified', 'at restore point "x"', '')), {
    maxLength: 6,
  })
  .map((steps) => {
    let timeline = 1;
    let position = 0n;
    const entries = steps.map(([gap, advance, reason]) => {
      const entry = { timeline, switchLsn: position + advance, reason };
      timeline += gap;
      position += advance;
      return entry;
    });
    return { timeline, entries };
  });

describe('parseTimelineHistory', () => {
  it('reads every switch, skipping blank lines and comments', () => {
    expect(history5).toEqual({
      timeline: 5,
      entries: [
        { timeline: 1, switchLsn: 0x3000000n, reason: 'no recovery target specified' },
        { timeline: 2, switchLsn: 0x50000a8n, reason: 'no recovery target specified' },
        { timeline: 3, switchLsn: 0x7123456n, reason: 'before 2026-11-23 12:53:04+00' },
      ],
    });
  });

  it('accepts CRLF, spaces instead of tabs, lowercase hex and a missing reason', () => {
    expect(parseTimelineHistory(3, '  1 0/3000000\r\n2\t0/5a000000\treason with\ttabs\r\n')).toEqual({
      timeline: 3,
      entries: [
        { timeline: 1, switchLsn: 0x3000000n, reason: '' },
        { timeline: 2, switchLsn: 0x5a000000n, reason: 'reason with\ttabs' },
      ],
    });
  });

  it('gives timeline 1 an empty history', () => {
    expect(parseTimelineHistory(1, '')).toEqual(rootTimelineHistory());
  });

  it.each([
    ['a line without a switch point', '1\n', /expected/],
    ['a switch point that is not an LSN', '1\t0/XYZ\treason\n', /not an LSN/],
    ['a too-long LSN half', '1\t0/123456789\treason\n', /not an LSN/],
    ['a non-numeric timeline', 'one\t0/3000000\treason\n', /expected/],
    ['timeline 0', '0\t0/3000000\treason\n', /out of range/],
    ['parents out of order', '2\t0/3000000\tx\n1\t0/4000000\tx\n', /timeline 1 follows timeline 2/],
    ['a repeated parent', '1\t0/3000000\tx\n1\t0/4000000\tx\n', /parents must increase/],
    ['a switch point going backwards', '1\t0/5000000\tx\n2\t0/4000000\tx\n', /before the previous one/],
    ['a parent as new as the timeline', '1\t0/3000000\tx\n5\t0/4000000\tx\n', /not older than timeline 5/],
    ['no entry at all', '# nothing\n\n', /names no parent of timeline 5/],
  ])('refuses %s', (_what, content, message) => {
    expect(() => parseTimelineHistory(5, content)).toThrow(RepositoryError);
    expect(() => parseTimelineHistory(5, content)).toThrow(message);
  });

  it('names the file and line of the damage', () => {
    expect(() => parseTimelineHistory(10, '1\t0/3000000\tx\n\nbad line\n')).toThrow(
      /timeline history 0000000A\.history line 3 is damaged/,
    );
  });

  it('reads back what formatTimelineHistory writes', () => {
    expect(parseTimelineHistory(5, formatTimelineHistory(history5))).toEqual(history5);
    fc.assert(
      fc.property(arbitraryHistory, (history) => {
        expect(parseTimelineHistory(history.timeline, formatTimelineHistory(history))).toEqual(history);
      }),
    );
  });
});

describe('timelineOfLsn', () => {
  it('gives a switch point to the new timeline', () => {
    expect(timelineOfLsn(history5, lsn('0/0'))).toBe(1);
    expect(timelineOfLsn(history5, lsn('0/2FFFFFF'))).toBe(1);
    expect(timelineOfLsn(history5, lsn('0/3000000'))).toBe(2);
    expect(timelineOfLsn(history5, lsn('0/50000A7'))).toBe(2);
    expect(timelineOfLsn(history5, lsn('0/50000A8'))).toBe(3);
    expect(timelineOfLsn(history5, lsn('0/7123455'))).toBe(3);
    expect(timelineOfLsn(history5, lsn('0/7123456'))).toBe(5);
    expect(timelineOfLsn(history5, lsn('FFFFFFFF/FFFFFFFF'))).toBe(5);
    expect(timelineOfLsn(rootTimelineHistory(), lsn('16/B374D848'))).toBe(1);
  });

  it('never names timeline 4, the dead branch', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }), (position) => {
        expect([1, 2, 3, 5]).toContain(timelineOfLsn(history5, position));
      }),
    );
  });

  it('agrees with timelineSpans', () => {
    expect(timelineSpans(history5)).toEqual([
      { timeline: 1, begin: 0n, end: 0x3000000n },
      { timeline: 2, begin: 0x3000000n, end: 0x50000a8n },
      { timeline: 3, begin: 0x50000a8n, end: 0x7123456n },
      { timeline: 5, begin: 0x7123456n, end: undefined },
    ]);
  });
});

describe('walSegmentsOnPath', () => {
  it('follows 1 → 2 → 3 → 5, reading each switch segment from the new timeline', () => {
    expect(names(history5, '0/2000028', '0/8000000')).toEqual([
      '000000010000000000000002',
      // 2 begins exactly at a segment boundary, so timeline 1 ends with a whole segment 2.
      '000000020000000000000003',
      '000000020000000000000004',
      // The switch to 3 lies inside segment 5: that segment exists on 2 and 3; recovery reads 3's copy.
      '000000030000000000000005',
      '000000030000000000000006',
      '000000050000000000000007',
      '000000050000000000000008',
    ]);
  });

  it('includes the segment holding toLsn and the one holding fromLsn', () => {
    expect(names(history5, '0/7123456', '0/7123456')).toEqual(['000000050000000000000007']);
    expect(names(history5, '0/2FFFFFF', '0/3000000')).toEqual(['000000010000000000000002', '000000020000000000000003']);
    expect(names(rootTimelineHistory(), '0/FE000000', '1/1000000')).toEqual([
      '0000000100000000000000FE',
      '0000000100000000000000FF',
      '000000010000000100000000',
      '000000010000000100000001',
    ]);
  });

  it('honours the segment size', () => {
    // At 64 MiB, segment 0 holds the switch to 2, and segment 1 both the switch to 3 and the one to 5.
    expect(names(history5, '0/1000000', '0/9000000', 64 * MIB)).toEqual([
      '000000020000000000000000',
      '000000050000000000000001',
      '000000050000000000000002',
    ]);
    // At 128 MiB all three switches happen inside segment 0.
    expect(names(history5, '0/1000000', '0/9000000', 128 * MIB)).toEqual([
      '000000050000000000000000',
      '000000050000000000000001',
    ]);
  });

  it('refuses a range that runs backwards', () => {
    expect(() => walSegmentsOnPath(history5, lsn('0/8000000'), lsn('0/7000000'))).toThrow(RangeError);
  });

  it('lists consecutive segments, each from the timeline holding its last byte', () => {
    const segSizes = fc.constantFrom(MIB, 16 * MIB, 1024 * MIB);
    fc.assert(
      fc.property(arbitraryHistory, fc.bigInt({ min: 0n, max: 1n << 30n }), fc.bigInt({ min: 0n, max: 1n << 28n }), segSizes, (history, from, length, segSize) => {
        const to = from + length;
        const size = BigInt(segSize);
        const segments = walSegmentsOnPath(history, from, to, segSize);
        expect(segments).toHaveLength(Number(to / size - from / size) + 1);
        let previousTimeline = 0;
        segments.forEach((segment, i) => {
          const start = segmentStartLsn(segment, segSize);
          expect(start).toBe((from / size + BigInt(i)) * size);
          expect(segment.timeline).toBe(timelineOfLsn(history, start + size - 1n));
          expect(segment.timeline).toBeGreaterThanOrEqual(previousTimeline);
          previousTimeline = segment.timeline;
        });
      }),
      { numRuns: 200 },
    );
  });
});
