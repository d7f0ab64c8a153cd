import { describe, expect, it } from 'vitest';
import { cronProblem, nextRuns, timeZoneProblem } from '../../../src/schedule/cron.js';

const iso = (dates: Date[]): string[] => dates.map((d) => d.toISOString());

describe('cronProblem', () => {
  it('accepts five fields, and six with seconds when allowed', () => {
    expect(cronProblem('0 2 * * *')).toBeNull();
    expect(cronProblem('0 6 1 * *')).toBeNull();
    expect(cronProblem('15 */6 * * *')).toBeNull();
    expect(cronProblem('*/10 * * * * *')).toBeNull();
    expect(cronProblem('*/10 * * * * *', { allowSeconds: false })).toMatch(/expected 5 fields/);
  });

  it('says what is wrong', () => {
    expect(cronProblem('0 25 * * *')).toMatch(/^hour: /);
    expect(cronProblem('61 * * * *')).toMatch(/^minute: /);
    expect(cronProblem('0 2 * *')).toBe('expected 5 fields (or 6 with seconds first), got 4');
    expect(cronProblem('@daily')).toMatch(/nicknames/);
    expect(cronProblem('')).toBe('the expression is empty');
  });
});

describe('timeZoneProblem', () => {
  it('knows IANA names', () => {
    expect(timeZoneProblem('UTC')).toBeNull();
    expect(timeZoneProblem('Europe/Berlin')).toBeNull();
    expect(timeZoneProblem('Mars/Olympus_Mons')).toMatch(/not a time zone/);
  });
});

describe('nextRuns (the clock is an argument)', () => {
  const after = new Date('2024-05-03T10:17:42Z'); // a Friday

  it('daily at 02:00 UTC', () => {
    expect(iso(nextRuns('0 2 * * *', 'UTC', after, 3))).toEqual(['2024-05-04T02:00:00.000Z', '2024-05-05T02:00:00.000Z', '2024-05-06T02:00:00.000Z']);
  });

  it('never returns the moment itself, only later ones', () => {
    expect(iso(nextRuns('0 2 * * *', 'UTC', new Date('2024-05-04T02:00:00Z'), 1))).toEqual(['2024-05-05T02:00:00.000Z']);
    expect(iso(nextRuns('0 2 * * *', 'UTC', new Date('2024-05-04T01:59:59.999Z'), 1))).toEqual(['2024-05-04T02:00:00.000Z']);
  });

  it('monthly on the 1st, across a year end', () => {
    expect(iso(nextRuns('0 6 1 * *', 'UTC', new Date('2024-11-15T00:00:00Z'), 3))).toEqual([
      '2024-12-01T06:00:00.000Z',
      '2025-01-01T06:00:00.000Z',
      '2025-02-01T06:00:00.000Z',
    ]);
  });

  it('every 4 hours, weekly on Sunday, and every 10 seconds', () => {
    expect(iso(nextRuns('0 */4 * * *', 'UTC', after, 3))).toEqual(['2024-05-03T12:00:00.000Z', '2024-05-03T16:00:00.000Z', '2024-05-03T20:00:00.000Z']);
    expect(iso(nextRuns('0 5 * * 0', 'UTC', after, 2))).toEqual(['2024-05-05T05:00:00.000Z', '2024-05-12T05:00:00.000Z']);
    expect(iso(nextRuns('*/10 * * * * *', 'UTC', after, 3))).toEqual(['2024-05-03T10:17:50.000Z', '2024-05-03T10:18:00.000Z', '2024-05-03T10:18:10.000Z']);
  });

  it('reads wall-clock time in the schedule time zone, across DST', () => {
    // Europe/Berlin: UTC+1 until 2024-03-31 02:00, then UTC+2.
    expect(iso(nextRuns('0 2 * * *', 'Europe/Berlin', new Date('2024-03-29T12:00:00Z'), 3))).toEqual([
      '2024-03-30T01:00:00.000Z',
      // 02:00 does not exist on 2024-03-31 in Berlin: no run that day, as with cron.
      '2024-04-01T00:00:00.000Z',
      '2024-04-02T00:00:00.000Z',
    ]);
    expect(iso(nextRuns('30 6 * * *', 'Europe/Berlin', new Date('2024-03-29T12:00:00Z'), 3))).toEqual([
      '2024-03-30T05:30:00.000Z',
      '2024-03-31T04:30:00.000Z',
      '2024-04-01T04:30:00.000Z',
    ]);
  });

  it('finds Feb 29 four years ahead, looks no further than the horizon, and refuses impossible dates', () => {
    expect(iso(nextRuns('0 0 29 2 *', 'UTC', new Date('2024-03-01T00:00:00Z'), 1))).toEqual(['2028-02-29T00:00:00.000Z']);
    expect(nextRuns('0 0 29 2 *', 'UTC', new Date('2024-03-01T00:00:00Z'), 1, 400)).toEqual([]);
    expect(cronProblem('0 0 31 2 *')).toMatch(/impossible day of month/);
  });

  it('refuses an invalid expression or zone', () => {
    expect(() => nextRuns('0 25 * * *', 'UTC', after, 1)).toThrow(/hour/);
    expect(() => nextRuns('0 2 * * *', 'Nowhere/Land', after, 1)).toThrow(/time zone/);
  });
});
