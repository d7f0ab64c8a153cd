import { RepositoryError, UsageError } from '../errors.js';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.js';
import { describeRecoveryTarget, parseTimestamp, type RecoveryTarget } from '../postgres/recovery-target.js';
import { timelineOfLsn, type TimelineHistory } from '../postgres/timeline-history.js';
import type { BackupManifest } from '../repo/manifest.js';

/**
 * Which backup serves a recovery target. A restored server is consistent only once recovery has replayed
 * its backup up to the backup's stop point, so a backup can serve a target only if it stopped at or before
 * it; among those, the newest leaves the least WAL to replay.
 */
export interface RestorePlan {
  backup: BackupManifest;
  target: RecoveryTarget;
  /** Why this backup, in one sentence for people. */
  reason: string;
  /**
   * The WAL the backup needs before anything else, on the backup's timeline, both ends included: without
   * these segments the restored data directory never becomes consistent.
   */
  backupWal: { startWal: string; stopWal: string };
}

export interface RestorePlanOptions {
  /** Use this backup instead of choosing one (`--backup-id`). */
  backupId?: string;
  /** Named in messages only. */
  cluster?: string;
  /**
   * The history of the timeline recovery will follow. When given, backups that are not on that path (taken
   * on a branch that later died, or on the old primary after it lost a failover) are not considered:
   * recovery could not get from them to the target timeline.
   */
  history?: TimelineHistory;
  /**
   * Where a named restore point lies, when pgdr recorded it (`pgdr restore-point create`): a name target then picks
   * the backup the way an LSN target does.
   */
  restorePoint?: { lsn: string };
}

interface Candidate {
  manifest: BackupManifest;
  stopMicros: bigint;
  stopLsn: Lsn;
}

export function planRestore(
  backups: readonly BackupManifest[],
  target: RecoveryTarget,
  options: RestorePlanOptions = {},
): RestorePlan {
  const cluster = options.cluster === undefined ? '' : ` for cluster ${options.cluster}`;
  if (backups.length === 0) {
    throw new RepositoryError(`the repository holds no complete backup${cluster}`, 'run pgdr backup now');
  }
  const all = backups.map(toCandidate);

  if (options.backupId !== undefined) return planWithChosenBackup(all, target, options.backupId, options.history, options.restorePoint);

  const usable = options.history === undefined ? all : all.filter((c) => isOnPath(c, options.history!));
  if (usable.length === 0) {
    throw new RepositoryError(
      `none of the ${all.length} backups${cluster} lies on the history of timeline ${options.history!.timeline}`,
      'run pgdr backup now, or restore along an older timeline with --backup-id',
    );
  }

  switch (target.kind) {
    case 'time': {
      const qualifying = usable.filter((c) => c.stopMicros <= target.epochMicros);
      const chosen = newest(qualifying, byStopTime);
      if (!chosen) {
        const oldest = oldestOf(usable, byStopTime);
        throw new UsageError(
          `target time ${target.text} is before the oldest backup finished: ${oldest.manifest.backupId} stopped at ${oldest.manifest.stopTime}`,
          `choose a target at or after ${oldest.manifest.stopTime} (see pgdr backup list); a backup cannot be restored to a moment before it finished`,
        );
      }
      return plan(
        chosen,
        target,
        `backup ${chosen.manifest.backupId} is the newest that finished (${chosen.manifest.stopTime}) at or before the target time, so it replays the least WAL`,
      );
    }
    case 'lsn': {
      const qualifying = usable.filter((c) => c.stopLsn <= target.lsn);
      const chosen = newest(qualifying, byStopLsn);
      if (!chosen) {
        const oldest = oldestOf(usable, byStopLsn);
        throw new UsageError(
          `target LSN ${formatLsn(target.lsn)} is before the oldest backup finished: ${oldest.manifest.backupId} stopped at ${oldest.manifest.stopLsn}`,
          `choose a target at or after ${oldest.manifest.stopLsn} (see pgdr backup list); a backup cannot be restored to a point before it finished`,
        );
      }
      return plan(
        chosen,
        target,
        `backup ${chosen.manifest.backupId} is the newest whose stop LSN (${chosen.manifest.stopLsn}) is at or before the target LSN, so it replays the least WAL`,
      );
    }
    case 'name': {
      if (options.restorePoint !== undefined) {
        const pointLsn = parseLsn(options.restorePoint.lsn, 'restore point LSN');
        const chosen = newest(usable.filter((c) => c.stopLsn <= pointLsn), byStopLsn);
        if (!chosen) {
          const oldest = oldestOf(usable, byStopLsn);
          throw new UsageError(
            `restore point ${JSON.stringify(target.name)} (${options.restorePoint.lsn}) was made before the oldest backup finished: ${oldest.manifest.backupId} stopped at ${oldest.manifest.stopLsn}`,
            'no backup in the repository can reach it; choose a later target (see pgdr backup list)',
          );
        }
        return plan(
          chosen,
          target,
          `backup ${chosen.manifest.backupId} is the newest that finished (${chosen.manifest.stopLsn}) before restore point ${JSON.stringify(target.name)} (${options.restorePoint.lsn}, recorded by pgdr restore-point create)`,
        );
      }
      const chosen = newest(usable, byStopTime)!;
      const previous = newest(
        usable.filter((c) => byStopTime(c, chosen) < 0),
        byStopTime,
      );
      return plan(
        chosen,
        target,
        `pgdr has no record of restore point ${JSON.stringify(target.name)}, and recovery finds it only when it gets there, so the newest backup, ${chosen.manifest.backupId}, is used` +
          (previous === undefined
            ? ''
            : `; if the restore point was made before ${chosen.manifest.stopTime}, restore with --backup-id ${previous.manifest.backupId} (or older)`) +
          '; restore points made with pgdr restore-point create are found exactly',
      );
    }
    case 'latest': {
      const chosen = newest(usable, byStopTime)!;
      return plan(
        chosen,
        target,
        `backup ${chosen.manifest.backupId} is the newest, so it replays the least WAL to reach the end of the archive`,
      );
    }
  }
}

function planWithChosenBackup(
  all: Candidate[],
  target: RecoveryTarget,
  backupId: string,
  history: TimelineHistory | undefined,
  restorePoint: { lsn: string } | undefined,
): RestorePlan {
  const chosen = all.find((c) => c.manifest.backupId === backupId);
  if (!chosen) {
    throw new UsageError(`no backup ${JSON.stringify(backupId)} in the repository`, 'run pgdr backup list to see the backup ids');
  }
  const { manifest } = chosen;
  if (history !== undefined && !isOnPath(chosen, history)) {
    throw new UsageError(
      `backup ${backupId} (timeline ${manifest.timeline}, stop LSN ${manifest.stopLsn}) is not on the history of timeline ${history.timeline}`,
      'choose a backup taken on that timeline or one of its ancestors (pgdr backup list)',
    );
  }
  const tooEarly = (stoppedAt: string) =>
    new UsageError(
      `target ${describeRecoveryTarget(target)} is before backup ${backupId} finished (${stoppedAt})`,
      'choose a later target, or an older backup with --backup-id (pgdr backup list)',
    );
  let why = '';
  switch (target.kind) {
    case 'time':
      if (chosen.stopMicros > target.epochMicros) throw tooEarly(`stopped at ${manifest.stopTime}`);
      why = `; it finished at ${manifest.stopTime}, at or before the target time`;
      break;
    case 'lsn':
      if (chosen.stopLsn > target.lsn) throw tooEarly(`stop LSN ${manifest.stopLsn}`);
      why = `; it finished at ${manifest.stopLsn}, at or before the target LSN`;
      break;
    case 'name':
      if (restorePoint !== undefined && chosen.stopLsn > parseLsn(restorePoint.lsn, 'restore point LSN')) throw tooEarly(`stop LSN ${manifest.stopLsn}, restore point at ${restorePoint.lsn}`);
      why =
        restorePoint !== undefined
          ? `; it finished before restore point ${JSON.stringify(target.name)} (${restorePoint.lsn})`
          : `; recovery fails if restore point ${JSON.stringify(target.name)} was made before it finished (${manifest.stopTime})`;
      break;
    case 'latest':
      break;
  }
  return plan(chosen, target, `backup ${backupId} was chosen with --backup-id${why}`);
}

function plan(chosen: Candidate, target: RecoveryTarget, reason: string): RestorePlan {
  const { manifest } = chosen;
  return { backup: manifest, target, reason, backupWal: { startWal: manifest.startWal, stopWal: manifest.stopWal } };
}

function toCandidate(manifest: BackupManifest): Candidate {
  try {
    return {
      manifest,
      stopMicros: parseTimestamp(manifest.stopTime, 'stop time').epochMicros,
      stopLsn: parseLsn(manifest.stopLsn, 'stop LSN'),
    };
  } catch (err) {
    throw new RepositoryError(
      `the manifest of backup ${manifest.backupId} is damaged: ${(err as Error).message}`,
      'run pgdr verify',
      err,
    );
  }
}

/** A backup lies on the path if the timeline that holds its stop point there is the one it was taken on. */
function isOnPath(candidate: Candidate, history: TimelineHistory): boolean {
  return timelineOfLsn(history, candidate.stopLsn) === candidate.manifest.timeline;
}

type Order = (a: Candidate, b: Candidate) => number;

// Every order ends with the backup id, so the choice never depends on the order the catalog listed them in.
const byStopTime: Order = (a, b) =>
  cmp(a.stopMicros, b.stopMicros) || cmp(a.stopLsn, b.stopLsn) || cmp(a.manifest.backupId, b.manifest.backupId);
const byStopLsn: Order = (a, b) =>
  cmp(a.stopLsn, b.stopLsn) || cmp(a.stopMicros, b.stopMicros) || cmp(a.manifest.backupId, b.manifest.backupId);

function newest(candidates: Candidate[], order: Order): Candidate | undefined {
  return candidates.reduce<Candidate | undefined>((best, c) => (best === undefined || order(c, best) > 0 ? c : best), undefined);
}

function oldestOf(candidates: Candidate[], order: Order): Candidate {
  return candidates.reduce((best, c) => (order(c, best) < 0 ? c : best));
}

function cmp<T extends bigint | string>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
