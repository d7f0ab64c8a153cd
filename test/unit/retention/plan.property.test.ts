import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultPolicy, type Policy, type TierCounts } from '../../../src/config/policy.js';
import type { BackupManifest } from '../../../src/repo/manifest.js';
import { planRetention, planSnapshotRetention, planWalRetention } from '../../../src/retention/plan.js';
import { backup, segmentName } from './fixtures.js';

/**
 * Properties of the retention planners over random backup histories, policies and clocks:
 *   - the newest backup is always kept;
 *   - the kept set is exactly what the tiers, the PITR window and the newest rule name (checked against an
 *     independent, deliberately naive implementation of each tier);
 *   - every kept backup stays restorable: none of the WAL from its start to its stop is removed, history files
 *     never are, and nothing at or after the oldest kept backup's start is;
 *   - every moment from the window's start on that was restorable before is restorable after;
 *   - planning again over what is left changes nothing (backups and WAL).
 */

const MINUTE = 60_000;
const DAY = 86_400_000;

interface Step {
  gapMinutes: number;
  minutes: number;
  walGap: number;
  walLength: number;
  newTimeline: boolean;
}

interface History {
  backups: BackupManifest[];
  /** Timeline and first/last position of each backup, by id. */
  wal: Map<string, { timeline: number; startPos: number; stopPos: number }>;
  archive: string[];
}

function buildHistory(startMs: number, steps: readonly Step[]): History {
  const backups: BackupManifest[] = [];
  const wal = new Map<string, { timeline: number; startPos: number; stopPos: number }>();
  let time = startMs;
  let position = 3;
  let timeline = 1;
  for (const step of steps) {
    if (step.newTimeline) timeline++;
    time += step.gapMinutes * MINUTE;
    const startPos = position + step.walGap;
    const stopPos = startPos + step.walLength;
    const manifest = backup({ start: new Date(time), minutes: step.minutes, timeline, startPos, stopPos });
    backups.push(manifest);
    wal.set(manifest.backupId, { timeline, startPos, stopPos });
    time += step.minutes * MINUTE;
    position = stopPos + 1;
  }
  // Every position on every timeline up to the end, a backup history file at each start, and the history files.
  const archive: string[] = [];
  for (let tl = 1; tl <= timeline; tl++) {
    for (let pos = 0; pos <= position + 1; pos++) archive.push(segmentName(tl, pos));
    if (tl > 1) archive.push(`${tl.toString(16).toUpperCase().padStart(8, '0')}.history`);
  }
  for (const { timeline: tl, startPos } of wal.values()) archive.push(`${segmentName(tl, startPos)}.00000028.backup`);
  return { backups, wal, archive };
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  // From a minute to three weeks between backups: several a day, daily, and long silences.
  gapMinutes: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 600, max: 3 * 24 * 60 }), fc.integer({ min: 1, max: 21 * 24 * 60 })),
  minutes: fc.integer({ min: 1, max: 300 }),
  walGap: fc.integer({ min: 0, max: 4 }),
  walLength: fc.integer({ min: 0, max: 3 }),
  newTimeline: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
});

const tiersArb: fc.Arbitrary<TierCounts> = fc.oneof(
  fc.record({
    daily: fc.integer({ min: 0, max: 8 }),
    weekly: fc.integer({ min: 0, max: 5 }),
    monthly: fc.integer({ min: 0, max: 4 }),
    yearly: fc.integer({ min: 0, max: 2 }),
  }),
  // No tier at all: only the safety rules (newest, window) keep anything.
  fc.constant({ daily: 0, weekly: 0, monthly: 0, yearly: 0 }),
);

const scenarioArb = fc.record({
  startMs: fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
  steps: fc.array(stepArb, { minLength: 0, maxLength: 40 }),
  tiers: tiersArb,
  windowMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 90 }).map((d) => d * DAY), fc.integer({ min: 0, max: 90 * DAY })),
  // The clock lands anywhere from ten days before the last backup ended to two months after.
  nowOffsetMs: fc.integer({ min: -10 * DAY, max: 60 * DAY }),
});

function policyOf(tiers: TierCounts, windowMs: number): Policy {
  const policy = defaultPolicy();
  policy.retention.backups = tiers;
  policy.retention.pitrWindow = windowMs;
  return policy;
}

/** A naive tier oracle: groups by a period key computed differently from src/retention/tiers.ts. */
function oracleTierPicks(backups: readonly BackupManifest[], tiers: TierCounts): Set<string> {
  const keyOf: Record<keyof TierCounts, (d: Date) => number> = {
    daily: (d) => Math.floor(d.getTime() / DAY),
    // The Monday that starts the ISO week, as a day number (1970-01-01 was a Thursday, day 0).
    weekly: (d) => {
      const day = Math.floor(d.getTime() / DAY);
      return day - ((day + 3) % 7);
    },
    monthly: (d) => d.getUTCFullYear() * 12 + d.getUTCMonth(),
    yearly: (d) => d.getUTCFullYear(),
  };
  const picks = new Set<string>();
  for (const tier of Object.keys(keyOf) as (keyof TierCounts)[]) {
    const newestPerPeriod = new Map<number, BackupManifest>();
    for (const b of backups) {
      const key = keyOf[tier](new Date(b.startTime));
      const current = newestPerPeriod.get(key);
      if (!current || b.startTime > current.startTime || (b.startTime === current.startTime && b.backupId > current.backupId)) {
        newestPerPeriod.set(key, b);
      }
    }
    const periods = [...newestPerPeriod.keys()].sort((a, b) => b - a).slice(0, tiers[tier]);
    for (const period of periods) picks.add(newestPerPeriod.get(period)!.backupId);
  }
  return picks;
}

function newestByStop(backups: readonly BackupManifest[]): BackupManifest | undefined {
  return [...backups].sort((a, b) => b.stopTime.localeCompare(a.stopTime) || b.backupId.localeCompare(a.backupId))[0];
}

function positionOf(name: string): number {
  return parseInt(name.slice(8, 16), 16) * 256 + parseInt(name.slice(16, 24), 16);
}

describe('retention planner properties', () => {
  it('keeps the newest backup, exactly the tiers, the window and the WAL every kept backup needs; planning again changes nothing', () => {
    fc.assert(
      fc.property(scenarioArb, ({ startMs, steps, tiers, windowMs, nowOffsetMs }) => {
        const history = buildHistory(startMs, steps);
        const { backups } = history;
        const lastStop = backups.length > 0 ? new Date(backups[backups.length - 1]!.stopTime).getTime() : startMs;
        const now = new Date(lastStop + nowOffsetMs);
        const policy = policyOf(tiers, windowMs);
        const plan = planRetention(backups, policy, now);
        const keptIds = new Set(plan.kept.map((b) => b.backupId));

        // Every backup has exactly one verdict, and kept/deleted partition the input.
        expect(plan.backups.map((v) => v.backupId).sort()).toEqual(backups.map((b) => b.backupId).sort());
        expect(plan.kept.length + plan.deleted.length).toBe(backups.length);
        for (const v of plan.backups) expect(v.verdict === 'keep').toBe(keptIds.has(v.backupId));

        // The newest complete backup is never deleted.
        const newest = newestByStop(backups);
        if (newest) expect(keptIds.has(newest.backupId)).toBe(true);

        // The tiers hold, and nothing is kept that no rule names.
        const expected = oracleTierPicks(backups, tiers);
        if (newest) expected.add(newest.backupId);
        const windowStart = now.getTime() - windowMs;
        const finishedByWindow = backups.filter((b) => new Date(b.stopTime).getTime() <= windowStart);
        const anchor = newestByStop(finishedByWindow) ?? [...backups].sort((a, b) => a.stopTime.localeCompare(b.stopTime) || a.backupId.localeCompare(b.backupId))[0];
        if (anchor) expected.add(anchor.backupId);
        expect([...keptIds].sort()).toEqual([...expected].sort());

        // Every kept backup stays restorable: its own WAL, the history files, and everything after the oldest start.
        const walPlan = planWalRetention(plan.kept, history.archive);
        const removed = new Set(walPlan.deleteFiles);
        for (const b of plan.kept) {
          const { timeline, startPos, stopPos } = history.wal.get(b.backupId)!;
          for (let pos = startPos; pos <= stopPos; pos++) expect(removed.has(segmentName(timeline, pos))).toBe(false);
        }
        for (const name of removed) expect(name.endsWith('.history')).toBe(false);
        if (plan.kept.length > 0) {
          const oldestStart = Math.min(...plan.kept.map((b) => history.wal.get(b.backupId)!.startPos));
          for (const name of removed) expect(positionOf(name)).toBeLessThan(oldestStart);
          // ... and what goes is everything before it (except history files).
          const expectedRemoved = history.archive.filter((n) => !n.endsWith('.history') && positionOf(n) < oldestStart);
          expect([...removed].sort()).toEqual(expectedRemoved.sort());
        } else {
          expect(removed.size).toBe(0);
        }

        // Every moment from the window's start on that some backup could reach, a kept backup still reaches.
        const moments = [windowStart, now.getTime(), ...backups.map((b) => new Date(b.stopTime).getTime())].filter((t) => t >= windowStart);
        for (const t of moments) {
          const reachable = backups.some((b) => new Date(b.stopTime).getTime() <= t);
          const stillReachable = plan.kept.some((b) => new Date(b.stopTime).getTime() <= t);
          expect(stillReachable).toBe(reachable);
        }

        // Idempotent: planning over what is left keeps all of it, for the same reasons, and removes no more WAL.
        const again = planRetention(plan.kept, policy, now);
        expect(again.deleted).toEqual([]);
        expect(again.backups).toEqual(plan.backups.filter((v) => v.verdict === 'keep'));
        const leftWal = history.archive.filter((n) => !removed.has(n));
        const walAgain = planWalRetention(again.kept, leftWal);
        expect(walAgain.deleteFiles).toEqual([]);
      }),
      { numRuns: 400 },
    );
  });

  it('keeps etcd snapshots by the tiers and the newest, and is idempotent', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
        fc.array(fc.integer({ min: 1, max: 10 * 24 * 60 }), { maxLength: 50 }),
        tiersArb,
        (start, gaps, tiers) => {
          let t = start;
          const snapshots = gaps.map((gap, i) => {
            t += gap * MINUTE;
            return { snapshotId: `snap-${String(i).padStart(3, '0')}`, time: new Date(t) };
          });
          const plan = planSnapshotRetention(snapshots, tiers);
          expect(plan.kept.length + plan.deleted.length).toBe(snapshots.length);
          if (snapshots.length > 0) expect(plan.kept).toContain(snapshots[snapshots.length - 1]!.snapshotId);
          const asBackups = snapshots.map((s) => ({ backupId: s.snapshotId, startTime: s.time.toISOString() }) as BackupManifest);
          const expected = oracleTierPicks(asBackups, tiers);
          if (snapshots.length > 0) expected.add(snapshots[snapshots.length - 1]!.snapshotId);
          expect([...plan.kept].sort()).toEqual([...expected].sort());
          const again = planSnapshotRetention(snapshots.filter((s) => plan.kept.includes(s.snapshotId)), tiers);
          expect(again.deleted).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});
