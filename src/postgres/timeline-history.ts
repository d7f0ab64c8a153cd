import { RepositoryError } from '../errors.js';
import { assertLsnRange, formatLsn, isLsnText, parseLsn, type Lsn } from './lsn.js';
import {
  assertWalSegmentSize,
  DEFAULT_WAL_SEGMENT_SIZE,
  historyFileName,
  isValidTimeline,
  walSegmentFromNumber,
  type WalSegmentName,
} from './wal-file-name.js';

/**
 * A timeline's ancestry, as its `<timeline>.history` file records it. Each entry says: WAL of `timeline`
 * runs up to (not including) `switchLsn`, where the next timeline of the list branched off. The last entry's
 * switch point is where `history.timeline` itself begins. Timeline 1 has no history file and no entries.
 *
 * Timelines that branched off and died (e.g. 4 when the history of 5 reads 1, 2, 3) do not appear: the
 * history is one path, and WAL of a dead branch is never part of a restore along it.
 */
export interface TimelineSwitch {
  timeline: number;
  switchLsn: Lsn;
  reason: string;
}

export interface TimelineHistory {
  timeline: number;
  entries: TimelineSwitch[];
}

/** The WAL positions a timeline contributes to a path: [begin, end), `end` undefined for the path's last timeline. */
export interface TimelineSpan {
  timeline: number;
  begin: Lsn;
  end: Lsn | undefined;
}

export function rootTimelineHistory(): TimelineHistory {
  return { timeline: 1, entries: [] };
}

// PostgreSQL separates the fields with a tab but reads them with sscanf, which takes any run of whitespace.
const HISTORY_LINE = /^(\d+)\s+(\S+)(?:\s+(.*))?$/;

/**
 * Parses the content of `<timeline>.history`. Blank lines and `#` comments are skipped (PostgreSQL itself
 * puts a blank line between entries). Anything PostgreSQL would refuse, or that cannot describe one path to
 * `timeline` (parents out of order, switch points going backwards), is an error rather than a best guess.
 */
export function parseTimelineHistory(timeline: number, content: string): TimelineHistory {
  if (!isValidTimeline(timeline)) throw new RangeError(`timeline ${timeline} is outside 1..4294967295`);
  const file = historyFileName(timeline);
  const entries: TimelineSwitch[] = [];
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${file} line ${i + 1}`;
    const match = HISTORY_LINE.exec(line);
    if (!match) throw damaged(where, 'expected "<parent timeline> <switch LSN> <reason>"');
    const parent = Number(match[1]);
    if (!isValidTimeline(parent)) throw damaged(where, `parent timeline ${match[1]} is out of range`);
    if (!isLsnText(match[2]!)) throw damaged(where, `switch point ${JSON.stringify(match[2])} is not an LSN`);
    const switchLsn = parseLsn(match[2]!);
    const previous = entries.at(-1);
    if (previous && parent <= previous.timeline) {
      throw damaged(where, `timeline ${parent} follows timeline ${previous.timeline}; parents must increase`);
    }
    if (previous && switchLsn < previous.switchLsn) {
      throw damaged(
        where,
        `switch point ${formatLsn(switchLsn)} is before the previous one, ${formatLsn(previous.switchLsn)}`,
      );
    }
    if (parent >= timeline) {
      throw damaged(where, `parent timeline ${parent} is not older than timeline ${timeline}`);
    }
    entries.push({ timeline: parent, switchLsn, reason: match[3] ?? '' });
  }
  if (timeline > 1 && entries.length === 0) throw damaged(file, `it names no parent of timeline ${timeline}`);
  return { timeline, entries };
}

/** The file content PostgreSQL would write for this history (entries separated by blank lines, as it does). */
export function formatTimelineHistory(history: TimelineHistory): string {
  return history.entries.map((e) => `${e.timeline}\t${formatLsn(e.switchLsn)}\t${e.reason}\n`).join('\n');
}

/** The path's timelines oldest first, each with the WAL positions it holds on that path. */
export function timelineSpans(history: TimelineHistory): TimelineSpan[] {
  const spans: TimelineSpan[] = [];
  let begin: Lsn = 0n;
  for (const entry of history.entries) {
    spans.push({ timeline: entry.timeline, begin, end: entry.switchLsn });
    begin = entry.switchLsn;
  }
  spans.push({ timeline: history.timeline, begin, end: undefined });
  return spans;
}

/**
 * The timeline whose WAL holds `lsn` on the path to `history.timeline`. A switch point belongs to the new
 * timeline: the old one ends just before it.
 */
export function timelineOfLsn(history: TimelineHistory, lsn: Lsn): number {
  assertLsnRange(lsn);
  for (const entry of history.entries) {
    if (lsn < entry.switchLsn) return entry.timeline;
  }
  return history.timeline;
}

/**
 * The WAL segments recovery reads to replay from `fromLsn` through `toLsn` (both included) along the path to
 * `history.timeline`, oldest first.
 *
 * A segment is read from the newest timeline on the path that exists by that segment. So the segment holding
 * a switch point, which exists on both timelines (the old one archives its copy as .partial after a
 * promotion), is read from the new timeline, as PostgreSQL's recovery does: the new timeline's copy starts
 * with the old timeline's WAL up to the switch point.
 */
export function walSegmentsOnPath(
  history: TimelineHistory,
  fromLsn: Lsn,
  toLsn: Lsn,
  segSize: number = DEFAULT_WAL_SEGMENT_SIZE,
): WalSegmentName[] {
  assertLsnRange(fromLsn);
  assertLsnRange(toLsn);
  assertWalSegmentSize(segSize);
  if (fromLsn > toLsn) {
    throw new RangeError(`WAL from ${formatLsn(fromLsn)} to ${formatLsn(toLsn)} runs backwards`);
  }
  const size = BigInt(segSize);
  const firstSegments = timelineSpans(history).map((span) => ({
    timeline: span.timeline,
    firstSegment: span.begin / size,
  }));
  const segments: WalSegmentName[] = [];
  let current = 0;
  for (let n = fromLsn / size; n <= toLsn / size; n++) {
    while (current + 1 < firstSegments.length && firstSegments[current + 1]!.firstSegment <= n) current++;
    segments.push(walSegmentFromNumber(firstSegments[current]!.timeline, n, segSize));
  }
  return segments;
}

function damaged(where: string, why: string): RepositoryError {
  return new RepositoryError(
    `timeline history ${where} is damaged: ${why}`,
    'compare it with the same file in pg_wal of the server that created the timeline; pgdr will not guess the path',
  );
}
