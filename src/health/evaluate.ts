import type { AgeThresholds, HealthPolicy } from '../config/policy.js';
import { parseWalFileName, walSegmentNumber } from '../postgres/wal-file-name.js';
import type { Fact, HealthFacts, ServerWalFacts, WalArchiveFacts } from './facts.js';

/**
 * The pure half of `pgdr health`: facts + thresholds + a clock in, one state per check out. No I/O, no
 * Date.now(): tests move the clock to the second either side of every threshold.
 *
 * States and exit codes follow the Nagios plugin convention: OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3.
 * The overall state is the worst check by severity OK < WARNING < UNKNOWN < CRITICAL: a CRITICAL finding is never
 * hidden behind an UNKNOWN one, and "cannot tell" outranks a mere warning.
 *
 * The SKIPPED rule: a check whose input this deployment does not have (no PostgreSQL connection or Patroni endpoint
 * configured for the WAL check; no etcd endpoints and no snapshots in the repository for the etcd check) is
 * SKIPPED, shown but not counted. A check whose input is configured but could not be read (server down, storage
 * error, unreadable record) is UNKNOWN.
 */

export type HealthState = 'OK' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';
export type CheckStatus = HealthState | 'SKIPPED';

export const CHECK_NAMES = ['repository', 'backup-age', 'wal-archive', 'etcd-snapshot', 'drill'] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export const EXIT_CODE: Record<HealthState, number> = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 };
const SEVERITY: Record<HealthState, number> = { OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3 };
/** Numeric value of a state in metrics (pgdr_check_status): the Nagios exit code. */
export const STATE_VALUE: Record<HealthState, number> = EXIT_CODE;

/** Numbers a check measured; each becomes a Prometheus metric (see prometheus.ts) and a JSON field. */
export interface CheckMeasurements {
  /** Age of the thing checked (newest backup, snapshot, drill). */
  ageSeconds?: number;
  warningSeconds?: number;
  criticalSeconds?: number;
  /** Completed WAL segments the repository does not have yet. */
  lagSegments?: number;
  /** How long the oldest of those has been waiting. */
  lagSeconds?: number;
  warningSegments?: number;
  criticalSegments?: number;
  /** pg_stat_archiver.failed_count. */
  archiverFailedCount?: number;
  /** 1 when the newest drill passed, 0 when it failed. */
  drillPassed?: number;
  completeBackups?: number;
  incompleteBackups?: number;
  invalidBackups?: number;
  /** Bytes and duration of the newest complete backup. */
  backupBytes?: number;
  backupStoredBytes?: number;
  backupDurationSeconds?: number;
  /** Unix time of the thing checked (newest backup's stop, snapshot, drill). */
  lastTimestampSeconds?: number;
}

export interface CheckResult {
  check: CheckName;
  status: CheckStatus;
  /** One line: what was found. */
  message: string;
  /** One line: what to do, when the status is not OK. */
  hint?: string;
  measurements: CheckMeasurements;
}

export interface HealthReport {
  cluster: string;
  /** Repository location, or null when it could not even be opened. */
  repository: string | null;
  evaluatedAt: Date;
  status: HealthState;
  exitCode: number;
  checks: CheckResult[];
}

export interface EvaluateOptions {
  /** Only these checks (e.g. the scheduler's WAL-archive check); default all. */
  only?: readonly CheckName[];
}

export function evaluateHealth(facts: HealthFacts, policy: HealthPolicy, now: Date, options: EvaluateOptions = {}): HealthReport {
  const wanted = new Set<CheckName>(options.only ?? CHECK_NAMES);
  const checks: CheckResult[] = [];
  for (const name of CHECK_NAMES) {
    if (!wanted.has(name)) continue;
    checks.push(evaluateCheck(name, facts, policy, now));
  }
  const status = worstState(checks.map((c) => c.status));
  return {
    cluster: facts.cluster,
    repository: facts.repository.kind === 'known' ? facts.repository.value.location : null,
    evaluatedAt: now,
    status,
    exitCode: EXIT_CODE[status],
    checks,
  };
}

/** The worst of the counted states; SKIPPED checks do not count, and nothing counted is OK. */
export function worstState(states: readonly CheckStatus[]): HealthState {
  let worst: HealthState = 'OK';
  for (const state of states) {
    if (state === 'SKIPPED') continue;
    if (SEVERITY[state] > SEVERITY[worst]) worst = state;
  }
  return worst;
}

function evaluateCheck(name: CheckName, facts: HealthFacts, policy: HealthPolicy, now: Date): CheckResult {
  switch (name) {
    case 'repository':
      return checkRepository(facts);
    case 'backup-age':
      return checkBackupAge(facts, policy.backupAge, now);
    case 'wal-archive':
      return checkWalArchive(facts.wal, policy.walArchiveLag, now);
    case 'etcd-snapshot':
      return checkEtcdSnapshot(facts, policy.etcdSnapshotAge, now);
    case 'drill':
      return checkDrill(facts, policy.drillAge, now);
  }
}

function checkRepository(facts: HealthFacts): CheckResult {
  const repo = facts.repository;
  if (repo.kind === 'known') {
    return { check: 'repository', status: 'OK', message: `repository ${repo.value.location} is reachable`, measurements: {} };
  }
  if (repo.kind === 'not-configured') return skipped('repository', repo.reason);
  return {
    check: 'repository',
    status: 'CRITICAL',
    message: `repository unreachable: ${repo.error}`,
    hint: repo.hint ?? 'check --repo, the storage endpoint and credentials; backups and WAL archiving fail while this lasts',
    measurements: {},
  };
}

function checkBackupAge(facts: HealthFacts, thresholds: AgeThresholds, now: Date): CheckResult {
  const fact = facts.backups;
  if (fact.kind !== 'known') return notKnown('backup-age', fact, 'the backup catalog');
  const backups = fact.value;
  const counts: CheckMeasurements = {
    completeBackups: backups.completeCount,
    incompleteBackups: backups.incompleteCount,
    invalidBackups: backups.invalidIds.length,
    ...thresholdSeconds(thresholds),
  };
  if (backups.newest === null) {
    return {
      check: 'backup-age',
      status: 'CRITICAL',
      message: backups.unrestorableIds.length > 0 ? `no base backup in the repository can be restored: ${backups.unrestorableIds.length} build(s) on a backup that is gone` : 'no complete base backup in the repository',
      hint: 'take one with `pgdr backup now`; until then nothing can be restored',
      measurements: counts,
    };
  }
  const newest = backups.newest;
  const ageMs = ageOf(newest.stopTime, now);
  const state = ageState(ageMs, thresholds);
  const measurements: CheckMeasurements = {
    ...counts,
    ageSeconds: ageMs / 1000,
    lastTimestampSeconds: newest.stopTime.getTime() / 1000,
    backupBytes: newest.bytes,
    backupStoredBytes: newest.storedBytes,
    backupDurationSeconds: Math.max(0, newest.stopTime.getTime() - newest.startTime.getTime()) / 1000,
  };
  let message = `newest complete backup ${newest.backupId} finished ${formatAge(ageMs)} ago${limitNote(state, thresholds)}`;
  let status: HealthState = state;
  let hint = state === 'OK' ? undefined : 'check why backups stopped (scheduler or CronJob logs), then run `pgdr backup now`';
  if (backups.unrestorableIds.length > 0) {
    // Backups that look complete but build on one that is gone: what they promise is not there.
    const ids = backups.unrestorableIds;
    message += `; ${ids.length} backup(s) cannot be restored, their chain lacks a member: ${ids.slice(0, 3).join(', ')}${ids.length > 3 ? ', ...' : ''}`;
    if (status === 'OK') {
      status = 'WARNING';
      hint = 'run `pgdr verify` (broken-chain names the missing backup); take a full backup with `pgdr backup now --type full`';
    }
  }
  if (backups.invalidIds.length > 0) {
    // A manifest that does not validate is damage someone must look at, even when a newer backup is fine.
    message += `; ${backups.invalidIds.length} invalid manifest(s): ${backups.invalidIds.slice(0, 3).join(', ')}${backups.invalidIds.length > 3 ? ', ...' : ''}`;
    if (status === 'OK') {
      status = 'WARNING';
      hint = 'run `pgdr verify` to see what is wrong with them';
    }
  }
  return { check: 'backup-age', status, message, ...(hint === undefined ? {} : { hint }), measurements };
}

/** Why the archive is in the state it is; exported for tests. */
export function walArchiveLag(
  facts: WalArchiveFacts,
  now: Date,
): { lagSegments: number; lagMs: number; firstMissing: string | null } | { error: string } {
  const { server, newestArchived } = facts;
  if (newestArchived === null) return { error: 'no WAL segment in the repository' };
  let current: bigint;
  let newest: bigint;
  try {
    current = segmentNumberOf(server.currentWalFile, server.walSegmentSize);
    newest = segmentNumberOf(newestArchived.name, server.walSegmentSize);
  } catch (err) {
    return { error: (err as Error).message };
  }
  // Segments before the one being written are complete; those after the newest archived one are not in the
  // repository yet. Positions, not names: after a failover the new timeline continues the same numbering.
  const missing = current - newest - 1n;
  const lagSegments = missing > 0n ? Number(missing) : 0;
  if (lagSegments === 0) return { lagSegments: 0, lagMs: 0, firstMissing: null };
  const waiting = oldestWaitingSegment(server, newest, current);
  // With pg_wal readable, the wait is measured on the server's clock from when the oldest missing segment filled
  // up; otherwise from when the repository last received a segment (an upper bound).
  const lagMs = waiting
    ? Math.max(0, server.serverTime.getTime() - waiting.modified.getTime())
    : ageOf(newestArchived.storedAt, now);
  return { lagSegments, lagMs, firstMissing: waiting?.name ?? null };
}

function oldestWaitingSegment(server: ServerWalFacts, newest: bigint, current: bigint): { name: string; modified: Date } | null {
  if (server.walFiles === null) return null;
  let oldest: { name: string; modified: Date } | null = null;
  for (const file of server.walFiles) {
    let n: bigint;
    try {
      n = segmentNumberOf(file.name, server.walSegmentSize);
    } catch {
      continue; // history files, .partial, archive_status/ and other entries
    }
    if (n <= newest || n >= current) continue;
    if (oldest === null || file.modified < oldest.modified) oldest = file;
  }
  return oldest;
}

function segmentNumberOf(name: string, segSize: number): bigint {
  const parsed = parseWalFileName(name, segSize);
  if (parsed.kind !== 'segment') throw new Error(`${name} is not a WAL segment`);
  return walSegmentNumber(parsed.segmentName, segSize);
}

function checkWalArchive(fact: Fact<WalArchiveFacts>, thresholds: HealthPolicy['walArchiveLag'], now: Date): CheckResult {
  if (fact.kind !== 'known') return notKnown('wal-archive', fact, 'the WAL archive state');
  const { server, newestArchived } = fact.value;
  const base: CheckMeasurements = {
    archiverFailedCount: server.archiver.failedCount,
    warningSegments: thresholds.warningSegments,
    criticalSegments: thresholds.criticalSegments,
    ...thresholdSeconds(thresholds),
  };
  if (server.archiveMode === 'off') {
    return {
      check: 'wal-archive',
      status: 'CRITICAL',
      message: `archive_mode is off on ${server.source}: no WAL reaches the repository`,
      hint: "set archive_mode = on and archive_command = 'pgdr wal push %p' (a restart is needed)",
      measurements: base,
    };
  }
  if (fact.value.aheadOfServer !== null) return archiveAhead(fact.value, base, now);
  const { archiver } = server;
  const failing =
    archiver.failedCount > 0 &&
    archiver.lastFailedTime !== null &&
    (archiver.lastArchivedTime === null || archiver.lastFailedTime > archiver.lastArchivedTime);
  const lag = walArchiveLag(fact.value, now);
  if ('error' in lag) {
    return {
      check: 'wal-archive',
      status: newestArchived === null ? 'CRITICAL' : 'UNKNOWN',
      message: `${lag.error} (server ${server.source} writes ${server.currentWalFile})${failing ? `; archive_command last failed on ${archiver.lastFailedWal} at ${archiver.lastFailedTime!.toISOString()}` : ''}`,
      hint:
        newestArchived === null
          ? "check archive_command ('pgdr wal push %p') and the PostgreSQL log; SELECT pg_switch_wal() archives the current segment"
          : 'run with --debug and report the output',
      measurements: base,
    };
  }
  const measurements: CheckMeasurements = { ...base, lagSegments: lag.lagSegments, lagSeconds: lag.lagMs / 1000 };
  const bySegments: HealthState =
    lag.lagSegments > thresholds.criticalSegments ? 'CRITICAL' : lag.lagSegments > thresholds.warningSegments ? 'WARNING' : 'OK';
  const byTime = lag.lagSegments === 0 ? 'OK' : ageState(lag.lagMs, thresholds);
  let status = worstState([bySegments, byTime]);
  const position = `newest archived ${newestArchived!.name}, server ${server.source} writes ${server.currentWalFile}`;
  let message =
    lag.lagSegments === 0
      ? `WAL archive is current (${position})`
      : `${lag.lagSegments} completed segment(s) not in the repository, oldest waiting ${formatAge(lag.lagMs)} (${position})`;
  let hint: string | undefined =
    status === 'OK' ? undefined : "check archive_command ('pgdr wal push %p'), pg_stat_archiver and the PostgreSQL log";
  if (failing) {
    // The archiver retries the same segment: as long as its newest attempt failed, WAL piles up in pg_wal and
    // point-in-time recovery stops at the last archived segment.
    status = 'CRITICAL';
    message = `archive_command is failing on ${server.source}: ${archiver.lastFailedWal ?? 'a WAL file'} failed at ${archiver.lastFailedTime!.toISOString()} (${archiver.failedCount} failure(s) since the statistics reset); ${message}`;
    hint = 'read the archive_command error in the PostgreSQL log; try `pgdr wal push` by hand as the postgres user';
  }
  return { check: 'wal-archive', status, message, ...(hint === undefined ? {} : { hint }), measurements };
}

/**
 * The repository holds WAL this server cannot have written. CRITICAL, not WARNING: a second server archives under
 * this cluster's name, so its segments take names the real primary will need (the conditional write then refuses
 * the primary's own segment and its archive_command fails), and a recovery that follows the latest timeline may
 * replay the other server's history instead of this one's. Both lose data without anyone noticing, which is what
 * CRITICAL is for.
 */
function archiveAhead(facts: WalArchiveFacts, base: CheckMeasurements, now: Date): CheckResult {
  const { server } = facts;
  const ahead = facts.aheadOfServer!;
  const serverTimeline = parseInt(server.currentWalFile.slice(0, 8), 16);
  const aheadTimeline = parseInt(ahead.name.slice(0, 8), 16);
  const lag = walArchiveLag(facts, now);
  const stored = ahead.storedAt.toISOString();
  const message =
    aheadTimeline > serverTimeline
      ? `the repository holds WAL of timeline ${aheadTimeline} (${ahead.name}, stored ${stored}), but server ${server.source} is on timeline ${serverTimeline}: ` +
        'a server promoted from a copy of this cluster archives under its name'
      : `the repository holds ${ahead.name} (stored ${stored}), ${aheadTimeline === serverTimeline ? 'at or past' : 'past'} the segment server ${server.source} writes (${server.currentWalFile}): ` +
        'another server archives under this cluster\'s name';
  return {
    check: 'wal-archive',
    status: 'CRITICAL',
    message,
    hint:
      'find the other server whose archive_command uses this --cluster (a restored copy, an old primary still running) and stop its archiving; ' +
      'then run `pgdr verify`: recovery to the latest timeline would replay its WAL',
    measurements: 'error' in lag ? base : { ...base, lagSegments: lag.lagSegments, lagSeconds: lag.lagMs / 1000 },
  };
}

function checkEtcdSnapshot(facts: HealthFacts, thresholds: AgeThresholds, now: Date): CheckResult {
  const fact = facts.etcd;
  if (fact.kind !== 'known') return notKnown('etcd-snapshot', fact, 'the etcd snapshots');
  const base = thresholdSeconds(thresholds);
  const newest = fact.value.newest;
  if (newest === null) {
    return {
      check: 'etcd-snapshot',
      status: 'CRITICAL',
      message: 'no etcd snapshot in the repository',
      hint: 'take one with `pgdr etcd snapshot`; without it a lost etcd cluster must be rebuilt by hand',
      measurements: base,
    };
  }
  const ageMs = ageOf(newest.takenAt, now);
  const state = ageState(ageMs, thresholds);
  return {
    check: 'etcd-snapshot',
    status: state,
    message: `newest etcd snapshot ${newest.snapshotId} taken ${formatAge(ageMs)} ago${limitNote(state, thresholds)}`,
    ...(state === 'OK' ? {} : { hint: 'check why snapshots stopped (scheduler or CronJob logs), then run `pgdr etcd snapshot`' }),
    measurements: { ...base, ageSeconds: ageMs / 1000, lastTimestampSeconds: newest.takenAt.getTime() / 1000 },
  };
}

function checkDrill(facts: HealthFacts, thresholds: AgeThresholds, now: Date): CheckResult {
  const fact = facts.drill;
  if (fact.kind !== 'known') return notKnown('drill', fact, 'the drill reports');
  const base = thresholdSeconds(thresholds);
  const last = fact.value.last;
  if (last === null) {
    // A new repository gets the drill's critical age as grace: no drill yet is a warning until the oldest backup
    // is as old as a drill may be; after that, nothing has ever proved a restore works.
    const oldest = facts.backups.kind === 'known' ? facts.backups.value.oldestStart : null;
    const repoAgeMs = oldest === null ? 0 : ageOf(oldest, now);
    const status: HealthState = repoAgeMs > thresholds.critical ? 'CRITICAL' : 'WARNING';
    return {
      check: 'drill',
      status,
      message: `no restore drill recorded${oldest === null ? '' : `; the oldest backup started ${formatAge(repoAgeMs)} ago`}`,
      hint: 'run `pgdr drill` to prove that a restore works',
      measurements: base,
    };
  }
  const ageMs = ageOf(last.at, now);
  const measurements: CheckMeasurements = {
    ...base,
    ageSeconds: ageMs / 1000,
    lastTimestampSeconds: last.at.getTime() / 1000,
    drillPassed: last.passed ? 1 : 0,
  };
  if (!last.passed) {
    return {
      check: 'drill',
      status: 'CRITICAL',
      message: `last restore drill ${last.drillId} FAILED ${formatAge(ageMs)} ago${last.failure ? `: ${last.failure}` : ''}`,
      hint: 'read the report (`pgdr drill list`), fix the cause and run `pgdr drill` again',
      measurements,
    };
  }
  const state = ageState(ageMs, thresholds);
  return {
    check: 'drill',
    status: state,
    message: `last restore drill ${last.drillId} passed ${formatAge(ageMs)} ago${limitNote(state, thresholds)}`,
    ...(state === 'OK' ? {} : { hint: 'run `pgdr drill`; check why the monthly drill did not run' }),
    measurements,
  };
}

function notKnown(check: CheckName, fact: Exclude<Fact<unknown>, { kind: 'known' }>, what: string): CheckResult {
  if (fact.kind === 'not-configured') return skipped(check, fact.reason);
  return {
    check,
    status: 'UNKNOWN',
    message: `cannot read ${what}: ${fact.error}`,
    hint: fact.hint ?? 'run with --debug for details',
    measurements: {},
  };
}

function skipped(check: CheckName, reason: string): CheckResult {
  return { check, status: 'SKIPPED', message: reason, measurements: {} };
}

/** Past `warning` is WARNING, past `critical` CRITICAL; exactly at a threshold is still the milder state. */
export function ageState(ageMs: number, thresholds: AgeThresholds): HealthState {
  if (ageMs > thresholds.critical) return 'CRITICAL';
  if (ageMs > thresholds.warning) return 'WARNING';
  return 'OK';
}

/** A timestamp in the future (clock skew between hosts) is age 0, not a negative age. */
function ageOf(at: Date, now: Date): number {
  return Math.max(0, now.getTime() - at.getTime());
}

function thresholdSeconds(t: AgeThresholds): CheckMeasurements {
  return { warningSeconds: t.warning / 1000, criticalSeconds: t.critical / 1000 };
}

function limitNote(state: HealthState, thresholds: AgeThresholds): string {
  if (state === 'CRITICAL') return ` (critical past ${formatAge(thresholds.critical)})`;
  if (state === 'WARNING') return ` (warning past ${formatAge(thresholds.warning)})`;
  return '';
}

/** "45 s", "12 min", "5.2 h", "3.1 d": short enough for a one-line Nagios status. */
export function formatAge(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 2 * 3600) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${trimZero((s / 3600).toFixed(1))} h`;
  return `${trimZero((s / 86400).toFixed(1))} d`;
}

function trimZero(text: string): string {
  return text.endsWith('.0') ? text.slice(0, -2) : text;
}
