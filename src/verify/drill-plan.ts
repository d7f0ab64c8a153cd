import type { DrillExpectation } from '../config/policy.js';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.js';
import type { RecoveryTarget } from '../postgres/recovery-target.js';
import type { BackupManifest } from '../repo/manifest.js';
import { describeBackups, formatMoment } from './problems.js';
import { pathsOfBackup, segmentArchivedAt, walNeededOnPath, type BackupWalNeed, type WalIndex, type WalPath } from './wal-coverage.js';

/**
 * What a restore drill restores, decided without touching anything: pure, so the choice of backup, target and the
 * WAL it needs are unit-tested.
 */
export interface DrillPlan {
  mode: 'newest' | 'random';
  backup: BackupManifest;
  target: RecoveryTarget;
  /** The WAL the restore reads, checked in the repository before anything is restored. */
  walNeed: BackupWalNeed;
  /** Why this backup and target, in one sentence. */
  reason: string;
}

export interface DrillPlanOptions {
  random: boolean;
  /** A number in [0, 1): Math.random in production, fixed in tests. */
  random01: () => number;
}

/**
 * The newest backup restored to the end of the archive; or, with `random`, a random WAL position between the
 * oldest backup's stop and the start of the newest archived segment on the latest timeline, restored from the
 * newest backup that stopped before it.
 *
 * The random target is a position (LSN), not a time: recovery stops at the first record at or past an LSN, and
 * every position up to the start of an archived segment has one after it, while a time target may lie where no
 * transaction committed and make recovery run off the end of the archive, failing a healthy repository.
 */
export function planDrill(backups: readonly BackupManifest[], index: WalIndex, options: DrillPlanOptions): DrillPlan {
  if (backups.length === 0) throw new Error('planDrill needs at least one backup');
  const newest = [...backups].sort(byStop).at(-1)!;
  const newestPlan = (why: string): DrillPlan => {
    const paths = pathsOfBackup(index, newest);
    // The highest timeline holding the backup: the one recovery_target_timeline = 'latest' follows.
    const path = paths[paths.length - 1];
    return {
      mode: options.random ? 'random' : 'newest',
      backup: newest,
      target: { kind: 'latest' },
      walNeed: walNeededOnPath(index, newest, path),
      reason: why,
    };
  };
  if (!options.random) {
    return newestPlan(`backup ${newest.backupId} is the newest; the drill restores it to the end of the archived WAL`);
  }

  const path: WalPath | undefined = index.paths[index.paths.length - 1];
  const onPath = path ? backups.filter((b) => pathsOfBackup(index, b).includes(path)) : [];
  if (!path?.end || onPath.length === 0) {
    return newestPlan(`no backup lies on an archived timeline path, so the drill restores the newest backup, ${newest.backupId}, to the end of the archive`);
  }
  const size = BigInt(index.segmentSize);
  const lower = onPath.map((b) => parseLsn(b.stopLsn)).reduce((a, b) => (a < b ? a : b));
  const upper = path.end.segmentNumber * size;
  if (upper <= lower) {
    return newestPlan(`the archive after the oldest backup's stop is too short for a random target, so the drill restores the newest backup, ${newest.backupId}, to the end of the archive`);
  }
  const span = upper - lower;
  const offset = BigInt(Math.min(Math.floor(options.random01() * Number(span)), Number(span)));
  const target: Lsn = lower + offset;
  const chosen = onPath.filter((b) => parseLsn(b.stopLsn) <= target).sort(byStop).at(-1)!;
  // Recovery reads the record at or after the target, which may begin in the next segment.
  const until = target + size < upper ? target + size : upper;
  return {
    mode: 'random',
    backup: chosen,
    target: { kind: 'lsn', lsn: target, inclusive: true },
    walNeed: walNeededOnPath(index, chosen, path, until),
    reason:
      `random target ${formatLsn(target)} between ${formatLsn(lower)} (the oldest backup's stop) and ${formatLsn(upper)} (the start of ${path.end.segment}); ` +
      `backup ${chosen.backupId} is the newest that stopped before it`,
  };
}

function byStop(a: BackupManifest, b: BackupManifest): number {
  const al = parseLsn(a.stopLsn);
  const bl = parseLsn(b.stopLsn);
  return a.stopTime.localeCompare(b.stopTime) || (al < bl ? -1 : al > bl ? 1 : 0) || a.backupId.localeCompare(b.backupId);
}

/** The WAL pre-check of a drill, as a check result: ok, or which segments are missing and what that breaks. */
export function describeWalNeed(need: BackupWalNeed, index: WalIndex): { ok: boolean; detail: string } {
  const segments = need.segments;
  const missing = segments.filter((s) => !s.present);
  const range = segments.length === 0 ? 'no segments' : `${segments.length} segments, ${segments[0]!.name} to ${segments[segments.length - 1]!.name}`;
  if (missing.length === 0) return { ok: true, detail: `all WAL the restore reads is archived (${range})` };
  const first = missing[0]!;
  const who = describeBackups([need.backupId]);
  const firstIndex = segments.indexOf(first);
  const nextPresent = segments.slice(firstIndex + 1).find((s) => s.present);
  const when = nextPresent ? segmentArchivedAt(index, nextPresent.name) : undefined;
  const consequence =
    first.role === 'consistency'
      ? `${who} cannot become consistent`
      : `${who} cannot reach ${when ? formatMoment(when) : 'the end of the archive'}`;
  const more = missing.length > 1 ? ` (and ${missing.length - 1} more of the ${segments.length} needed)` : '';
  return { ok: false, detail: `${consequence}: segment ${first.name} missing${more}` };
}

export interface CheckOutcome {
  ok: boolean;
  detail: string;
}

/**
 * Judges the single value a drill check's query returned against its expectation. `reference` is the moment the
 * restore represents, from which a freshness bound (maxAgeSeconds) is measured.
 */
export function evaluateExpectation(value: unknown, expect: DrillExpectation, reference: Date): CheckOutcome {
  const shown = showValue(value);
  if (value === null || value === undefined) return { ok: false, detail: 'the query returned NULL' };
  const failures: string[] = [];
  const met: string[] = [];

  if (expect.min !== undefined || expect.max !== undefined) {
    const n = asNumber(value);
    if (n === undefined) {
      failures.push('a number');
    } else {
      if (expect.min !== undefined) (n >= expect.min ? met : failures).push(`at least ${expect.min}`);
      if (expect.max !== undefined) (n <= expect.max ? met : failures).push(`at most ${expect.max}`);
    }
  }
  if (expect.equals !== undefined) {
    (equalsExpected(value, expect.equals) ? met : failures).push(`equal to ${JSON.stringify(expect.equals)}`);
  }
  if (expect.maxAgeSeconds !== undefined) {
    const at = asDate(value);
    if (at === undefined) {
      failures.push('a timestamp');
    } else {
      const age = Math.round((reference.getTime() - at.getTime()) / 1000);
      const text = `at most ${expect.maxAgeSeconds} s old (it is ${age} s older than ${formatMoment(reference)})`;
      (age <= expect.maxAgeSeconds ? met : failures).push(text);
    }
  }
  if (failures.length > 0) return { ok: false, detail: `value ${shown} is not ${failures.join(', nor ')}` };
  return { ok: true, detail: `value ${shown} is ${met.join(' and ')}` };
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'bigint') return Number(value);
  // node-postgres returns bigint, numeric and count(*) as text to keep their precision.
  if (typeof value === 'string' && /^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}

function asDate(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value)) {
    const at = new Date(value);
    return Number.isNaN(at.getTime()) ? undefined : at;
  }
  return undefined;
}

function equalsExpected(value: unknown, expected: string | number | boolean): boolean {
  if (typeof expected === 'number') return asNumber(value) === expected;
  if (typeof expected === 'boolean') return value === expected || (typeof value === 'string' && value === (expected ? 't' : 'f'));
  if (value instanceof Date) return value.toISOString() === expected;
  return String(value) === expected;
}

function showValue(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string' && asNumber(value) !== undefined) return value.trim();
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return String(value);
}
