import { formatDuration, type RetentionPolicy, type TierCounts } from '../config/policy.js';
import { RepositoryError } from '../errors.js';
import { parseWalFileName, type WalSegmentName } from '../postgres/wal-file-name.js';
import type { BackupManifest } from '../repo/manifest.js';
import { chainDependencies, missingChainMembers } from './chains.js';
import { newestFirst, selectTiers, type TimedItem } from './tiers.js';

/**
 * The retention planners: pure functions from what the repository holds, the policy and a clock to what stays and
 * what goes. `pgdr expire` executes their answer; `pgdr report` and `pgdr expire --dry-run` only print it.
 *
 * Base backups are kept by three rules, and a backup any rule names stays:
 *   1. the tiers (src/retention/tiers.ts): the newest backup of each of the newest N days / ISO weeks / months /
 *      years, by the backup's start time in UTC; a diff or incr counts as a backup of its day like any other;
 *   2. the PITR window: every moment from (now - window) on must stay restorable, so the newest backup that had
 *      finished by the window's start stays (or, when none had, the oldest backup: the earliest point there is);
 *   3. the newest complete backup always stays, whatever the policy says.
 * The rules look only at backups that can be restored. A diff or incr whose chain lacks a member (a full deleted by
 * hand) cannot be, so it fills no tier and is not "the newest"; it is kept, not deleted, and `pgdr verify` reports
 * it, because the missing member may yet come back (copied from another repository) and deleting is not undoable.
 * Then every backup in the chain of a kept backup stays too ("needed by ..."): a full is never deleted while a diff
 * or incr that is restored from it is kept.
 *
 * WAL is then kept from the oldest kept backup's first segment onward, on every timeline, counting backups kept only
 * because a later one needs them. They are complete backups like any other: the restore planner (src/restore/plan.ts)
 * picks the newest backup that finished before a target, which is such a full for a target between its stop and
 * its dependant's, and `--backup-id`, drills and `pgdr verify` (which checks every complete backup's WAL) see it
 * too. Removing its WAL would leave a backup that looks restorable and is not, and make verify report missing WAL
 * every day. Teaching the planner to skip such backups instead would need a mark in the repository that retention
 * writes and every reader honours; keeping their WAL costs at most the WAL of one full-backup interval.
 */

export type Verdict = 'keep' | 'delete';

export interface BackupVerdict {
  backupId: string;
  type: BackupManifest['type'];
  verdict: Verdict;
  /**
   * "keep (daily 2024-05-03)", "keep (weekly 2024-W18, monthly 2024-04)", "keep (PITR window)", "keep (newest)",
   * "keep (needed by 20240503T020000Z (incr))", "keep (cannot be restored: ...)", "delete".
   */
  reason: string;
  /** Every rule that keeps the backup: tier labels, then "PITR window" and "newest". Empty for a deleted backup. */
  keptBy: string[];
  /** Kept backups restored from this one (it is in their chain), oldest first: it stays while they do. */
  neededBy: string[];
  /** Members of its chain that are not complete backups in the repository: it cannot be restored. */
  missingChain: string[];
}

export interface RetentionPlan {
  now: Date;
  /** now - pitrWindow: every moment from here on stays restorable (from the first kept backup's stop on). */
  windowStart: Date;
  /** The backup kept so that the window can be restored from, if there is any backup. */
  windowBackupId: string | undefined;
  /** Every backup, oldest first. */
  backups: BackupVerdict[];
  kept: BackupManifest[];
  deleted: BackupManifest[];
}

export const WINDOW_LABEL = 'PITR window';
export const NEWEST_LABEL = 'newest';

interface TimedBackup {
  manifest: BackupManifest;
  start: Date;
  stop: Date;
}

export function planRetention(backups: readonly BackupManifest[], policy: { retention: RetentionPolicy }, now: Date): RetentionPlan {
  const { retention } = policy;
  const timed = backups.map(toTimed);
  assertUniqueIds(timed.map((b) => b.manifest.backupId), 'backup');
  const windowStart = new Date(now.getTime() - retention.pitrWindow);

  const present = new Set(timed.map((b) => b.manifest.backupId));
  const missing = new Map(timed.map((b) => [b.manifest.backupId, missingChainMembers(b.manifest, present)]));
  const restorable = timed.filter((b) => missing.get(b.manifest.backupId)!.length === 0);

  const tierLabels = selectTiers(
    restorable.map((b) => ({ id: b.manifest.backupId, time: b.start })),
    retention.backups,
  );
  const byStop = restorable.map((b) => ({ id: b.manifest.backupId, time: b.stop })).sort(newestFirst);
  const newest = byStop[0]?.id;
  const windowBackupId = byStop.find((b) => b.time <= windowStart)?.id ?? byStop[byStop.length - 1]?.id;

  const keptBy = new Map<string, string[]>();
  for (const b of timed) {
    const id = b.manifest.backupId;
    const labels = [...(tierLabels.get(id) ?? [])];
    if (id === windowBackupId) labels.push(WINDOW_LABEL);
    if (id === newest) labels.push(NEWEST_LABEL);
    keptBy.set(id, labels);
  }
  const roots = timed.map((b) => b.manifest.backupId).filter((id) => keptBy.get(id)!.length > 0 || missing.get(id)!.length > 0);
  const neededBy = chainDependencies(roots, new Map(timed.map((b) => [b.manifest.backupId, b.manifest])));
  const typeOf = new Map(timed.map((b) => [b.manifest.backupId, b.manifest.type]));

  const verdicts: BackupVerdict[] = [];
  const kept: BackupManifest[] = [];
  const deleted: BackupManifest[] = [];
  for (const b of [...timed].sort(oldestFirstByStart)) {
    const id = b.manifest.backupId;
    const facts = { keptBy: keptBy.get(id)!, neededBy: neededBy.get(id) ?? [], missingChain: missing.get(id)! };
    const base = { backupId: id, type: b.manifest.type, ...facts };
    if (facts.keptBy.length === 0 && facts.neededBy.length === 0 && facts.missingChain.length === 0) {
      verdicts.push({ ...base, verdict: 'delete', reason: 'delete' });
      deleted.push(b.manifest);
    } else {
      verdicts.push({ ...base, verdict: 'keep', reason: keepReason(facts, typeOf) });
      kept.push(b.manifest);
    }
  }
  return { now, windowStart, windowBackupId, backups: verdicts, kept, deleted };
}

/**
 * The reason people read: the tiers that keep a backup; the safety rules (window, newest) are named only when no
 * tier keeps it, since the newest backup is nearly always also "daily" and saying so twice is noise. Then the
 * backups that need it, and last why it cannot be restored, when it cannot.
 */
function keepReason(facts: Pick<BackupVerdict, 'keptBy' | 'neededBy' | 'missingChain'>, typeOf: ReadonlyMap<string, string>): string {
  const parts: string[] = [];
  if (facts.keptBy.length > 0) parts.push(ruleLabels(facts.keptBy));
  if (facts.neededBy.length > 0) parts.push(`needed by ${describeDependants(facts.neededBy, typeOf)}`);
  if (facts.missingChain.length > 0) {
    parts.push(
      `cannot be restored: it builds on ${facts.missingChain.join(', ')}, which the repository does not hold as complete; kept until someone looks, run pgdr verify`,
    );
  }
  return `keep (${parts.join('; ')})`;
}

function ruleLabels(keptBy: readonly string[]): string {
  const tiers = keptBy.filter((l) => l !== WINDOW_LABEL && l !== NEWEST_LABEL);
  return (tiers.length > 0 ? tiers : keptBy).join(', ');
}

/** "20240503T020000Z (incr)", or the newest two and how many more: a weekly full can be needed by a week of incrs. */
function describeDependants(ids: readonly string[], typeOf: ReadonlyMap<string, string>): string {
  const named = [...ids].sort().reverse().slice(0, 2).map((id) => `${id} (${typeOf.get(id) ?? 'backup'})`);
  const more = ids.length - named.length;
  return more > 0 ? `${named.join(', ')} and ${more} more` : named.join(', ');
}

function toTimed(manifest: BackupManifest): TimedBackup {
  const start = new Date(manifest.startTime);
  const stop = new Date(manifest.stopTime);
  if (Number.isNaN(start.getTime()) || Number.isNaN(stop.getTime())) {
    throw new RepositoryError(`the manifest of backup ${manifest.backupId} has an unreadable start or stop time`, 'run pgdr verify');
  }
  return { manifest, start, stop };
}

function oldestFirstByStart(a: TimedBackup, b: TimedBackup): number {
  return -newestFirst({ id: a.manifest.backupId, time: a.start }, { id: b.manifest.backupId, time: b.start });
}

function assertUniqueIds(ids: readonly string[], what: string): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) throw new RepositoryError(`the repository lists ${what} ${id} twice`, 'run pgdr verify');
    seen.add(id);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// WAL

/** WAL files of one timeline that expire removes: the first and last name (in name order) and how many. */
export interface WalDeleteRange {
  timeline: number;
  from: string;
  to: string;
  files: number;
}

export interface WalRetentionPlan {
  /**
   * The first segment kept: WAL positioned before it goes, on every timeline. Undefined when nothing may go (no
   * backup is kept, so WAL already archived may be the start of the next backup's).
   */
  keepFrom: string | undefined;
  /** The kept backup whose start is keepFrom. */
  keepFromBackupId: string | undefined;
  ranges: WalDeleteRange[];
  /** File names to remove, in name order. */
  deleteFiles: string[];
  keptFiles: number;
  /** Names in the archive that are not WAL file names: never touched here (pgdr verify reports them). */
  unrecognised: string[];
}

/**
 * Which archived WAL files are no longer needed: every segment (and .partial or .backup file) positioned before
 * the oldest kept backup's start segment, whatever its timeline. Timeline history files always stay: they are
 * tiny, and every restore along a later timeline reads them.
 *
 * Positions are compared without the timeline: a backup taken on timeline 3 after a failover needs no segment of
 * timeline 1 or 2 before its own start, and every segment from there on is kept on every timeline, which is what a
 * restore to any moment after it, on any branch, can need. Comparing (log id, segment) pairs is the same as
 * comparing segment numbers for every segment size, so the planner needs no segment size.
 */
export function planWalRetention(
  keptBackups: readonly Pick<BackupManifest, 'backupId' | 'startWal'>[],
  archived: readonly string[],
): WalRetentionPlan {
  let oldest: { backupId: string; startWal: string; position: bigint } | undefined;
  for (const backup of keptBackups) {
    const position = walPosition(segmentOf(backup.startWal, backup.backupId));
    if (oldest === undefined || position < oldest.position || (position === oldest.position && backup.backupId < oldest.backupId)) {
      oldest = { backupId: backup.backupId, startWal: backup.startWal, position };
    }
  }

  const deleteFiles: string[] = [];
  const unrecognised: string[] = [];
  let keptFiles = 0;
  const byTimeline = new Map<number, string[]>();
  for (const name of [...new Set(archived)].sort()) {
    let parsed;
    try {
      parsed = parseWalFileName(name);
    } catch {
      unrecognised.push(name);
      continue;
    }
    if (parsed.kind === 'history' || oldest === undefined || walPosition(parsed.segmentName) >= oldest.position) {
      keptFiles++;
      continue;
    }
    deleteFiles.push(name);
    const list = byTimeline.get(parsed.segmentName.timeline) ?? [];
    list.push(name);
    byTimeline.set(parsed.segmentName.timeline, list);
  }
  const ranges = [...byTimeline.entries()]
    .sort(([a], [b]) => a - b)
    .map(([timeline, names]) => ({ timeline, from: names[0]!, to: names[names.length - 1]!, files: names.length }));
  return { keepFrom: oldest?.startWal, keepFromBackupId: oldest?.backupId, ranges, deleteFiles, keptFiles, unrecognised };
}

/** Orders segments by WAL position alone; the timeline does not count. */
export function walPosition(segment: WalSegmentName): bigint {
  return (BigInt(segment.logId) << 32n) | BigInt(segment.segment);
}

function segmentOf(startWal: string, backupId: string): WalSegmentName {
  try {
    const parsed = parseWalFileName(startWal);
    if (parsed.kind === 'segment') return parsed.segmentName;
  } catch {
    // reported below
  }
  throw new RepositoryError(`backup ${backupId} names ${JSON.stringify(startWal)} as its first WAL segment`, 'run pgdr verify');
}

// ---------------------------------------------------------------------------------------------------------------
// etcd snapshots

/** What the planner needs of an etcd snapshot; the manifest's other fields belong to src/etcd. */
export interface SnapshotRecord {
  snapshotId: string;
  time: Date | string;
}

export interface SnapshotVerdict {
  snapshotId: string;
  verdict: Verdict;
  reason: string;
}

export interface SnapshotRetentionPlan {
  /** Oldest first. */
  snapshots: SnapshotVerdict[];
  kept: string[];
  deleted: string[];
}

/** etcd snapshots by their own tiers; the newest snapshot always stays. No window: a snapshot stands alone. */
export function planSnapshotRetention(snapshots: readonly SnapshotRecord[], tiers: TierCounts): SnapshotRetentionPlan {
  const items: TimedItem[] = snapshots.map((s) => {
    const time = s.time instanceof Date ? s.time : new Date(s.time);
    if (Number.isNaN(time.getTime())) {
      throw new RepositoryError(`etcd snapshot ${s.snapshotId} has an unreadable time ${JSON.stringify(String(s.time))}`, 'run pgdr verify');
    }
    return { id: s.snapshotId, time };
  });
  assertUniqueIds(items.map((i) => i.id), 'etcd snapshot');
  const labels = selectTiers(items, tiers);
  const sorted = [...items].sort(newestFirst);
  const newest = sorted[0]?.id;
  const plan: SnapshotRetentionPlan = { snapshots: [], kept: [], deleted: [] };
  for (const item of sorted.reverse()) {
    const keptBy = [...(labels.get(item.id) ?? [])];
    if (item.id === newest) keptBy.push(NEWEST_LABEL);
    if (keptBy.length === 0) {
      plan.snapshots.push({ snapshotId: item.id, verdict: 'delete', reason: 'delete' });
      plan.deleted.push(item.id);
    } else {
      plan.snapshots.push({ snapshotId: item.id, verdict: 'keep', reason: `keep (${ruleLabels(keptBy)})` });
      plan.kept.push(item.id);
    }
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------------------------
// Garbage: the remains of interrupted backups and snapshots

export interface GarbageCandidate {
  id: string;
  /** The newest write among its objects: a backup still streaming keeps moving this forward. */
  lastModified: Date;
}

export interface GarbageVerdict {
  id: string;
  verdict: Verdict;
  reason: string;
}

/**
 * Objects under an id with no manifest are an interrupted backup (or one still running on a host that ignores the
 * lock). They go once nothing has been written to them for the grace period, unless a complete backup names the id
 * in its chain (`neededBy`): then they are what is left of a chain member whose manifest went missing, and the
 * objects stay with that backup, which `pgdr verify` reports as unrestorable until someone puts the manifest back
 * or removes the backup.
 */
export function planGarbage(
  candidates: readonly GarbageCandidate[],
  graceMs: number,
  now: Date,
  /** What makes them garbage, for the reason: "no manifest", or "never finished" for a temp file or upload. */
  why = 'no manifest',
  neededBy: ReadonlyMap<string, readonly string[]> = new Map(),
): GarbageVerdict[] {
  return [...candidates]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((c) => {
      const dependants = neededBy.get(c.id) ?? [];
      if (dependants.length > 0) {
        return {
          id: c.id,
          verdict: 'keep',
          reason: `keep (${why}, but ${dependants.length === 1 ? `backup ${dependants[0]} builds` : `backups ${dependants.join(', ')} build`} on it; run pgdr verify)`,
        };
      }
      const age = now.getTime() - c.lastModified.getTime();
      if (age >= graceMs) {
        return { id: c.id, verdict: 'delete', reason: `delete (${why}; last written ${formatDuration(Math.max(age, 0))} ago, past the ${formatDuration(graceMs)} grace period)` };
      }
      return {
        id: c.id,
        verdict: 'keep',
        reason: `keep (${why}, but written ${age < 0 ? 'after the planning time' : `${formatDuration(age)} ago`}: within the ${formatDuration(graceMs)} grace period it may still be running)`,
      };
    });
}
