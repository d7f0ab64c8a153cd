import { parseLsn, type Lsn } from '../postgres/lsn.js';
import { formatWalSegmentName, historyFileName, parseWalFileName, walSegmentFromNumber, walSegmentNumber } from '../postgres/wal-file-name.js';
import { rootTimelineHistory, timelineOfLsn, timelineSpans, type TimelineHistory } from '../postgres/timeline-history.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { BackupManifest } from '../repo/manifest.js';
import { describeBackups, formatMoment, type VerifyProblem } from './problems.js';

/**
 * Which WAL each backup needs, and which of it is missing: pure, over what a listing of wal/ and the stored
 * .history files say.
 *
 * A backup needs every segment from the one holding its start LSN to the one holding its stop LSN to become
 * consistent at all, and every segment after that, up to the newest one archived on a timeline path through it,
 * to be restorable to any moment in between. Which timeline a segment is read from follows recovery itself
 * (walSegmentsOnPath): the newest timeline on the path that exists by that segment.
 *
 * A "path" is the history of a leaf timeline: one that no other stored history names as a parent. A backup taken
 * before a failover lies on the paths of both the old and the new timeline; each is checked, since recovery may
 * be asked to follow either.
 *
 * Segments are handled as numbers and missing segments as runs, never as one record per segment and backup: a
 * 30-day archive holds 100,000+ segments and hundreds of backups need most of them.
 */
export type BackupWalFacts = Pick<BackupManifest, 'backupId' | 'timeline' | 'startLsn' | 'stopLsn'>;

export interface ArchivedWalObject {
  /** The WAL file name: a segment, .partial, .backup or .history file. */
  name: string;
  lastModified: Date;
}

export interface WalArchiveListing {
  files: readonly ArchivedWalObject[];
  /** Parsed .history files by timeline (those that could be read). */
  histories: ReadonlyMap<number, TimelineHistory>;
  /** Timelines whose .history file exists but could not be read; reported elsewhere, not as missing. */
  unreadableHistories?: ReadonlySet<number>;
  segmentSize: number;
}

export interface WalPathEnd {
  segment: string;
  segmentNumber: bigint;
  /** When the segment reached the repository: roughly the newest moment the path can be restored to. */
  archivedAt: Date;
}

export interface WalPath {
  /** The leaf timeline this path leads to. */
  timeline: number;
  history: TimelineHistory;
  /** The newest segment archived on this path; undefined when it has none yet. */
  end: WalPathEnd | undefined;
}

/** The plain segments stored on one timeline. */
export interface ArchivedTimeline {
  /** Segment numbers (PostgreSQL's XLogSegNo), ascending. Below 2^53 for every segment size, so exact. */
  numbers: Float64Array;
  /** When each reached the repository, in ms since the epoch; parallel to `numbers`. */
  archivedAtMs: Float64Array;
}

export interface WalIndex {
  segmentSize: number;
  /** Leaf paths, oldest timeline first; the last is the one recovery_target_timeline = 'latest' follows. */
  paths: WalPath[];
  /** Plain segments present, by timeline. */
  timelines: ReadonlyMap<number, ArchivedTimeline>;
  /** Timelines with WAL but no readable or present history file. */
  timelinesWithoutHistory: number[];
}

export interface NeededSegment {
  name: string;
  segmentNumber: bigint;
  /** consistency: between the backup's start and stop; reach: after its stop, to reach later moments. */
  role: 'consistency' | 'reach';
  present: boolean;
}

export interface BackupWalNeed {
  backupId: string;
  /** The leaf timeline of the path followed (the backup's own timeline when no stored path holds it). */
  pathTimeline: number;
  segments: NeededSegment[];
}

export function buildWalIndex(listing: WalArchiveListing): WalIndex {
  const { segmentSize } = listing;
  const found = new Map<number, { numbers: number[]; archivedAtMs: number[] }>();
  const timelinesWithWal = new Set<number>();
  for (const file of listing.files) {
    let parsed;
    try {
      parsed = parseWalFileName(file.name, segmentSize);
    } catch {
      continue; // not a WAL name: the foreign-object check reports it
    }
    if (parsed.kind === 'history') continue;
    const timeline = parsed.segmentName.timeline;
    timelinesWithWal.add(timeline);
    if (parsed.kind !== 'segment') continue;
    let stored = found.get(timeline);
    if (stored === undefined) {
      stored = { numbers: [], archivedAtMs: [] };
      found.set(timeline, stored);
    }
    stored.numbers.push(Number(walSegmentNumber(parsed.segmentName, segmentSize)));
    stored.archivedAtMs.push(file.lastModified.getTime());
  }
  const timelines = new Map<number, ArchivedTimeline>();
  for (const [timeline, stored] of found) timelines.set(timeline, sortedTimeline(stored.numbers, stored.archivedAtMs));

  const timelinesWithoutHistory = [...timelinesWithWal]
    .filter((t) => t > 1 && !listing.histories.has(t) && !(listing.unreadableHistories?.has(t) ?? false))
    .sort((a, b) => a - b);

  const ancestors = new Set<number>();
  for (const history of listing.histories.values()) for (const entry of history.entries) ancestors.add(entry.timeline);
  const known = new Set<number>([...listing.histories.keys()]);
  if (timelinesWithWal.has(1)) known.add(1);
  const leaves = [...known].filter((t) => !ancestors.has(t)).sort((a, b) => a - b);

  const index: WalIndex = { segmentSize, paths: [], timelines, timelinesWithoutHistory };
  for (const timeline of leaves) {
    const history = timeline === 1 ? rootTimelineHistory() : listing.histories.get(timeline)!;
    index.paths.push({ timeline, history, end: pathEnd(index, history) });
  }
  return index;
}

function sortedTimeline(numbers: number[], archivedAtMs: number[]): ArchivedTimeline {
  const order = numbers.map((_, i) => i).sort((a, b) => numbers[a]! - numbers[b]!);
  return {
    numbers: Float64Array.from(order, (i) => numbers[i]!),
    archivedAtMs: Float64Array.from(order, (i) => archivedAtMs[i]!),
  };
}

/** The newest segment stored where recovery along `history` reads it: per span, the highest number it holds. */
function pathEnd(index: WalIndex, history: TimelineHistory): WalPathEnd | undefined {
  let best: { timeline: number; n: number; at: number } | undefined;
  for (const span of pathSpans(history, index.segmentSize)) {
    const stored = index.timelines.get(span.timeline);
    if (stored === undefined) continue;
    const i = upperBound(stored.numbers, span.last) - 1;
    if (i < 0 || stored.numbers[i]! < span.first) continue;
    if (best === undefined || stored.numbers[i]! > best.n) best = { timeline: span.timeline, n: stored.numbers[i]!, at: stored.archivedAtMs[i]! };
  }
  if (best === undefined) return undefined;
  return { segment: segmentName(best.timeline, best.n, index.segmentSize), segmentNumber: BigInt(best.n), archivedAt: new Date(best.at) };
}

/** The segments of a path each timeline serves: [first, last] by number, oldest first, none empty. */
interface PathSpan {
  timeline: number;
  first: number;
  last: number;
}

function pathSpans(history: TimelineHistory, segmentSize: number): PathSpan[] {
  const size = BigInt(segmentSize);
  const starts = timelineSpans(history).map((span) => ({ timeline: span.timeline, first: Number(span.begin / size) }));
  const spans: PathSpan[] = [];
  for (let i = 0; i < starts.length; i++) {
    const next = starts[i + 1];
    // A later timeline begun in the same segment takes it over (timelineForSegment): an earlier one ends before.
    const last = next === undefined ? Number.POSITIVE_INFINITY : next.first - 1;
    if (last >= starts[i]!.first) spans.push({ timeline: starts[i]!.timeline, first: starts[i]!.first, last });
  }
  return spans;
}

/**
 * The timeline recovery reads segment `n` from on the path to `history.timeline`: the newest timeline on the path
 * that has begun by that segment (the segment holding a switch point comes from the new timeline).
 */
export function timelineForSegment(history: TimelineHistory, n: bigint, segmentSize: number): number {
  const size = BigInt(segmentSize);
  let timeline = history.timeline;
  // Spans run oldest first and the first begins at 0, so the last one begun by `n` wins.
  for (const span of timelineSpans(history)) {
    if (span.begin / size <= n) timeline = span.timeline;
  }
  return timeline;
}

/** Whether a backup lies on a path: the timeline holding its stop point there is the one it was taken on. */
export function isBackupOnPath(backup: BackupWalFacts, history: TimelineHistory): boolean {
  return timelineOfLsn(history, parseLsn(backup.stopLsn)) === backup.timeline;
}

/** The stored paths that hold a backup, oldest leaf first. */
export function pathsOfBackup(index: WalIndex, backup: BackupWalFacts): WalPath[] {
  return index.paths.filter((p) => isBackupOnPath(backup, p.history));
}

/** When a plain segment reached the repository, or undefined when it is not there. */
export function segmentArchivedAt(index: WalIndex, name: string): Date | undefined {
  let parsed;
  try {
    parsed = parseWalFileName(name, index.segmentSize);
  } catch {
    return undefined;
  }
  if (parsed.kind !== 'segment') return undefined;
  const at = archivedAtOf(index, parsed.segmentName.timeline, Number(walSegmentNumber(parsed.segmentName, index.segmentSize)));
  return at === undefined ? undefined : new Date(at);
}

function archivedAtOf(index: WalIndex, timeline: number, n: number): number | undefined {
  const stored = index.timelines.get(timeline);
  if (stored === undefined) return undefined;
  const i = lowerBound(stored.numbers, n);
  return i < stored.numbers.length && stored.numbers[i] === n ? stored.archivedAtMs[i] : undefined;
}

/**
 * The segments one backup needs on one path, from its start up to `untilLsn` (default: the path's newest segment;
 * never less than its own stop segment). For one backup (a drill's), so a list is fine here.
 */
export function walNeededOnPath(index: WalIndex, backup: BackupWalFacts, path: WalPath | undefined, untilLsn?: Lsn): BackupWalNeed {
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
    const timeline = timelineForSegment(history, n, index.segmentSize);
    segments.push({
      name: segmentName(timeline, Number(n), index.segmentSize),
      segmentNumber: n,
      role: n <= stopN ? 'consistency' : 'reach',
      present: archivedAtOf(index, timeline, Number(n)) !== undefined,
    });
  }
  return { backupId: backup.backupId, pathTimeline: path?.timeline ?? backup.timeline, segments };
}

export interface WalCoverageReport {
  problems: VerifyProblem[];
  /** Distinct segments some backup needs. */
  neededSegments: number;
  missingSegments: number;
}

/** A backup's range on one path, in segment numbers: consistent at `stop`, restorable up to `last`. */
interface BackupRange {
  backupId: string;
  start: number;
  stop: number;
  last: number;
}

/** Missing segments of one timeline that break the same backups the same way. */
interface Gap {
  timeline: number;
  first: number;
  last: number;
  consistency: string[];
  reach: string[];
  /** consistency and reach as one comparable string. */
  breaksKey: string;
  /** When the next segment archived after `last` arrived (ms): the first moment the gap keeps out of reach. */
  nextArchivedAtMs: number | undefined;
}

/**
 * Every backup's WAL on every path that holds it. Each path is walked once, over the stored segment numbers, and
 * each run of missing segments is split where the backups it breaks change; runs found on several paths (the
 * shared part of their histories) are merged per segment. Then each stretch of missing segments that break the same
 * backups the same way becomes one problem, worded by what it breaks.
 */
export function checkWalCoverage(index: WalIndex, backups: readonly BackupWalFacts[], layout: RepositoryLayout): WalCoverageReport {
  const size = BigInt(index.segmentSize);
  const rangeOf = (b: BackupWalFacts) => ({
    backupId: b.backupId,
    start: Number(parseLsn(b.startLsn) / size),
    stop: Number(parseLsn(b.stopLsn) / size),
  });

  // The paths to walk, each with its backups. A backup no stored path holds still needs its own range on its own
  // timeline: those are grouped on a one-timeline "path" that has no archived end.
  const walks: { history: TimelineHistory; end: number | undefined; backups: BackupRange[] }[] = index.paths.map((p) => ({
    history: p.history,
    end: p.end === undefined ? undefined : Number(p.end.segmentNumber),
    backups: [],
  }));
  const orphans = new Map<number, BackupRange[]>();
  for (const backup of backups) {
    const r = rangeOf(backup);
    let onAny = false;
    index.paths.forEach((path, i) => {
      if (!isBackupOnPath(backup, path.history)) return;
      onAny = true;
      const end = walks[i]!.end;
      walks[i]!.backups.push({ ...r, last: end !== undefined && end > r.stop ? end : r.stop });
    });
    if (!onAny) {
      const list = orphans.get(backup.timeline) ?? [];
      list.push({ ...r, last: r.stop });
      orphans.set(backup.timeline, list);
    }
  }
  for (const [timeline, list] of orphans) walks.push({ history: { timeline, entries: [] }, end: undefined, backups: list });

  const needed = new Map<number, [number, number][]>();
  const pieces = new Map<number, Gap[]>();
  for (const walk of walks) {
    if (walk.backups.length === 0) continue;
    walkPath(index, walk.history, walk.backups, needed, pieces);
  }

  const gaps: Gap[] = [];
  for (const [timeline, list] of pieces) gaps.push(...mergeOverlapping(timeline, list));
  const problems = gapProblems(gaps, index.segmentSize, layout);

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

  let neededSegments = 0;
  for (const intervals of needed.values()) for (const [a, b] of unionOf(intervals)) neededSegments += b - a + 1;
  let missingSegments = 0;
  for (const gap of gaps) missingSegments += gap.last - gap.first + 1;
  return { problems, neededSegments, missingSegments };
}

/**
 * One path: records which segments its backups need (per timeline) and the missing ones as pieces that break one
 * fixed set of backups each.
 */
function walkPath(
  index: WalIndex,
  history: TimelineHistory,
  backups: readonly BackupRange[],
  needed: Map<number, [number, number][]>,
  pieces: Map<number, Gap[]>,
): void {
  const lo = Math.min(...backups.map((b) => b.start));
  const hi = Math.max(...backups.map((b) => b.last));
  const spans = pathSpans(history, index.segmentSize)
    .map((s) => ({ timeline: s.timeline, first: Math.max(s.first, lo), last: Math.min(s.last, hi) }))
    .filter((s) => s.first <= s.last);

  for (const [a, b] of unionOf(backups.map((r): [number, number] => [r.start, r.last]))) {
    for (const span of spans) {
      const first = Math.max(a, span.first);
      const last = Math.min(b, span.last);
      if (first > last) continue;
      const list = needed.get(span.timeline) ?? [];
      list.push([first, last]);
      needed.set(span.timeline, list);
    }
  }

  // Missing segments span by span; a run that reaches the end of a span goes on in the next one.
  const chunks: { timeline: number; first: number; last: number }[] = [];
  for (const span of spans) missingIn(index.timelines.get(span.timeline), span, chunks);
  // Where a backup's membership can change: its start, after its stop, after its last needed segment.
  const cuts = [...new Set(backups.flatMap((b) => [b.start, b.stop + 1, b.last + 1]))].sort((x, y) => x - y);

  for (let i = 0; i < chunks.length; ) {
    // One run of consecutive missing segments on the path: the chunks i..j-1.
    let j = i + 1;
    while (j < chunks.length && chunks[j]!.first === chunks[j - 1]!.last + 1) j++;
    const runLast = chunks[j - 1]!.last;
    // Every segment of the run is missing up to runLast, so for each backup the next archived segment is the one
    // after it, if the backup needs that far and the path goes on (within [lo, hi] the run is maximal).
    const next = runLast < hi ? runLast + 1 : undefined;
    const nextAt = next === undefined ? undefined : archivedAtOf(index, timelineOn(spans, next), next);
    for (const chunk of chunks.slice(i, j)) {
      let from = chunk.first;
      for (let c = upperBound(cuts, from); from <= chunk.last; c++) {
        const to = c < cuts.length && cuts[c]! - 1 < chunk.last ? cuts[c]! - 1 : chunk.last;
        const piece = pieceOf(chunk.timeline, from, to, backups, next, nextAt);
        if (piece !== undefined) {
          const list = pieces.get(chunk.timeline) ?? [];
          list.push(piece);
          pieces.set(chunk.timeline, list);
        }
        from = to + 1;
      }
    }
    i = j;
  }
}

function pieceOf(
  timeline: number,
  first: number,
  last: number,
  backups: readonly BackupRange[],
  next: number | undefined,
  nextAt: number | undefined,
): Gap | undefined {
  const consistency: string[] = [];
  const reach: string[] = [];
  let reachesNext = false;
  for (const b of backups) {
    if (b.start <= first && last <= b.stop) consistency.push(b.backupId);
    else if (b.stop < first && last <= b.last) reach.push(b.backupId);
    else continue;
    if (next !== undefined && b.last >= next) reachesNext = true;
  }
  if (consistency.length === 0 && reach.length === 0) return undefined;
  return gapOf(timeline, first, last, consistency, reach, reachesNext ? nextAt : undefined);
}

function gapOf(timeline: number, first: number, last: number, consistency: string[], reach: string[], nextArchivedAtMs: number | undefined): Gap {
  const c = [...new Set(consistency)].sort();
  const r = [...new Set(reach)].sort();
  return { timeline, first, last, consistency: c, reach: r, breaksKey: `${c.join(',')}|${r.join(',')}`, nextArchivedAtMs };
}

/** Appends the runs of `span` that `stored` lacks, walking only the stored numbers inside it. */
function missingIn(stored: ArchivedTimeline | undefined, span: PathSpan, out: { timeline: number; first: number; last: number }[]): void {
  const numbers = stored?.numbers ?? new Float64Array(0);
  let i = lowerBound(numbers, span.first);
  let n = span.first;
  while (n <= span.last) {
    if (i < numbers.length && numbers[i] === n) {
      n++;
      i++;
      continue;
    }
    const runLast = i < numbers.length && numbers[i]! - 1 < span.last ? numbers[i]! - 1 : span.last;
    out.push({ timeline: span.timeline, first: n, last: runLast });
    n = runLast + 1;
  }
}

function timelineOn(spans: readonly PathSpan[], n: number): number {
  for (const span of spans) if (span.first <= n && n <= span.last) return span.timeline;
  return spans[spans.length - 1]!.timeline;
}

/**
 * Pieces of one timeline found on different paths may overlap (paths share the older part of their histories):
 * cut them where any begins or ends, and give each stretch every backup any covering piece names, and the
 * earliest "next archived" moment among them.
 */
function mergeOverlapping(timeline: number, list: readonly Gap[]): Gap[] {
  const merged: Gap[] = [];
  sweep(list, (first, last, covering) => {
    let nextAt: number | undefined;
    for (const g of covering) if (g.nextArchivedAtMs !== undefined && (nextAt === undefined || g.nextArchivedAtMs < nextAt)) nextAt = g.nextArchivedAtMs;
    merged.push(gapOf(timeline, first, last, covering.flatMap((g) => g.consistency), covering.flatMap((g) => g.reach), nextAt));
  });
  return merged;
}

/**
 * Cuts the number line wherever a gap begins or ends and calls `visit` for each stretch some gap covers, with the
 * gaps covering it (by timeline). At most one gap per path and timeline covers a segment, so `covering` stays short.
 */
function sweep(gaps: readonly Gap[], visit: (first: number, last: number, covering: readonly Gap[]) => void): void {
  const bounds = [...new Set(gaps.flatMap((g) => [g.first, g.last + 1]))].sort((x, y) => x - y);
  const byFirst = [...gaps].sort((a, b) => a.first - b.first);
  let active: Gap[] = [];
  let g = 0;
  for (let k = 0; k + 1 < bounds.length; k++) {
    const first = bounds[k]!;
    const last = bounds[k + 1]! - 1;
    active = active.filter((gap) => gap.last >= first);
    while (g < byFirst.length && byFirst[g]!.first === first) active.push(byFirst[g++]!);
    if (active.length > 0) visit(first, last, [...active].sort((a, b) => a.timeline - b.timeline));
  }
}

interface ProblemRun {
  /** The first gap of the run: every gap in it breaks the same backups the same way. */
  gap: Gap;
  first: number;
  last: number;
  count: number;
  lastGap: Gap;
}

/**
 * The gaps in segment order (number, then timeline), one problem per stretch of consecutive numbers that break the
 * same backups. Where several timelines miss the same numbers, the order alternates between them segment by
 * segment, so such stretches are stepped through one segment at a time; elsewhere a whole gap is one step.
 */
function gapProblems(gaps: readonly Gap[], segmentSize: number, layout: RepositoryLayout): VerifyProblem[] {
  const problems: VerifyProblem[] = [];
  let run: ProblemRun | undefined;
  const step = (gap: Gap, first: number, last: number): void => {
    if (run !== undefined && first === run.last + 1 && gap.breaksKey === run.gap.breaksKey) {
      run.last = last;
      run.count += last - first + 1;
      run.lastGap = gap;
      return;
    }
    if (run !== undefined) problems.push(runProblem(run, segmentSize, layout));
    run = { gap, first, last, count: last - first + 1, lastGap: gap };
  };
  sweep(gaps, (first, last, covering) => {
    if (covering.length === 1) step(covering[0]!, first, last);
    else for (let n = first; n <= last; n++) for (const gap of covering) step(gap, n, n);
  });
  if (run !== undefined) problems.push(runProblem(run, segmentSize, layout));
  return problems;
}

function runProblem(run: ProblemRun, segmentSize: number, layout: RepositoryLayout): VerifyProblem {
  const { consistency, reach } = run.gap;
  const firstName = segmentName(run.gap.timeline, run.first, segmentSize);
  const lastName = segmentName(run.lastGap.timeline, run.last, segmentSize);
  const what = run.count === 1 ? `segment ${firstName}` : `segments ${firstName} to ${lastName} (${run.count})`;
  const clauses: string[] = [];
  if (consistency.length > 0) clauses.push(`${describeBackups(consistency)} cannot become consistent`);
  if (reach.length > 0) {
    const nextAt = run.lastGap.nextArchivedAtMs;
    clauses.push(`${describeBackups(reach)} cannot reach ${nextAt === undefined ? 'the end of the archive' : formatMoment(new Date(nextAt))}`);
  }
  return {
    kind: 'missing-wal',
    key: layout.walObject(firstName),
    detail: `${clauses.join(' and ')}: ${what} missing`,
    breaks: [...new Set([...consistency, ...reach])].sort(),
  };
}

/** Sorted, merged copies of closed intervals that overlap or touch. */
function unionOf(intervals: readonly [number, number][]): [number, number][] {
  const sorted = [...intervals].sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const tail = out[out.length - 1];
    if (tail !== undefined && a <= tail[1] + 1) tail[1] = Math.max(tail[1], b);
    else out.push([a, b]);
  }
  return out;
}

function segmentName(timeline: number, n: number, segmentSize: number): string {
  return formatWalSegmentName(walSegmentFromNumber(timeline, BigInt(n), segmentSize));
}

/** First index whose value is >= x. */
function lowerBound(values: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose value is > x. */
function upperBound(values: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
