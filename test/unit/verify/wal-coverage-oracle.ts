import { parseLsn, type Lsn } from '../../../src/postgres/lsn.js';
import {
  historyFileName,
  parseWalFileName,
  walSegmentFromNumber,
  walSegmentNumber,
  formatWalSegmentName,
} from '../../../src/postgres/wal-file-name.js';
import { rootTimelineHistory, timelineOfLsn, timelineSpans, type TimelineHistory } from '../../../src/postgres/timeline-history.js';
import type { RepositoryLayout } from '../../../src/repo/layout.js';
import { describeBackups, formatMoment, type VerifyProblem } from '../../../src/verify/problems.js';
import type { BackupWalFacts, WalArchiveListing } from '../../../src/verify/wal-coverage.js';

/**
 * The WAL coverage check as pgdr 0.1.0 shipped it, kept only as the oracle of the property test
 * (wal-coverage.property.test.ts): it spells out every segment every backup needs, which is obviously right and
 * grows with backups × segments. src/verify/wal-coverage.ts must report exactly what this reports.
 */

interface WalPathEnd {
  segment: string;
  segmentNumber: bigint;
  archivedAt: Date;
}

interface WalPath {
  timeline: number;
  history: TimelineHistory;
  end: WalPathEnd | undefined;
}

export interface OracleWalIndex {
  segmentSize: number;
  paths: WalPath[];
  segments: ReadonlyMap<string, Date>;
  timelinesWithoutHistory: number[];
}

interface NeededSegment {
  name: string;
  segmentNumber: bigint;
  role: 'consistency' | 'reach';
  present: boolean;
}

interface BackupWalNeed {
  backupId: string;
  pathTimeline: number;
  segments: NeededSegment[];
}

export function oracleBuildWalIndex(listing: WalArchiveListing): OracleWalIndex {
  const { segmentSize } = listing;
  const segments = new Map<string, Date>();
  const timelinesWithWal = new Set<number>();
  for (const file of listing.files) {
    let parsed;
    try {
      parsed = parseWalFileName(file.name, segmentSize);
    } catch {
      continue; // not a WAL name: the foreign-object check reports it
    }
    if (parsed.kind === 'history') continue;
    timelinesWithWal.add(parsed.segmentName.timeline);
    if (parsed.kind === 'segment') segments.set(file.name, file.lastModified);
  }

  const timelinesWithoutHistory = [...timelinesWithWal]
    .filter((t) => t > 1 && !listing.histories.has(t) && !(listing.unreadableHistories?.has(t) ?? false))
    .sort((a, b) => a - b);

  const ancestors = new Set<number>();
  for (const history of listing.histories.values()) for (const entry of history.entries) ancestors.add(entry.timeline);
  const known = new Set<number>([...listing.histories.keys()]);
  if (timelinesWithWal.has(1)) known.add(1);
  const leaves = [...known].filter((t) => !ancestors.has(t)).sort((a, b) => a - b);

  const paths = leaves.map((timeline): WalPath => {
    const history = timeline === 1 ? rootTimelineHistory() : listing.histories.get(timeline)!;
    let end: WalPathEnd | undefined;
    for (const [name, archivedAt] of segments) {
      const segmentName = parseWalFileName(name, segmentSize);
      if (segmentName.kind !== 'segment') continue;
      const n = walSegmentNumber(segmentName.segmentName, segmentSize);
      if (timelineForSegment(history, n, segmentSize) !== segmentName.segmentName.timeline) continue;
      if (end === undefined || n > end.segmentNumber) end = { segment: name, segmentNumber: n, archivedAt };
    }
    return { timeline, history, end };
  });
  return { segmentSize, paths, segments, timelinesWithoutHistory };
}

/**
 * The timeline recovery reads segment `n` from on the path to `history.timeline`: the newest timeline on the path
 * that has begun by that segment (the segment holding a switch point comes from the new timeline).
 */
function timelineForSegment(history: TimelineHistory, n: bigint, segmentSize: number): number {
  const size = BigInt(segmentSize);
  let timeline = history.timeline;
  // Spans run oldest first and the first begins at 0, so the last one begun by `n` wins.
  for (const span of timelineSpans(history)) {
    if (span.begin / size <= n) timeline = span.timeline;
  }
  return timeline;
}

/** Whether a backup lies on a path: the timeline holding its stop point there is the one it was taken on. */
function isBackupOnPath(backup: BackupWalFacts, history: TimelineHistory): boolean {
  return timelineOfLsn(history, parseLsn(backup.stopLsn)) === backup.timeline;
}

/** The stored paths that hold a backup, oldest leaf first. */
function pathsOfBackup(index: OracleWalIndex, backup: BackupWalFacts): WalPath[] {
  return index.paths.filter((p) => isBackupOnPath(backup, p.history));
}

/**
 * The segments a backup needs on one path, from its start up to `untilLsn` (default: the path's newest segment;
 * never less than its own stop segment).
 */
function walNeededOnPath(index: OracleWalIndex, backup: BackupWalFacts, path: WalPath | undefined, untilLsn?: Lsn): BackupWalNeed {
  const size = BigInt(index.segmentSize);
  // No stored path holds the backup (its timeline's WAL or history is missing entirely): it still needs its own
  // range, on its own timeline.
  const history: TimelineHistory = path?.history ?? { timeline: backup.timeline, entries: [] };
  const startN = parseLsn(backup.startLsn) / size;
  const stopN = parseLsn(backup.stopLsn) / size;
  let lastN = untilLsn !== undefined ? untilLsn / size : (path?.end?.segmentNumber ?? stopN);
  if (lastN < stopN) lastN = stopN;
  const segments: NeededSegment[] = [];
  for (let n = startN; n <= lastN; n++) {
    const name = formatWalSegmentName(walSegmentFromNumber(timelineForSegment(history, n, index.segmentSize), n, index.segmentSize));
    segments.push({ name, segmentNumber: n, role: n <= stopN ? 'consistency' : 'reach', present: index.segments.has(name) });
  }
  return { backupId: backup.backupId, pathTimeline: path?.timeline ?? backup.timeline, segments };
}

interface OracleCoverageReport {
  problems: VerifyProblem[];
  needs: BackupWalNeed[];
  /** Distinct segments some backup needs. */
  neededSegments: number;
  missingSegments: number;
}

/**
 * Every backup's WAL on every path that holds it, with each gap turned into one problem per run of consecutive
 * missing segments that break the same backups, worded by what it breaks.
 */
export function oracleCheckWalCoverage(index: OracleWalIndex, backups: readonly BackupWalFacts[], layout: RepositoryLayout): OracleCoverageReport {
  const needs: BackupWalNeed[] = [];
  for (const backup of backups) {
    const paths = pathsOfBackup(index, backup);
    if (paths.length === 0) needs.push(walNeededOnPath(index, backup, undefined));
    else for (const path of paths) needs.push(walNeededOnPath(index, backup, path));
  }

  interface Gap {
    name: string;
    segmentNumber: bigint;
    timeline: number;
    consistency: Set<string>;
    reach: Set<string>;
    /** When the next segment archived after the gap arrived: the first moment the gap keeps out of reach. */
    nextArchivedAt: Date | undefined;
  }
  const gaps = new Map<string, Gap>();
  const needed = new Set<string>();
  for (const need of needs) {
    let nextArchivedAt: Date | undefined;
    // Walk backwards so each missing segment knows the next present one after it.
    for (let i = need.segments.length - 1; i >= 0; i--) {
      const segment = need.segments[i]!;
      needed.add(segment.name);
      if (segment.present) {
        nextArchivedAt = index.segments.get(segment.name);
        continue;
      }
      const gap = gaps.get(segment.name) ?? {
        name: segment.name,
        segmentNumber: segment.segmentNumber,
        timeline: parseInt(segment.name.slice(0, 8), 16),
        consistency: new Set<string>(),
        reach: new Set<string>(),
        nextArchivedAt,
      };
      (segment.role === 'consistency' ? gap.consistency : gap.reach).add(need.backupId);
      if (nextArchivedAt !== undefined && (gap.nextArchivedAt === undefined || nextArchivedAt < gap.nextArchivedAt)) gap.nextArchivedAt = nextArchivedAt;
      gaps.set(segment.name, gap);
    }
  }

  const ordered = [...gaps.values()].sort((a, b) => (a.segmentNumber < b.segmentNumber ? -1 : a.segmentNumber > b.segmentNumber ? 1 : a.timeline - b.timeline));
  const problems: VerifyProblem[] = [];
  let run: Gap[] = [];
  const flush = (): void => {
    if (run.length > 0) problems.push(gapProblem(run, layout));
    run = [];
  };
  for (const gap of ordered) {
    const last = run[run.length - 1];
    const continues =
      last !== undefined &&
      gap.segmentNumber === last.segmentNumber + 1n &&
      sameSet(gap.consistency, last.consistency) &&
      sameSet(gap.reach, last.reach);
    if (!continues) flush();
    run.push(gap);
  }
  flush();

  for (const timeline of index.timelinesWithoutHistory) {
    // Backups on older timelines would have to cross into this one to reach its WAL.
    const broken = backups.filter((b) => b.timeline < timeline).map((b) => b.backupId);
    problems.push({
      kind: 'missing-history',
      key: layout.walObject(historyFileName(timeline)),
      detail:
        `timeline ${timeline} has WAL in the repository but no ${historyFileName(timeline)}: recovery cannot follow it` +
        (broken.length > 0 ? `, so ${describeBackups(broken)} cannot reach past the switch to it` : ''),
      breaks: broken,
    });
  }
  return { problems, needs, neededSegments: needed.size, missingSegments: gaps.size };

  function gapProblem(segments: { name: string; consistency: Set<string>; reach: Set<string>; nextArchivedAt: Date | undefined }[], l: RepositoryLayout): VerifyProblem {
    const first = segments[0]!;
    const lastSegment = segments[segments.length - 1]!;
    const what = segments.length === 1 ? `segment ${first.name}` : `segments ${first.name} to ${lastSegment.name} (${segments.length})`;
    const clauses: string[] = [];
    if (first.consistency.size > 0) clauses.push(`${describeBackups([...first.consistency])} cannot become consistent`);
    if (first.reach.size > 0) {
      const when = lastSegment.nextArchivedAt === undefined ? 'the end of the archive' : formatMoment(lastSegment.nextArchivedAt);
      clauses.push(`${describeBackups([...first.reach])} cannot reach ${when}`);
    }
    return {
      kind: 'missing-wal',
      key: l.walObject(first.name),
      detail: `${clauses.join(' and ')}: ${what} missing`,
      breaks: [...new Set([...first.consistency, ...first.reach])].sort(),
    };
  }
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
