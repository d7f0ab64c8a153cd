import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultPolicy, type Policy, type TierCounts } from '../../../src/config/policy.js';
import type { BackupManifest } from '../../../src/repo/manifest.js';
import { chainDependants, chainDependencies, missingChainMembers } from '../../../src/retention/chains.js';
import { planGarbage, planRetention, planWalRetention } from '../../../src/retention/plan.js';
import { filesBackup, segmentName } from './fixtures.js';

/**
 * Retention with backup chains: a kept diff or incr keeps every backup it is restored from, tiers treat a diff or
 * incr as a backup of its day, a backup whose chain lacks a member is never counted as restorable (and never
 * deleted), and WAL is kept from the oldest backup kept for any reason.
 */

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

/** A weekly full on Sunday 2024-05-05 (or `sunday`) and a daily incr Monday to Saturday, each on the one before. */
function week(sunday = '2024-05-05'): BackupManifest[] {
  const start = Date.parse(`${sunday}T02:00:00Z`);
  const backups: BackupManifest[] = [filesBackup({ start: new Date(start), type: 'full' })];
  for (let day = 1; day <= 6; day++) backups.push(filesBackup({ start: new Date(start + day * DAY), type: 'incr', chain: backups }));
  return backups;
}

describe('planRetention with chains', () => {
  it('keeps the full and the middle incrs of a kept incr, and says which backups need them', () => {
    const [full, i1, i2, i3, i4, i5, i6] = week();
    const plan = planRetention([full!, i1!, i2!, i3!, i4!, i5!, i6!], policy({ daily: 2 }), new Date('2024-05-11T12:00:00Z'));
    expect(plan.deleted).toEqual([]);
    expect(verdicts(plan)).toEqual({
      [full!.backupId]: `keep (needed by ${i6!.backupId} (incr), ${i5!.backupId} (incr))`,
      [i1!.backupId]: `keep (needed by ${i6!.backupId} (incr), ${i5!.backupId} (incr))`,
      [i2!.backupId]: `keep (needed by ${i6!.backupId} (incr), ${i5!.backupId} (incr))`,
      [i3!.backupId]: `keep (needed by ${i6!.backupId} (incr), ${i5!.backupId} (incr))`,
      [i4!.backupId]: `keep (needed by ${i6!.backupId} (incr), ${i5!.backupId} (incr))`,
      [i5!.backupId]: `keep (daily 2024-05-10; needed by ${i6!.backupId} (incr))`,
      [i6!.backupId]: 'keep (daily 2024-05-11)',
    });
    const verdict = (id: string) => plan.backups.find((b) => b.backupId === id)!;
    expect(verdict(full!.backupId)).toMatchObject({ type: 'full', keptBy: [], neededBy: [i5!.backupId, i6!.backupId], missingChain: [] });
    expect(verdict(i6!.backupId)).toMatchObject({ type: 'incr', keptBy: ['daily 2024-05-11', 'PITR window', 'newest'], neededBy: [] });
  });

  it('deletes a whole older chain once nothing kept is restored from it', () => {
    const first = week('2024-05-05');
    const second = week('2024-05-12');
    const plan = planRetention([...first, ...second], policy({ daily: 2 }), new Date('2024-05-18T12:00:00Z'));
    expect(plan.deleted.map((b) => b.backupId)).toEqual(first.map((b) => b.backupId));
    expect(plan.kept.map((b) => b.backupId)).toEqual(second.map((b) => b.backupId));
  });

  it('keeps what a diff builds on, and lets the incrs it replaces go', () => {
    const full = filesBackup({ start: '2024-05-05T02:00:00Z', type: 'full' });
    const incr = filesBackup({ start: '2024-05-06T02:00:00Z', type: 'incr', chain: [full] });
    const diff = filesBackup({ start: '2024-05-07T02:00:00Z', type: 'diff', chain: [full] });
    const next = filesBackup({ start: '2024-05-08T02:00:00Z', type: 'incr', chain: [full, diff] });
    const plan = planRetention([full, incr, diff, next], policy({ daily: 1 }), new Date('2024-05-08T12:00:00Z'));
    expect(verdicts(plan)).toEqual({
      [full.backupId]: `keep (needed by ${next.backupId} (incr))`,
      [incr.backupId]: 'delete',
      [diff.backupId]: `keep (needed by ${next.backupId} (incr))`,
      [next.backupId]: 'keep (daily 2024-05-08)',
    });
  });

  it('names the newest two dependants and counts the rest', () => {
    const [full, ...incrs] = week();
    const diffs = incrs.map((i) => filesBackup({ start: new Date(Date.parse(i.startTime) + 3_600_000), type: 'diff', chain: [full!] }));
    const plan = planRetention([full!, ...diffs], policy({ daily: 6 }), new Date('2024-05-11T12:00:00Z'));
    expect(verdicts(plan)[full!.backupId]).toBe(`keep (needed by ${diffs[5]!.backupId} (diff), ${diffs[4]!.backupId} (diff) and 4 more)`);
  });

  it('treats an incr as the backup of its day, week and month, so the tiers keep incrs and their chains keep the full', () => {
    const backups = week();
    const plan = planRetention(backups, policy({ weekly: 1, monthly: 1 }), new Date('2024-05-20T12:00:00Z'));
    const saturday = backups[6]!;
    expect(verdicts(plan)[saturday.backupId]).toBe('keep (weekly 2024-W19, monthly 2024-05)');
    expect(plan.deleted).toEqual([]);
    expect(plan.backups.find((b) => b.backupId === backups[0]!.backupId)?.reason).toBe(`keep (needed by ${saturday.backupId} (incr))`);
  });

  it('keeps the chain of the incr the PITR window starts from', () => {
    const older = filesBackup({ start: '2024-04-28T02:00:00Z', type: 'full' });
    const backups = week();
    // The window starts on Wednesday noon: Wednesday's incr is the newest backup that had finished by then.
    const plan = planRetention([older, ...backups], policy({ daily: 1 }, 3), new Date('2024-05-11T12:00:00Z'));
    expect(plan.windowBackupId).toBe(backups[3]!.backupId);
    expect(verdicts(plan)[backups[3]!.backupId]).toBe(`keep (PITR window; needed by ${backups[6]!.backupId} (incr))`);
    expect(plan.deleted.map((b) => b.backupId)).toEqual([older.backupId]);
  });

  it('does not count a backup whose chain lacks a member, keeps it, and keeps the members it still has', () => {
    const oldFull = filesBackup({ start: '2024-04-28T02:00:00Z', type: 'full' });
    const [full, i1, i2] = week();
    // `full` was deleted by hand: i1 and i2 cannot be restored.
    const plan = planRetention([oldFull, i1!, i2!], policy({ daily: 1 }), new Date('2024-05-07T12:00:00Z'));
    expect(plan.backups.map((b) => b.missingChain)).toEqual([[], [full!.backupId], [full!.backupId]]);
    // The newest backup that can be restored is the old full: it is kept as the day's and as the newest.
    expect(verdicts(plan)[oldFull.backupId]).toBe('keep (daily 2024-04-28)');
    expect(plan.backups[0]!.keptBy).toEqual(['daily 2024-04-28', 'PITR window', 'newest']);
    const cannot = `cannot be restored: it builds on ${full!.backupId}, which the repository does not hold as complete; kept until someone looks, run pgdr verify`;
    expect(verdicts(plan)[i1!.backupId]).toBe(`keep (needed by ${i2!.backupId} (incr); ${cannot})`);
    expect(verdicts(plan)[i2!.backupId]).toBe(`keep (${cannot})`);
    expect(plan.deleted).toEqual([]);
  });

  it('keeps WAL from the start of a full kept only because an incr needs it', () => {
    const full = filesBackup({ start: '2024-05-05T02:00:00Z', type: 'full', startPos: 10, stopPos: 11 });
    const other = filesBackup({ start: '2024-05-05T08:00:00Z', type: 'full', startPos: 14, stopPos: 15 });
    const incr = filesBackup({ start: '2024-05-06T02:00:00Z', type: 'incr', chain: [full], startPos: 20, stopPos: 21 });
    const plan = planRetention([full, other, incr], policy({ daily: 1 }), new Date('2024-05-06T12:00:00Z'));
    expect(plan.kept.map((b) => b.backupId)).toEqual([full.backupId, incr.backupId]);
    const archive = Array.from({ length: 25 }, (_, pos) => segmentName(1, pos));
    const wal = planWalRetention(plan.kept, archive);
    expect(wal.keepFromBackupId).toBe(full.backupId);
    expect(wal.keepFrom).toBe(segmentName(1, 10));
    expect(wal.deleteFiles).toEqual(archive.slice(0, 10));
  });
});

describe('chain helpers', () => {
  it('names the members a backup lacks', () => {
    expect(missingChainMembers({ chain: ['a', 'b', 'c'] }, new Set(['b']))).toEqual(['a', 'c']);
    expect(missingChainMembers({}, new Set())).toEqual([]);
  });

  it('follows a member whose own chain reaches further than the root says, and only then', () => {
    const byId = new Map([
      ['f', { backupId: 'f', chain: [] }],
      ['g', { backupId: 'g', chain: [] }],
      ['d', { backupId: 'd', chain: ['g'] }], // damaged: the root's chain says d builds on f
      ['i', { backupId: 'i', chain: ['f', 'd'] }],
    ]);
    expect(Object.fromEntries(chainDependencies(['i'], byId))).toEqual({ f: ['i'], d: ['i'], g: ['d'] });
    // A member that is also kept for its own sake still lists who needs it; absent members are skipped.
    expect(Object.fromEntries(chainDependencies(['f', 'i', 'x'], new Map([...byId, ['x', { backupId: 'x', chain: ['gone'] }]])))).toEqual({
      f: ['i'],
      d: ['i'],
      g: ['d'],
    });
  });

  it('lists the dependants of every chain member, oldest first', () => {
    expect(Object.fromEntries(chainDependants([{ backupId: 'c', chain: ['a', 'b'] }, { backupId: 'b', chain: ['a'] }, { backupId: 'a' }]))).toEqual({
      a: ['b', 'c'],
      b: ['c'],
    });
  });
});

describe('planGarbage with chains', () => {
  it('keeps the objects of a chain member that lost its manifest, whatever their age', () => {
    const old = new Date('2024-05-01T00:00:00Z');
    const result = planGarbage(
      [
        { id: '20240501T000000Z', lastModified: old },
        { id: '20240502T000000Z', lastModified: old },
      ],
      DAY,
      new Date('2024-05-10T00:00:00Z'),
      'no manifest',
      new Map([['20240501T000000Z', ['20240503T000000Z', '20240504T000000Z']]]),
    );
    expect(result).toEqual([
      { id: '20240501T000000Z', verdict: 'keep', reason: 'keep (no manifest, but backups 20240503T000000Z, 20240504T000000Z build on it; run pgdr verify)' },
      { id: '20240502T000000Z', verdict: 'delete', reason: 'delete (no manifest; last written 9d ago, past the 1d grace period)' },
    ]);
  });
});

describe('planRetention over random chains (property)', () => {
  type Step = { type: 'full' | 'diff' | 'incr'; gapHours: number };
  const steps = fc.array(
    fc.record({ type: fc.constantFrom<'full' | 'diff' | 'incr'>('full', 'diff', 'incr', 'incr'), gapHours: fc.integer({ min: 1, max: 60 }) }),
    { minLength: 1, maxLength: 30 },
  );
  const tiers = fc.record({ daily: fc.integer({ min: 0, max: 5 }), weekly: fc.integer({ min: 0, max: 3 }), monthly: fc.integer({ min: 0, max: 2 }), yearly: fc.constant(0) });

  /** Backups as `backup now` chooses references (src/backup/backup-type.ts): a diff on the newest full, an incr on the newest backup. */
  function history(list: readonly Step[]): BackupManifest[] {
    const backups: BackupManifest[] = [];
    let time = Date.UTC(2024, 4, 1, 2);
    let position = 3;
    for (const step of list) {
      time += step.gapHours * 3_600_000;
      const lastFull = [...backups].reverse().find((b) => b.type === 'full');
      const last = backups[backups.length - 1];
      const type = step.type === 'full' || lastFull === undefined ? 'full' : step.type;
      const chainOf = (m: BackupManifest) => [...backups.filter((b) => (m.chain ?? []).includes(b.backupId)), m];
      const chain = type === 'full' ? [] : type === 'diff' ? chainOf(lastFull!) : chainOf(last!);
      backups.push(filesBackup({ start: new Date(time), type, chain, startPos: position, stopPos: position + 1 }));
      position += 3;
    }
    return backups;
  }

  it('never deletes a member of a kept backup, keeps only what a rule or a kept backup names, and keeps WAL for every kept backup', () => {
    fc.assert(
      fc.property(steps, tiers, fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 20 }), fc.nat(), (list, counts, windowDays, afterDays, dropSeed) => {
        let backups = history(list);
        // Sometimes a backup was deleted by hand.
        if (dropSeed % 3 === 0 && backups.length > 1) backups = backups.filter((_, i) => i !== dropSeed % backups.length);
        const lastStop = Date.parse(backups[backups.length - 1]!.stopTime);
        const plan = planRetention(backups, policy(counts, windowDays), new Date(lastStop + afterDays * DAY));
        const kept = new Set(plan.kept.map((b) => b.backupId));
        const present = new Set(backups.map((b) => b.backupId));
        for (const b of plan.kept) for (const id of b.chain ?? []) if (present.has(id)) expect(kept.has(id)).toBe(true);
        for (const v of plan.backups) {
          if (v.verdict === 'delete') continue;
          expect(v.keptBy.length + v.neededBy.length + v.missingChain.length).toBeGreaterThan(0);
          for (const by of v.neededBy) expect(kept.has(by)).toBe(true);
        }
        // Something restorable is always kept when there is something restorable.
        const restorable = backups.filter((b) => missingChainMembers(b, present).length === 0);
        if (restorable.length > 0) expect(plan.kept.some((b) => restorable.includes(b))).toBe(true);
        // WAL from the oldest kept backup's start: every kept backup's own range survives.
        const archive = Array.from({ length: 3 * list.length + 6 }, (_, pos) => segmentName(1, pos));
        const wal = new Set(planWalRetention(plan.kept, archive).deleteFiles);
        for (const b of plan.kept) expect(wal.has(b.startWal)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
