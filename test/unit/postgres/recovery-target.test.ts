import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import {
  describeRecoveryTarget,
  parseRecoveryTarget,
  parseTargetTime,
  type RecoveryTarget,
} from '../../../src/postgres/recovery-target.js';

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('parseRecoveryTarget: which target', () => {
  it('treats no target at all as latest', () => {
    expect(parseRecoveryTarget({})).toEqual({ kind: 'latest' });
    expect(parseRecoveryTarget({ target: 'latest' })).toEqual({ kind: 'latest' });
    expect(parseRecoveryTarget({ targetInclusive: true })).toEqual({ kind: 'latest' });
  });

  it('reads an LSN target, inclusive unless told otherwise', () => {
    expect(parseRecoveryTarget({ targetLsn: '16/B374D848' })).toEqual({ kind: 'lsn', lsn: 0x16_b374d848n, inclusive: true });
    expect(parseRecoveryTarget({ targetLsn: '0/3000028', targetInclusive: false })).toEqual({
      kind: 'lsn',
      lsn: 0x3000028n,
      inclusive: false,
    });
    expect(usageError(() => parseRecoveryTarget({ targetLsn: '0/XYZ' })).message).toMatch(/^target LSN '0\/XYZ'/);
  });

  it('reads a time target', () => {
    const target = parseRecoveryTarget({ targetTime: '2026-11-23T12:53:04Z', targetInclusive: false });
    expect(target).toMatchObject({ kind: 'time', text: '2026-11-23 12:53:04+00:00', inclusive: false });
    expect((target as Extract<RecoveryTarget, { kind: 'time' }>).at.toISOString()).toBe('2026-11-23T12:53:04.000Z');
  });

  it('reads a restore point name', () => {
    expect(parseRecoveryTarget({ targetName: 'before-migration-42' })).toEqual({ kind: 'name', name: 'before-migration-42' });
    expect(parseRecoveryTarget({ targetName: 'x'.repeat(63) })).toEqual({ kind: 'name', name: 'x'.repeat(63) });
    // 21 three-byte characters: 63 bytes.
    expect(parseRecoveryTarget({ targetName: '€'.repeat(21) })).toMatchObject({ kind: 'name' });
  });

  it.each([
    ['empty', ''],
    ['64 bytes', 'x'.repeat(64)],
    ['64 bytes of 22 characters', '€'.repeat(21) + 'x'],
    ['a newline', 'a\nb'],
    ['a tab', 'a\tb'],
    ['DEL', 'a\u007fb'],
    ['a C1 control', 'a\u0085b'],
  ])('refuses a restore point name with %s', (_what, name) => {
    expect(usageError(() => parseRecoveryTarget({ targetName: name })).message).toMatch(/^restore point name/);
  });

  it('refuses two targets at once and names them', () => {
    const err = usageError(() => parseRecoveryTarget({ targetTime: '2026-11-23T12:53:04Z', targetLsn: '0/1' }));
    expect(err.message).toMatch(/^give only one of --target-time, --target-lsn, --target-name and --target/);
    expect(err.message).toContain('--target-time and --target-lsn');
    expect(err.exitCode).toBe(2);
    usageError(() => parseRecoveryTarget({ targetName: 'x', target: 'latest' }));
    usageError(() => parseRecoveryTarget({ targetName: 'x', targetLsn: '0/1', targetTime: '2026-11-23T12:53:04Z' }));
  });

  it('refuses targets PostgreSQL would not understand or pgdr does not offer', () => {
    expect(usageError(() => parseRecoveryTarget({ target: 'immediate' })).hint).toContain('--target latest');
    usageError(() => parseRecoveryTarget({ target: 'LATEST' }));
    usageError(() => parseRecoveryTarget({ target: '' }));
  });

  it('refuses an exclusive name or latest target', () => {
    expect(usageError(() => parseRecoveryTarget({ targetName: 'x', targetInclusive: false })).message).toMatch(
      /applies only to --target-time and --target-lsn/,
    );
    usageError(() => parseRecoveryTarget({ targetInclusive: false }));
  });
});

describe('parseTargetTime', () => {
  it.each([
    ['2026-11-23T12:53:04Z', '2026-11-23 12:53:04+00:00', '2026-11-23T12:53:04.000Z'],
    ['2026-11-23t12:53:04z', '2026-11-23 12:53:04+00:00', '2026-11-23T12:53:04.000Z'],
    ['2026-11-23T12:53:04.123456+02:00', '2026-11-23 12:53:04.123456+02:00', '2026-11-23T10:53:04.123Z'],
    ['2026-11-23T12:53:04+0200', '2026-11-23 12:53:04+02:00', '2026-11-23T10:53:04.000Z'],
    ['2026-11-23T12:53:04+02', '2026-11-23 12:53:04+02:00', '2026-11-23T10:53:04.000Z'],
    ['2026-11-23 12:53:04.123456+00', '2026-11-23 12:53:04.123456+00:00', '2026-11-23T12:53:04.123Z'],
    ['2026-11-23 12:53:04+05:30', '2026-11-23 12:53:04+05:30', '2026-11-23T07:23:04.000Z'],
    ['2026-11-23 00:10:00-03', '2026-11-23 00:10:00-03:00', '2026-11-23T03:10:00.000Z'],
    ['2026-11-23T12:53Z', '2026-11-23 12:53:00+00:00', '2026-11-23T12:53:00.000Z'],
    ['2026-11-23T12:53:04,5Z', '2026-11-23 12:53:04.5+00:00', '2026-11-23T12:53:04.500Z'],
    ['2024-02-29T23:59:59.999999-00:30', '2024-02-29 23:59:59.999999-00:30', '2024-03-01T00:29:59.999Z'],
    ['2000-02-29T00:00:00Z', '2000-02-29 00:00:00+00:00', '2000-02-29T00:00:00.000Z'],
    ['1969-12-31T23:59:59.9995Z', '1969-12-31 23:59:59.9995+00:00', '1969-12-31T23:59:59.999Z'],
  ])('reads %s', (input, text, iso) => {
    const parsed = parseTargetTime(input);
    expect(parsed.text).toBe(text);
    expect(parsed.at.toISOString()).toBe(iso);
  });

  it('keeps microseconds exactly', () => {
    const a = parseTargetTime('2026-11-23T12:53:04.123456Z');
    const b = parseTargetTime('2026-11-23T12:53:04.123457Z');
    expect(b.epochMicros - a.epochMicros).toBe(1n);
    expect(a.at.getTime()).toBe(b.at.getTime());
    expect(parseTargetTime('2026-11-23T14:53:04.123456+02:00').epochMicros).toBe(a.epochMicros);
  });

  it('refuses a time without a zone, and says what to do', () => {
    const err = usageError(() => parseTargetTime('2026-11-23 12:53:04'));
    expect(err.message).toBe("target time '2026-11-23 12:53:04' has no time zone");
    expect(err.hint).toBe('add Z or an offset such as +00:00; pgdr does not guess');
    expect(usageError(() => parseTargetTime('2026-11-23T12:53:04.123456')).message).toMatch(/has no time zone$/);
  });

  it.each([
    ['February 30', '2026-02-30T12:00:00Z', /February 2026 has 28 days, not 30/],
    ['February 29 outside a leap year', '2100-02-29T12:00:00Z', /February 2100 has 28 days/],
    ['April 31', '2026-04-31T12:00:00Z', /April 2026 has 30 days/],
    ['day 0', '2026-04-00T12:00:00Z', /has 30 days, not 00/],
    ['month 13', '2026-13-01T12:00:00Z', /month 13/],
    ['month 0', '2026-00-01T12:00:00Z', /month 00/],
    ['hour 25', '2026-11-23T25:00:00Z', /hour 25/],
    ['hour 24', '2026-11-23T24:00:00Z', /hour 24/],
    ['minute 60', '2026-11-23T12:60:00Z', /minute 60/],
    ['second 60', '2026-11-23T12:00:60Z', /second 60/],
    ['year 0', '0000-01-01T00:00:00Z', /year 0000/],
    ['nanoseconds', '2026-11-23T12:53:04.123456789Z', /at most 6 fractional digits/],
    ['offset 16 hours', '2026-11-23T12:53:04+16:00', /offset/],
    ['offset 60 minutes', '2026-11-23T12:53:04+01:60', /offset/],
  ])('refuses %s', (_what, input, message) => {
    expect(usageError(() => parseTargetTime(input)).message).toMatch(message);
  });

  it.each([
    '',
    'yesterday',
    '2026-11-23',
    '2026-11-23Z',
    '12:53:04Z',
    '2026-11-23T12Z',
    '2026-11-23  12:53:04Z',
    '2026-11-23T12:53:04 Z',
    '2026-11-23 12:53:04 Europe/Berlin',
    '2026-11-23T12:53:04+2',
    '2026-11-23T12:53:04+02:0',
    '26-11-23T12:53:04Z',
    '2026-11-23T12:53:04.Z',
    ' 2026-11-23T12:53:04Z',
  ])('refuses %j as not a timestamp', (input) => {
    const err = usageError(() => parseTargetTime(input));
    expect(err.message).toMatch(/is not a timestamp pgdr understands$/);
    expect(err.hint).toContain('2026-11-23T12:53:04Z');
  });

  it('agrees with Date for every millisecond-precision instant and offset', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('1000-01-02T00:00:00Z'), max: new Date('9999-12-30T23:59:59.999Z'), noInvalidDate: true }),
        fc.integer({ min: -15 * 60, max: 15 * 60 }),
        (instant, offsetMinutes) => {
          // Write the instant in local time at the given offset, then read it back.
          const local = new Date(instant.getTime() + offsetMinutes * 60_000).toISOString().slice(0, 23);
          const abs = Math.abs(offsetMinutes);
          const zone = `${offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
          const parsed = parseTargetTime(`${local}${zone}`);
          expect(parsed.at.getTime()).toBe(instant.getTime());
          expect(parsed.epochMicros).toBe(BigInt(instant.getTime()) * 1000n);
          expect(parsed.text).toBe(`${local.replace('T', ' ')}${zone}`);
          expect(parseTargetTime(parsed.text).epochMicros).toBe(parsed.epochMicros);
        },
      ),
    );
  });
});

describe('describeRecoveryTarget', () => {
  it('says what the restore will stop at', () => {
    expect(describeRecoveryTarget(parseRecoveryTarget({ targetTime: '2026-11-23T12:53:04+02' }))).toBe(
      'time 2026-11-23 12:53:04+02:00',
    );
    expect(describeRecoveryTarget(parseRecoveryTarget({ targetLsn: '0/3000028', targetInclusive: false }))).toBe(
      'LSN 0/3000028 (exclusive)',
    );
    expect(describeRecoveryTarget(parseRecoveryTarget({ targetName: 'nightly' }))).toBe('restore point "nightly"');
    expect(describeRecoveryTarget(parseRecoveryTarget({}))).toBe('latest (end of the archived WAL)');
  });
});

describe('zone names', () => {
  it('reads the names that can only mean UTC, as PostgreSQL prints them', () => {
    for (const text of ['2026-11-23 12:53:04 UTC', '2026-11-23 12:53:04.5 utc', '2026-11-23T12:53:04GMT', '2026-11-23 12:53:04 Etc/UTC']) {
      const parsed = parseTargetTime(text);
      expect(parsed.at.toISOString().slice(0, 19)).toBe('2026-11-23T12:53:04');
      expect(parsed.text.endsWith('+00:00')).toBe(true);
    }
  });

  it('refuses other zone names instead of guessing an offset', () => {
    expect(() => parseTargetTime('2026-11-23 12:53:04 Europe/Berlin')).toThrow(/not a timestamp pgdr understands/);
    expect(() => parseTargetTime('2026-11-23 12:53:04 EST')).toThrow(/not a timestamp pgdr understands/);
  });
});
