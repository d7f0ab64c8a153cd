import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { compareLsn, formatLsn, lsnDiff, MAX_LSN, maxLsn, minLsn, parseLsn } from '../../../src/postgres/lsn.js';

describe('parseLsn', () => {
  it('reads both halves as hex, in either case', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16_b374d848n);
    expect(parseLsn('16/b374d848')).toBe(0x16_b374d848n);
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(MAX_LSN);
    expect(parseLsn('0/3000028')).toBe(0x3000028n);
  });

  it.each(['', '16', '/1', '1/', '1/2/3', '123456789/0', '0/123456789', ' 0/1', '0/1 ', 'G/0', '0x1/0', '-1/0', '1 /0'])(
    'rejects %j with a hint',
    (text) => {
      const err = (() => {
        try {
          parseLsn(text, 'target LSN');
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toMatch(/^target LSN .* is not a WAL location$/);
      expect((err as UsageError).hint).toContain('16/B374D848');
      expect((err as UsageError).exitCode).toBe(2);
    },
  );
});

describe('formatLsn', () => {
  it("writes PostgreSQL's %X/%X form: uppercase, no padding", () => {
    expect(formatLsn(0x16_b374d848n)).toBe('16/B374D848');
    expect(formatLsn(0x3000028n)).toBe('0/3000028');
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(0x1_00000000n)).toBe('1/0');
    expect(formatLsn(MAX_LSN)).toBe('FFFFFFFF/FFFFFFFF');
  });

  it('refuses values outside 64 bits', () => {
    expect(() => formatLsn(-1n)).toThrow(RangeError);
    expect(() => formatLsn(MAX_LSN + 1n)).toThrow(RangeError);
  });

  it('round-trips with parseLsn', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX_LSN }), (lsn) => {
        expect(parseLsn(formatLsn(lsn))).toBe(lsn);
        expect(formatLsn(lsn)).toMatch(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);
      }),
    );
  });
});

describe('comparisons', () => {
  it('orders by position, not by text', () => {
    // '9/0' sorts after '10/0' as text; as positions it comes first.
    expect(compareLsn(parseLsn('9/0'), parseLsn('10/0'))).toBe(-1);
    expect(compareLsn(parseLsn('0/A'), parseLsn('0/A'))).toBe(0);
    expect(compareLsn(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(1);
    expect(maxLsn(1n, 2n)).toBe(2n);
    expect(minLsn(1n, 2n)).toBe(1n);
  });

  it('lsnDiff is bytes from b to a, like pg_wal_lsn_diff', () => {
    expect(lsnDiff(parseLsn('1/0'), parseLsn('0/FFFFFFFF'))).toBe(1n);
    expect(lsnDiff(parseLsn('0/3000000'), parseLsn('0/4000000'))).toBe(-0x1000000n);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX_LSN }), fc.bigInt({ min: 0n, max: MAX_LSN }), (a, b) => {
        expect(b + lsnDiff(a, b)).toBe(a);
        expect(Math.sign(Number(lsnDiff(a, b)))).toBe(compareLsn(a, b));
      }),
    );
  });
});
