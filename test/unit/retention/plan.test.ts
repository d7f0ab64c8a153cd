import { describe, expect, it } from 'vitest';
import { defaultPolicy, type Policy, type TierCounts } from '../../../src/config/policy.js';
import { RepositoryError } from '../../../src/errors.js';
import { planGarbage, planRetention, planSnapshotRetention, planWalRetention } from '../../../src/retention/plan.js';
import { isoWeekLabel, periodLabel, selectTiers } from '../../../src/retention/tiers.js';
import { backup, segmentName } from './fixtures.js';

const DAY = 86_400_000;

function policy(backups: Partial<TierCounts>, pitrWindowDays = 0): Policy {
  const p = defaultPolicy();
  p.retention.backups = { daily: 0, weekly: 0, monthly: 0, yearly: 0, ...backups };
  p.retention.pitrWindow = pitrWindowDays * DAY;
  return p;
}

function verdicts(plan: ReturnType<typeof planRetention>): Record<string, string> {
  return Object.fromEntries(plan.backups.map((b) => [b.backupId, b.reason]));
}

describe('periods', () => {
  it('labels days, months and years in UTC', () => {
    const t = new Date('2024-05-03T23:30:00-02:00'); // 2024-05-04T01:30Z
    expect(periodLabel('daily', t)).toBe('2024-05-04');
    expect(periodLabel('monthly', t)).toBe('2024-05');
    expect(periodLabel('yearly', t)).toBe('2024');
  });

  it('labels ISO weeks, including weeks that belong to the neighbouring year', () => {
    expect(isoWeekLabel(new Date('2024-05-03T12:00:00Z'))).toBe('2024-W18'); // a Friday
    expect(isoWeekLabel(new Date('2024-04-29T00:00:00Z'))).toBe('2024-W18'); // its Monday
    expect(isoWeekLabel(new Date('2024-05-05T23:59:59Z'))).toBe('2024-W18'); // its Sunday
    expect(isoWeekLabel(new Date('2024-05-06T00:00:00Z'))).toBe('2024-W19');
    expect(isoWeekLabel(new Date('2024-12-30T00:00:00Z'))).toBe('2025-W01');
    expect(isoWeekLabel(new Date('2021-01-03T00:00:00Z'))).toBe('2020-W53');
    expect(isoWeekLabel(new Date('2021-01-04T00:00:00Z'))).toBe('2021-W01');
    expect(isoWeekLabel(new Date('2026-11-23T13:00:00Z'))).toBe('2026-W48');
  });

  it('keeps the newest item of each of the N newest periods that have one, not of the last N calendar days', () => {
    const items = [
      { id: 'a', time: new Date('2024-01-01T01:00Z') },
      { id: 'b', time: new Date('2024-01-01T05:00Z') },
      { id: 'c', time: new Date('2024-03-01T05:00Z') },
      { id: 'd', time: new Date('2024-03-09T05:00Z') },
    ];
    const labels = selectTiers(items, { daily: 3, weekly: 0, monthly: 2, yearly: 1 });
    expect(Object.fromEntries(labels)).toEqual({
      d: ['daily 2024-03-09', 'monthly 2024-03', 'yearly 2024'],
      c: ['daily 2024-03-01'],
      b: ['daily 2024-01-01', 'monthly 2024-01'],
    });
  });
});

describe('planRetention', () => {
  // Twelve backups over five weeks of April and May 2024 (the same history the integration test makes for real).
  const history = [
    '2024-04-10T02:00:00Z',
    '2024-04-20T02:00:00Z',
    '2024-04-28T02:00:00Z',
    '2024-05-01T02:00:00Z',
    '2024-05-05T02:00:00Z',
    '2024-05-08T02:00:00Z',
    '2024-05-12T02:00:00Z',
    '2024-05-13T02:00:00Z',
    '2024-05-14T02:00:00Z',
    '2024-05-14T14:00:00Z',
    '2024-05-15T02:00:00Z',
    '2024-05-16T02:00:00Z',
  ].map((start) => backup({ start }));

  it('keeps exactly the daily, weekly and monthly tiers and the backup the PITR window starts from', () => {
    const plan = planRetention(history, policy({ daily: 3, weekly: 2, monthly: 2 }, 7), new Date('2024-05-16T12:00:00Z'));
    expect(verdicts(plan)).toEqual({
      '20240410T020000Z': 'delete',
      '20240420T020000Z': 'delete',
      '20240428T020000Z': 'keep (monthly 2024-04)',
      '20240501T020000Z': 'delete',
      '20240505T020000Z': 'delete',
      '20240508T020000Z': 'keep (PITR window)',
      '20240512T020000Z': 'keep (weekly 2024-W19)',
      '20240513T020000Z': 'delete',
      '20240514T020000Z': 'delete',
      '20240514T140000Z': 'keep (daily 2024-05-14)',
      '20240515T020000Z': 'keep (daily 2024-05-15)',
      '20240516T020000Z': 'keep (daily 2024-05-16, weekly 2024-W20, monthly 2024-05)',
    });
    expect(plan.windowStart.toISOString()).toBe('2024-05-09T12:00:00.000Z');
    expect(plan.windowBackupId).toBe('20240508T020000Z');
    expect(plan.backups.map((b) => b.backupId)).toEqual(history.map((b) => b.backupId));
    expect(plan.kept.map((b) => b.backupId)).toEqual(['20240428T020000Z', '20240508T020000Z', '20240512T020000Z', '20240514T140000Z', '20240515T020000Z', '20240516T020000Z']);
    expect(plan.deleted).toHaveLength(6);
    expect(plan.backups.find((b) => b.backupId === '20240516T020000Z')?.keptBy).toEqual(['daily 2024-05-16', 'weekly 2024-W20', 'monthly 2024-05', 'newest']);
  });

  it('does not depend on the order of its input', () => {
    const p = policy({ daily: 3, weekly: 2, monthly: 2 }, 7);
    const now = new Date('2024-05-16T12:00:00Z');
    expect(planRetention([...history].reverse(), p, now).backups).toEqual(planRetention(history, p, now).backups);
  });

  it('always keeps the newest complete backup, even when every tier is 0 and there is no window', () => {
    const plan = planRetention(history, policy({}, 0), new Date('2024-06-01T00:00:00Z'));
    expect(plan.kept.map((b) => b.backupId)).toEqual(['20240516T020000Z']);
    expect(verdicts(plan)['20240516T020000Z']).toBe('keep (PITR window, newest)');
  });

  it('names the newest rule alone when the window is kept by an older backup', () => {
    const plan = planRetention(history, policy({}, 2), new Date('2024-05-16T12:00:00Z'));
    expect(plan.kept.map((b) => `${b.backupId} ${verdicts(plan)[b.backupId]}`)).toEqual([
      '20240514T020000Z keep (PITR window)',
      '20240516T020000Z keep (newest)',
    ]);
  });

  it('keeps the oldest backup when every backup finished inside the window, so the window starts as early as it can', () => {
    const plan = planRetention(history, policy({ daily: 1 }, 90), new Date('2024-05-16T12:00:00Z'));
    expect(plan.kept.map((b) => b.backupId)).toEqual(['20240410T020000Z', '20240516T020000Z']);
    expect(plan.windowBackupId).toBe('20240410T020000Z');
  });

  it('judges the window by when a backup finished, not when it started', () => {
    const long = backup({ start: '2024-05-09T10:00:00Z', minutes: 180 }); // finishes 13:00, after the window start
    const earlier = backup({ start: '2024-05-08T10:00:00Z' });
    const plan = planRetention([earlier, long, backup({ start: '2024-05-16T02:00:00Z' })], policy({ daily: 1 }, 7), new Date('2024-05-16T12:00:00Z'));
    expect(plan.windowBackupId).toBe(earlier.backupId);
    expect(verdicts(plan)[long.backupId]).toBe('delete');
  });

  it('uses the yearly tier', () => {
    const years = ['2021-06-01T00:00:00Z', '2022-03-01T00:00:00Z', '2022-09-01T00:00:00Z', '2023-01-01T00:00:00Z'].map((start) => backup({ start }));
    const plan = planRetention(years, policy({ yearly: 2 }), new Date('2023-02-01T00:00:00Z'));
    expect(verdicts(plan)).toEqual({
      '20210601T000000Z': 'delete',
      '20220301T000000Z': 'delete',
      '20220901T000000Z': 'keep (yearly 2022)',
      '20230101T000000Z': 'keep (yearly 2023)',
    });
  });

  it('plans nothing for an empty repository and refuses a duplicated backup id', () => {
    const plan = planRetention([], defaultPolicy(), new Date());
    expect(plan).toMatchObject({ backups: [], kept: [], deleted: [], windowBackupId: undefined });
    const one = backup({ start: '2024-05-01T00:00:00Z' });
    expect(() => planRetention([one, one], defaultPolicy(), new Date())).toThrow(RepositoryError);
  });

  it('keeps with the default policy (7 daily, 4 weekly, 12 monthly, 30 days of PITR) a year of nightly backups down to the tiers', () => {
    const nightly = Array.from({ length: 365 }, (_, i) => backup({ start: new Date(Date.UTC(2024, 0, 1, 2) + i * DAY) }));
    const plan = planRetention(nightly, defaultPolicy(), new Date('2024-12-30T12:00:00Z'));
    // 7 daily (Dec 24-30; Monday Dec 30 opens 2025-W01 and Sunday Dec 29 closes 2024-W52), weekly adds Sundays
    // Dec 22 and 15, monthly the last day of Jan..Nov, and the window starts from Nov 30, a monthly one.
    expect(plan.kept.length).toBe(7 + 2 + 11);
    expect(verdicts(plan)['20241130T020000Z']).toBe('keep (monthly 2024-11)');
    expect(plan.windowBackupId).toBe('20241130T020000Z');
    expect(verdicts(plan)['20241222T020000Z']).toBe('keep (weekly 2024-W51)');
    expect(verdicts(plan)['20241230T020000Z']).toBe('keep (daily 2024-12-30, weekly 2025-W01, monthly 2024-12)');
  });
});

describe('planWalRetention', () => {
  it('removes WAL before the oldest kept backup on every timeline and keeps history files', () => {
    const kept = [
      backup({ start: '2024-05-10T00:00:00Z', startPos: 0x105, stopPos: 0x106 }),
      backup({ start: '2024-05-12T00:00:00Z', timeline: 2, startPos: 0x110, stopPos: 0x110 }),
    ];
    const archived = [
      segmentName(1, 0xff),
      segmentName(1, 0x100),
      segmentName(1, 0x104),
      `${segmentName(1, 0x104)}.00000028.backup`,
      segmentName(1, 0x105),
      `${segmentName(1, 0x105)}.00000028.backup`,
      segmentName(1, 0x10a),
      `${segmentName(1, 0x10b)}.partial`,
      '00000002.history',
      segmentName(2, 0x104), // a branch that forked from timeline 1 early
      segmentName(2, 0x10b),
      segmentName(2, 0x110),
      'not-a-wal-file',
    ];
    const plan = planWalRetention(kept, archived);
    expect(plan.keepFrom).toBe('000000010000000100000005');
    expect(plan.keepFromBackupId).toBe(kept[0]!.backupId);
    expect(plan.deleteFiles).toEqual([
      '0000000100000000000000FF',
      '000000010000000100000000',
      '000000010000000100000004',
      '000000010000000100000004.00000028.backup',
      '000000020000000100000004',
    ]);
    expect(plan.ranges).toEqual([
      { timeline: 1, from: '0000000100000000000000FF', to: '000000010000000100000004.00000028.backup', files: 4 },
      { timeline: 2, from: '000000020000000100000004', to: '000000020000000100000004', files: 1 },
    ]);
    expect(plan.keptFiles).toBe(7);
    expect(plan.unrecognised).toEqual(['not-a-wal-file']);
  });

  it('keeps all WAL when no backup is kept: it may be the start of the next backup', () => {
    const plan = planWalRetention([], [segmentName(1, 1), segmentName(1, 2)]);
    expect(plan).toMatchObject({ keepFrom: undefined, deleteFiles: [], ranges: [], keptFiles: 2 });
  });

  it('refuses a kept backup whose start segment is not a segment name', () => {
    const bad = { ...backup({ start: '2024-05-10T00:00:00Z' }), startWal: '00000001.history' };
    expect(() => planWalRetention([bad], [])).toThrow(/names "00000001.history" as its first WAL segment/);
  });
});

describe('planSnapshotRetention', () => {
  it('keeps etcd snapshots by their own tiers and always the newest', () => {
    const snapshots = [
      { snapshotId: 's1', time: '2024-05-01T00:00:00Z' },
      { snapshotId: 's2', time: new Date('2024-05-01T12:00:00Z') },
      { snapshotId: 's3', time: '2024-05-02T00:00:00Z' },
      { snapshotId: 's4', time: '2024-05-02T06:00:00Z' },
    ];
    expect(planSnapshotRetention(snapshots, { daily: 2, weekly: 0, monthly: 0, yearly: 0 }).snapshots).toEqual([
      { snapshotId: 's1', verdict: 'delete', reason: 'delete' },
      { snapshotId: 's2', verdict: 'keep', reason: 'keep (daily 2024-05-01)' },
      { snapshotId: 's3', verdict: 'delete', reason: 'delete' },
      { snapshotId: 's4', verdict: 'keep', reason: 'keep (daily 2024-05-02)' },
    ]);
    const none = planSnapshotRetention(snapshots, { daily: 0, weekly: 0, monthly: 0, yearly: 0 });
    expect(none.kept).toEqual(['s4']);
    expect(none.snapshots.at(-1)?.reason).toBe('keep (newest)');
  });

  it('refuses a snapshot without a readable time', () => {
    expect(() => planSnapshotRetention([{ snapshotId: 'x', time: 'yesterday' }], defaultPolicy().retention.etcdSnapshots)).toThrow(/unreadable time/);
  });
});

describe('planGarbage', () => {
  it('removes interrupted backups only once the grace period has passed since their last write', () => {
    const now = new Date('2024-05-16T12:00:00Z');
    const result = planGarbage(
      [
        { id: 'young', lastModified: new Date('2024-05-16T01:00:00Z') },
        { id: 'old', lastModified: new Date('2024-05-14T12:00:00Z') },
        { id: 'edge', lastModified: new Date('2024-05-15T12:00:00Z') },
        { id: 'future', lastModified: new Date('2024-05-17T12:00:00Z') },
      ],
      DAY,
      now,
    );
    expect(result.map((g) => [g.id, g.verdict])).toEqual([
      ['edge', 'delete'],
      ['future', 'keep'],
      ['old', 'delete'],
      ['young', 'keep'],
    ]);
    expect(result[2]!.reason).toBe('delete (no manifest; last written 2d ago, past the 1d grace period)');
    expect(result[3]!.reason).toBe('keep (no manifest, but written 11h ago: within the 1d grace period it may still be running)');
  });
});
