import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PgdrError, RepositoryError, UsageError } from '../../../src/errors.js';
import { formatLsn, parseLsn, type Lsn } from '../../../src/postgres/lsn.js';
import { parseRecoveryTarget, parseTargetTime, type RecoveryTarget } from '../../../src/postgres/recovery-target.js';
import { parseTimelineHistory } from '../../../src/postgres/timeline-history.js';
import { formatWalSegmentName, walSegmentForLsn } from '../../../src/postgres/wal-file-name.js';
import { planRestore } from '../../../src/restore/plan.js';
import { BackupManifestSchema, type BackupManifest } from '../../../src/repo/manifest.js';

interface BackupSpec {
  /** Defaults to an id made from the start time, as `pgdr backup now` names backups. */
  backupId?: string;
  stopTime: string;
  stopLsn: string;
  timeline?: number;
  /** Seconds the backup ran. */
  seconds?: number;
  /** Bytes of WAL written while it ran. */
  walBytes?: bigint;
}

/** A manifest as `pgdr backup now` writes it, from the few facts a test cares about. */
function backup(spec: BackupSpec): BackupManifest {
  const timeline = spec.timeline ?? 1;
  const stopLsn = parseLsn(spec.stopLsn);
  const startLsn = stopLsn - (spec.walBytes ?? 0x2000000n);
  const stopAt = new Date(spec.stopTime);
  const startAt = new Date(stopAt.getTime() - (spec.seconds ?? 600) * 1000);
  return BackupManifestSchema.parse({
    format: 1,
    backupId: spec.backupId ?? startAt.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z'),
    cluster: 'main',
    type: 'full',
    startTime: startAt.toISOString(),
    stopTime: spec.stopTime,
    startLsn: formatLsn(startLsn),
    stopLsn: spec.stopLsn,
    timeline,
    startWal: formatWalSegmentName(walSegmentForLsn(startLsn, timeline)),
    stopWal: formatWalSegmentName(walSegmentForLsn(stopLsn, timeline)),
    systemIdentifier: '7311234567890123456',
    pgVersion: '15.8',
    pgVersionNum: 150008,
    source: '10.0.0.11:5432',
    compression: { algorithm: 'zstd', level: 3 },
    bytes: 1_000_000,
    storedBytes: 250_000,
    objects: [{ name: 'base.tar.zst', bytes: 1_000_000, storedBytes: 250_000, sha256: 'a'.repeat(64), encoding: 'tar+zstd' }],
    pgdrVersion: '0.1.0',
  });
}

const monday = backup({ stopTime: '2026-11-23T01:10:00.000Z', stopLsn: '0/5000100' });
const tuesday = backup({ stopTime: '2026-11-24T01:10:00.000Z', stopLsn: '1/2000100' });
const wednesday = backup({ stopTime: '2026-11-25T01:10:00.000Z', stopLsn: '2/8000100' });
const week = [tuesday, wednesday, monday];

const at = (targetTime: string) => parseRecoveryTarget({ targetTime });
const atLsn = (targetLsn: string) => parseRecoveryTarget({ targetLsn });

function failure(fn: () => unknown): PgdrError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PgdrError);
    return err as PgdrError;
  }
  throw new Error('expected planRestore to refuse');
}

describe('planRestore by example', () => {
  it('serves a time target from the newest backup that finished before it', () => {
    const plan = planRestore(week, at('2026-11-24T15:00:00+01:00'));
    expect(plan.backup.backupId).toBe(tuesday.backupId);
    expect(plan.reason).toContain(`backup ${tuesday.backupId} is the newest that finished`);
    expect(plan.backupWal).toEqual({ startWal: '000000010000000100000000', stopWal: '000000010000000100000002' });
    expect(plan.target).toEqual(at('2026-11-24T15:00:00+01:00'));
  });

  it('accepts a target time equal to the stop time, to the microsecond', () => {
    expect(planRestore(week, at('2026-11-24T01:10:00Z')).backup).toBe(tuesday);
    expect(planRestore(week, at('2026-11-24T01:09:59.999999Z')).backup).toBe(monday);
    const precise = backup({ stopTime: '2026-11-24T01:10:00.000001Z', stopLsn: '1/3000000', backupId: '20261124T010000Z' });
    expect(planRestore([...week, precise], at('2026-11-24T01:10:00Z')).backup).toBe(tuesday);
    expect(planRestore([...week, precise], at('2026-11-24T01:10:00.000001Z')).backup).toBe(precise);
  });

  it('serves an LSN target from the newest backup that stopped at or before it', () => {
    expect(planRestore(week, atLsn('1/2000100')).backup).toBe(tuesday);
    expect(planRestore(week, atLsn('1/20000FF')).backup).toBe(monday);
    expect(planRestore(week, atLsn('FFFFFFFF/FFFFFFFF')).backup).toBe(wednesday);
    expect(planRestore(week, atLsn('2/0')).reason).toContain('stop LSN (1/2000100) is at or before the target LSN');
  });

  it('uses the newest backup for latest', () => {
    const plan = planRestore(week, parseRecoveryTarget({}));
    expect(plan.backup).toBe(wednesday);
    expect(plan.reason).toContain('end of the archive');
  });

  it('uses the newest backup for an unrecorded restore point and names the backup to pass for an older one', () => {
    const plan = planRestore(week, parseRecoveryTarget({ targetName: 'before-upgrade' }));
    expect(plan.backup).toBe(wednesday);
    expect(plan.reason).toContain(`--backup-id ${tuesday.backupId}`);
    expect(plan.reason).toContain('pgdr restore-point create');
  });

  it('picks the newest backup that finished before a restore point pgdr recorded', () => {
    const named = parseRecoveryTarget({ targetName: 'before-upgrade' });
    expect(planRestore(week, named, { restorePoint: { lsn: '1/3000000' } }).backup).toBe(tuesday);
    expect(planRestore(week, named, { restorePoint: { lsn: '1/2000100' } }).backup).toBe(tuesday);
    expect(planRestore(week, named, { restorePoint: { lsn: '1/2000000' } }).backup).toBe(monday);
    expect(failure(() => planRestore(week, named, { restorePoint: { lsn: '0/1000000' } })).message).toMatch(/was made before the oldest backup finished/);
    expect(failure(() => planRestore(week, named, { restorePoint: { lsn: '1/3000000' }, backupId: wednesday.backupId })).message).toMatch(/is before backup/);
  });

  it('refuses a target before the oldest backup finished, naming it', () => {
    const byTime = failure(() => planRestore(week, at('2026-11-23T01:00:00Z')));
    expect(byTime).toBeInstanceOf(UsageError);
    expect(byTime.message).toContain(monday.backupId);
    expect(byTime.message).toContain('2026-11-23T01:10:00.000Z');
    expect(byTime.hint).toContain('pgdr backup list');
    const byLsn = failure(() => planRestore(week, atLsn('0/50000FF')));
    expect(byLsn).toBeInstanceOf(UsageError);
    expect(byLsn.message).toContain('0/5000100');
    expect(byLsn.exitCode).toBe(2);
  });

  it('says so when there is no backup at all', () => {
    const err = failure(() => planRestore([], parseRecoveryTarget({}), { cluster: 'main' }));
    expect(err).toBeInstanceOf(RepositoryError);
    expect(err.message).toBe('the repository holds no complete backup for cluster main');
    expect(err.hint).toBe('run pgdr backup now');
    expect(err.exitCode).toBe(3);
    expect(failure(() => planRestore([], at('2026-11-24T00:00:00Z'), { backupId: monday.backupId }))).toBeInstanceOf(
      RepositoryError,
    );
  });
});

describe('planRestore with --backup-id', () => {
  it('uses that backup when the target is after it', () => {
    const plan = planRestore(week, at('2026-11-26T00:00:00Z'), { backupId: monday.backupId });
    expect(plan.backup).toBe(monday);
    expect(plan.reason).toMatch(/chosen with --backup-id/);
    expect(planRestore(week, atLsn('0/5000100'), { backupId: monday.backupId }).backup).toBe(monday);
    expect(planRestore(week, parseRecoveryTarget({}), { backupId: tuesday.backupId }).backup).toBe(tuesday);
    const named = planRestore(week, parseRecoveryTarget({ targetName: 'x' }), { backupId: monday.backupId });
    expect(named.backup).toBe(monday);
    expect(named.reason).toContain('restore point "x"');
  });

  it('refuses an unknown id and says how to list them', () => {
    const err = failure(() => planRestore(week, parseRecoveryTarget({}), { backupId: '20200101T000000Z' }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('20200101T000000Z');
    expect(err.hint).toContain('pgdr backup list');
  });

  it('refuses a target before that backup finished', () => {
    const byTime = failure(() => planRestore(week, at('2026-11-24T00:00:00Z'), { backupId: tuesday.backupId }));
    expect(byTime).toBeInstanceOf(UsageError);
    expect(byTime.message).toContain(`before backup ${tuesday.backupId} finished`);
    const byLsn = failure(() => planRestore(week, atLsn('1/0'), { backupId: tuesday.backupId }));
    expect(byLsn.message).toContain('stop LSN 1/2000100');
  });
});

describe('planRestore along a timeline history', () => {
  // Timeline 2 began at 1/0; timeline 3 branched off 2 at 2/0 and died; timeline 4 branched off 2 at 3/0.
  const history4 = parseTimelineHistory(4, '1\t1/0\tfailover\n2\t3/0\tfailover\n');
  const onOne = backup({ stopTime: '2026-11-23T01:10:00Z', stopLsn: '0/9000000', timeline: 1 });
  const onTwo = backup({ stopTime: '2026-11-24T01:10:00Z', stopLsn: '1/9000000', timeline: 2 });
  const onDeadBranch = backup({ stopTime: '2026-11-25T01:10:00Z', stopLsn: '2/9000000', timeline: 3 });
  // The old primary of timeline 1 kept writing after the failover to 2, and was backed up.
  const onOldPrimary = backup({ stopTime: '2026-11-24T02:10:00Z', stopLsn: '1/A000000', timeline: 1 });
  const all = [onOne, onTwo, onDeadBranch, onOldPrimary];

  it('skips backups that are not on the path to the target timeline', () => {
    expect(planRestore(all, parseRecoveryTarget({}), { history: history4 }).backup).toBe(onTwo);
    expect(planRestore(all, at('2026-11-26T00:00:00Z'), { history: history4 }).backup).toBe(onTwo);
    expect(planRestore(all, atLsn('2/F0000000'), { history: history4 }).backup).toBe(onTwo);
    expect(planRestore(all, parseRecoveryTarget({})).backup).toBe(onDeadBranch);
  });

  it('refuses a chosen backup off the path', () => {
    const err = failure(() =>
      planRestore(all, parseRecoveryTarget({}), { history: history4, backupId: onDeadBranch.backupId }),
    );
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toContain('not on the history of timeline 4');
  });

  it('says so when no backup is on the path', () => {
    const err = failure(() => planRestore([onDeadBranch], parseRecoveryTarget({}), { history: history4 }));
    expect(err).toBeInstanceOf(RepositoryError);
  });
});

// Properties -------------------------------------------------------------------------------------------------

const BASE_MS = Date.parse('2026-01-01T00:00:00Z');

interface Fact {
  id: number;
  /** Milliseconds after BASE_MS, few distinct values so that ties happen. */
  stopMs: number;
  stopLsn: Lsn;
}

const facts = fc.uniqueArray(
  fc.record({
    id: fc.integer({ min: 0, max: 999_999 }),
    stopMs: fc.integer({ min: 0, max: 40 }).map((n) => n * 3_600_000),
    stopLsn: fc.bigInt({ min: 0x2000000n, max: 0x40_0000_0000n }),
  }),
  { selector: (f) => f.id, minLength: 1, maxLength: 10 },
);

function manifests(list: Fact[]): BackupManifest[] {
  return list.map((f) =>
    backup({
      backupId: `2026${String(f.id).padStart(6, '0').slice(0, 4)}T00${String(f.id).padStart(6, '0').slice(4)}00Z`,
      stopTime: new Date(BASE_MS + f.stopMs).toISOString(),
      stopLsn: formatLsn(f.stopLsn),
      walBytes: 0x1000000n,
    }),
  );
}

const stopMicros = (m: BackupManifest) => parseTargetTime(m.stopTime).epochMicros;
const stopLsn = (m: BackupManifest) => parseLsn(m.stopLsn);
const cmp = <T extends bigint | string>(a: T, b: T) => (a < b ? -1 : a > b ? 1 : 0);
const newerByTime = (a: BackupManifest, b: BackupManifest) =>
  (cmp(stopMicros(a), stopMicros(b)) || cmp(stopLsn(a), stopLsn(b)) || cmp(a.backupId, b.backupId)) > 0;
const newerByLsn = (a: BackupManifest, b: BackupManifest) =>
  (cmp(stopLsn(a), stopLsn(b)) || cmp(stopMicros(a), stopMicros(b)) || cmp(a.backupId, b.backupId)) > 0;

/** Runs the planner, returning the backup id or the error class, so outcomes can be compared. */
function outcome(backups: BackupManifest[], target: RecoveryTarget): string {
  try {
    return planRestore(backups, target).backup.backupId;
  } catch (err) {
    if (err instanceof PgdrError) return err.constructor.name;
    throw err;
  }
}

describe('planRestore by property', () => {
  it('a time target gets the newest backup at or before it, or an error when none is', () => {
    fc.assert(
      fc.property(facts, fc.integer({ min: -1, max: 41 * 3_600_000 }), (list, targetMs) => {
        const backups = manifests(list);
        const target = at(new Date(BASE_MS + targetMs).toISOString());
        if (target.kind !== 'time') throw new Error('unreachable');
        const qualifying = backups.filter((b) => stopMicros(b) <= target.epochMicros);
        if (qualifying.length === 0) {
          expect(failure(() => planRestore(backups, target))).toBeInstanceOf(UsageError);
          return;
        }
        const chosen = planRestore(backups, target).backup;
        expect(stopMicros(chosen)).toBeLessThanOrEqual(target.epochMicros);
        expect(qualifying.some((b) => newerByTime(b, chosen))).toBe(false);
      }),
    );
  });

  it('an LSN target gets the newest backup at or before it, or an error when none is', () => {
    fc.assert(
      fc.property(facts, fc.bigInt({ min: 0n, max: 0x41_0000_0000n }), (list, targetLsn) => {
        const backups = manifests(list);
        const target = atLsn(formatLsn(targetLsn));
        const qualifying = backups.filter((b) => stopLsn(b) <= targetLsn);
        if (qualifying.length === 0) {
          expect(failure(() => planRestore(backups, target))).toBeInstanceOf(UsageError);
          return;
        }
        const chosen = planRestore(backups, target).backup;
        expect(stopLsn(chosen) <= targetLsn).toBe(true);
        expect(qualifying.some((b) => newerByLsn(b, chosen))).toBe(false);
      }),
    );
  });

  it('latest and restore points get the newest backup of all', () => {
    fc.assert(
      fc.property(facts, fc.constantFrom(parseRecoveryTarget({}), parseRecoveryTarget({ targetName: 'p' })), (list, target) => {
        const backups = manifests(list);
        const chosen = planRestore(backups, target).backup;
        expect(backups.some((b) => newerByTime(b, chosen))).toBe(false);
      }),
    );
  });

  it('the outcome does not depend on the order the backups are listed in', () => {
    const targets = fc.oneof(
      fc.integer({ min: -1, max: 41 * 3_600_000 }).map((ms) => at(new Date(BASE_MS + ms).toISOString())),
      fc.bigInt({ min: 0n, max: 0x41_0000_0000n }).map((lsn) => atLsn(formatLsn(lsn))),
      fc.constant(parseRecoveryTarget({})),
      fc.constant(parseRecoveryTarget({ targetName: 'p' })),
    );
    fc.assert(
      fc.property(facts, targets, fc.infiniteStream(fc.nat()), (list, target, randoms) => {
        const backups = manifests(list);
        const shuffled = [...backups];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = randoms.next().value % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        expect(outcome(shuffled, target)).toBe(outcome(backups, target));
        expect(outcome([...backups].reverse(), target)).toBe(outcome(backups, target));
      }),
    );
  });

  it('--backup-id gets that backup exactly when the target is not before it', () => {
    fc.assert(
      fc.property(facts, fc.nat(), fc.integer({ min: -1, max: 41 * 3_600_000 }), (list, pick, targetMs) => {
        const backups = manifests(list);
        const wanted = backups[pick % backups.length]!;
        const target = at(new Date(BASE_MS + targetMs).toISOString());
        if (target.kind !== 'time') throw new Error('unreachable');
        if (stopMicros(wanted) <= target.epochMicros) {
          expect(planRestore(backups, target, { backupId: wanted.backupId }).backup).toBe(wanted);
        } else {
          expect(failure(() => planRestore(backups, target, { backupId: wanted.backupId }))).toBeInstanceOf(UsageError);
        }
      }),
    );
  });
});
