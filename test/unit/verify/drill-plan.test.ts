import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../../src/postgres/lsn.js';
import { describeWalNeed, evaluateExpectation, planDrill } from '../../../src/verify/drill-plan.js';
import { archive, backup, range, seg } from './fixtures.js';

const a = backup({ backupId: '20240503T090000Z', startLsn: '0/2000028', stopLsn: '0/2000138' });
const b = backup({ backupId: '20240503T093000Z', startLsn: '0/5000028', stopLsn: '0/5000138' });
const fixed = (r: number) => ({ random: true, random01: () => r });

describe('planDrill', () => {
  it('restores the newest backup to the end of the archive', () => {
    const index = archive(range(1, 2, 8));
    const plan = planDrill([b, a], index, { random: false, random01: () => 0.5 });
    expect(plan.mode).toBe('newest');
    expect(plan.backup.backupId).toBe(b.backupId);
    expect(plan.target).toEqual({ kind: 'latest' });
    expect(plan.walNeed.segments.map((s) => s.name)).toEqual(range(1, 5, 8));
    expect(plan.reason).toMatch(/newest/);
  });

  it('picks a random position between the oldest stop and the newest segment, and the newest backup before it', () => {
    const index = archive(range(1, 2, 8));
    const lower = parseLsn(a.stopLsn);
    const upper = parseLsn('0/8000000');
    const early = planDrill([a, b], index, fixed(0));
    expect(early.target).toEqual({ kind: 'lsn', lsn: lower, inclusive: true });
    expect(early.backup.backupId).toBe(a.backupId);
    // Up to the segment after the target: the record that ends recovery may begin there.
    expect(early.walNeed.segments.map((s) => s.name)).toEqual(range(1, 2, 3));

    const late = planDrill([a, b], index, fixed(0.999999));
    expect(late.target.kind).toBe('lsn');
    const target = (late.target as { lsn: bigint }).lsn;
    expect(target).toBeGreaterThan(parseLsn('0/7FF0000'));
    expect(target).toBeLessThanOrEqual(upper);
    expect(late.backup.backupId).toBe(b.backupId);
    expect(late.walNeed.segments.map((s) => s.name)).toEqual(range(1, 5, 8));
    expect(late.reason).toContain(formatLsn(target));

    for (let r = 0; r < 1; r += 0.05) {
      const plan = planDrill([a, b], index, fixed(r));
      const lsn = (plan.target as { lsn: bigint }).lsn;
      expect(lsn >= lower && lsn <= upper).toBe(true);
      expect(parseLsn(plan.backup.stopLsn) <= lsn).toBe(true);
    }
  });

  it('falls back to the newest backup when the archive is too short for a random point', () => {
    const plan = planDrill([a], archive(range(1, 2, 2)), fixed(0.5));
    expect(plan.mode).toBe('random');
    expect(plan.target).toEqual({ kind: 'latest' });
    expect(plan.reason).toMatch(/too short/);
  });

  it('follows the latest timeline for a random target', () => {
    const index = archive([...range(1, 2, 4), ...range(2, 5, 9)], { 2: '1\t0/5000000\tfailover\n' });
    const plan = planDrill([a], index, fixed(0.5));
    expect(plan.walNeed.segments.every((s) => s.present)).toBe(true);
    expect(plan.walNeed.pathTimeline).toBe(2);
  });
});

describe('describeWalNeed', () => {
  it('says what a missing segment breaks', () => {
    const index = archive([...range(1, 5, 6), ...range(1, 8, 9)]);
    const plan = planDrill([b], index, { random: false, random01: () => 0 });
    expect(describeWalNeed(plan.walNeed, index)).toEqual({
      ok: false,
      detail: `backup 20240503T093000Z cannot reach 2024-05-03 10:08:00 UTC: segment ${seg(1, 7)} missing`,
    });
    const whole = archive(range(1, 5, 9));
    expect(describeWalNeed(planDrill([b], whole, { random: false, random01: () => 0 }).walNeed, whole)).toEqual({
      ok: true,
      detail: `all WAL the restore reads is archived (5 segments, ${seg(1, 5)} to ${seg(1, 9)})`,
    });
    const none = archive([seg(1, 9)]);
    expect(describeWalNeed(planDrill([b], none, { random: false, random01: () => 0 }).walNeed, none).detail).toBe(
      `backup 20240503T093000Z cannot become consistent: segment ${seg(1, 5)} missing (and 3 more of the 5 needed)`,
    );
  });
});

describe('evaluateExpectation', () => {
  const reference = new Date('2024-05-03T10:00:00Z');

  it('compares numbers, including the text node-postgres returns for bigint and numeric', () => {
    expect(evaluateExpectation('1234', { min: 1000 }, reference)).toEqual({ ok: true, detail: 'value 1234 is at least 1000' });
    expect(evaluateExpectation(12, { min: 1, max: 10 }, reference)).toEqual({ ok: false, detail: 'value 12 is not at most 10' });
    expect(evaluateExpectation('12.5', { min: 13 }, reference).ok).toBe(false);
    expect(evaluateExpectation('abc', { min: 1 }, reference)).toEqual({ ok: false, detail: 'value "abc" is not a number' });
  });

  it('compares equality by the expected type', () => {
    expect(evaluateExpectation('42', { equals: 42 }, reference).ok).toBe(true);
    expect(evaluateExpectation(true, { equals: true }, reference).ok).toBe(true);
    expect(evaluateExpectation('on', { equals: 'on' }, reference).ok).toBe(true);
    expect(evaluateExpectation('off', { equals: 'on' }, reference)).toEqual({ ok: false, detail: 'value "off" is not equal to "on"' });
  });

  it('measures freshness from the moment the copy represents', () => {
    expect(evaluateExpectation(new Date('2024-05-03T09:59:00Z'), { maxAgeSeconds: 120 }, reference)).toEqual({
      ok: true,
      detail: 'value 2024-05-03T09:59:00.000Z is at most 120 s old (it is 60 s older than 2024-05-03 10:00:00 UTC)',
    });
    expect(evaluateExpectation(new Date('2024-05-03T09:00:00Z'), { maxAgeSeconds: 120 }, reference).ok).toBe(false);
    expect(evaluateExpectation('2024-05-03T09:59:30Z', { maxAgeSeconds: 60 }, reference).ok).toBe(true);
    expect(evaluateExpectation(42, { maxAgeSeconds: 60 }, reference).ok).toBe(false);
  });

  it('fails on NULL', () => {
    expect(evaluateExpectation(null, { min: 0 }, reference)).toEqual({ ok: false, detail: 'the query returned NULL' });
  });
});
