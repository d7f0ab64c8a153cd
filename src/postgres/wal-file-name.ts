import { UsageError } from '../errors.js';
import { assertLsnRange, type Lsn } from './lsn.js';

/**
 * WAL file names as PostgreSQL writes them into pg_wal and hands to archive_command / restore_command.
 *
 * A segment name is three 8-digit uppercase hex numbers: timeline, "log id" and segment within the log id.
 * The log id and segment together are the segment number split at 2^32 bytes of WAL, so how many segments
 * fit in one log id depends on the cluster's WAL segment size (initdb --wal-segsize): 256 at 16 MiB,
 * 4 at 1 GiB. Every function that turns names into positions therefore takes the segment size.
 */

export const MIB = 1024 * 1024;
export const DEFAULT_WAL_SEGMENT_SIZE = 16 * MIB;
const MIN_WAL_SEGMENT_SIZE = MIB;
const MAX_WAL_SEGMENT_SIZE = 1024 * MIB;
const BYTES_PER_LOG_ID = 0x1_0000_0000n;
const MAX_UINT32 = 0xffff_ffff;

export interface WalSegmentName {
  timeline: number;
  logId: number;
  segment: number;
}

/** What a file name in the WAL archive is; each kind keeps the parts of its name. */
export type WalFileName =
  | { kind: 'segment'; name: string; segmentName: WalSegmentName }
  /** The last, incomplete segment of a timeline that ended by promotion, archived under this suffix. */
  | { kind: 'partial'; name: string; segmentName: WalSegmentName }
  /** A backup history file; `startOffset` is where in that segment the backup started. */
  | { kind: 'backup'; name: string; segmentName: WalSegmentName; startOffset: number }
  | { kind: 'history'; name: string; timeline: number };

export function isValidWalSegmentSize(bytes: number): boolean {
  return (
    Number.isInteger(bytes) &&
    bytes >= MIN_WAL_SEGMENT_SIZE &&
    bytes <= MAX_WAL_SEGMENT_SIZE &&
    (bytes & (bytes - 1)) === 0
  );
}

/** The server reports its segment size; a value PostgreSQL itself would refuse means we read it wrong. */
export function assertWalSegmentSize(bytes: number): void {
  if (!isValidWalSegmentSize(bytes)) {
    throw new UsageError(
      `WAL segment size ${bytes} is not a power of two from 1 MiB to 1 GiB`,
      'give the size in bytes as the server reports it (SHOW wal_segment_size, or pg_controldata "Bytes per WAL segment")',
    );
  }
}

export function segmentsPerLogId(segSize: number = DEFAULT_WAL_SEGMENT_SIZE): number {
  assertWalSegmentSize(segSize);
  return Number(BYTES_PER_LOG_ID / BigInt(segSize));
}

export function isValidTimeline(timeline: number): boolean {
  return Number.isInteger(timeline) && timeline >= 1 && timeline <= MAX_UINT32;
}

function assertTimeline(timeline: number): void {
  if (!isValidTimeline(timeline)) throw new RangeError(`timeline ${timeline} is outside 1..${MAX_UINT32}`);
}

/** The 8-digit form of a timeline used in file names and in the repository's wal/<timeline>/ prefix. */
export function timelineHex(timeline: number): string {
  assertTimeline(timeline);
  return hex8(timeline);
}

export function formatWalSegmentName(name: WalSegmentName): string {
  assertTimeline(name.timeline);
  assertUint32(name.logId, 'log id');
  assertUint32(name.segment, 'segment');
  return `${hex8(name.timeline)}${hex8(name.logId)}${hex8(name.segment)}`;
}

export function historyFileName(timeline: number): string {
  return `${timelineHex(timeline)}.history`;
}

// PostgreSQL only ever writes uppercase hex in these names and recognises only uppercase (IsXLogFileName).
const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$/;
const BACKUP = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.([0-9A-F]{8})\.backup$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;

/**
 * Classifies a file name from pg_wal or the archive. With `segSize`, a segment part too large for that size
 * (e.g. ...00000100 at 16 MiB) is rejected too; without it, any 8-digit segment part passes, because a
 * caller that does not know the size must not reject names that a 1 MiB cluster writes.
 */
export function parseWalFileName(name: string, segSize?: number): WalFileName {
  const history = HISTORY.exec(name);
  if (history) {
    const timeline = parseInt(history[1]!, 16);
    if (!isValidTimeline(timeline)) throw badName(name, 'timeline 0 does not exist');
    return { kind: 'history', name, timeline };
  }
  const backup = BACKUP.exec(name);
  if (backup) {
    const segmentName = segmentFromMatch(name, backup, segSize);
    const startOffset = parseInt(backup[4]!, 16);
    if (segSize !== undefined && startOffset >= segSize) {
      throw badName(name, `offset ${backup[4]} is past the end of a ${segSize}-byte segment`);
    }
    return { kind: 'backup', name, segmentName, startOffset };
  }
  const partial = PARTIAL.exec(name);
  if (partial) return { kind: 'partial', name, segmentName: segmentFromMatch(name, partial, segSize) };
  const segment = SEGMENT.exec(name);
  if (segment) return { kind: 'segment', name, segmentName: segmentFromMatch(name, segment, segSize) };
  throw badName(
    name,
    'expected 24 uppercase hex digits, optionally with .partial or .<8 hex>.backup, or <8 hex>.history',
  );
}

/** Like parseWalFileName, but only a plain segment name is acceptable. */
export function parseWalSegmentName(name: string, segSize?: number): WalSegmentName {
  const parsed = parseWalFileName(name, segSize);
  if (parsed.kind !== 'segment') throw badName(name, `a ${parsed.kind} file is not a WAL segment`);
  return parsed.segmentName;
}

/** Segments counted from the start of WAL (PostgreSQL's XLogSegNo). */
export function walSegmentNumber(name: WalSegmentName, segSize: number = DEFAULT_WAL_SEGMENT_SIZE): bigint {
  const perLogId = segmentsPerLogId(segSize);
  if (name.segment >= perLogId) {
    throw new RangeError(`segment ${hex8(name.segment)} does not exist with ${segSize}-byte segments`);
  }
  return BigInt(name.logId) * BigInt(perLogId) + BigInt(name.segment);
}

export function walSegmentFromNumber(
  timeline: number,
  segmentNumber: bigint,
  segSize: number = DEFAULT_WAL_SEGMENT_SIZE,
): WalSegmentName {
  assertTimeline(timeline);
  const perLogId = BigInt(segmentsPerLogId(segSize));
  if (segmentNumber < 0n || segmentNumber >= BYTES_PER_LOG_ID * perLogId) {
    throw new RangeError(`segment number ${segmentNumber} is outside the WAL address space`);
  }
  return { timeline, logId: Number(segmentNumber / perLogId), segment: Number(segmentNumber % perLogId) };
}

/** The segment that holds the byte at `lsn` on `timeline`. */
export function walSegmentForLsn(lsn: Lsn, timeline: number, segSize: number = DEFAULT_WAL_SEGMENT_SIZE): WalSegmentName {
  assertLsnRange(lsn);
  assertWalSegmentSize(segSize);
  return walSegmentFromNumber(timeline, lsn / BigInt(segSize), segSize);
}

/** The LSN of the first byte of a segment. */
export function segmentStartLsn(name: WalSegmentName, segSize: number = DEFAULT_WAL_SEGMENT_SIZE): Lsn {
  return walSegmentNumber(name, segSize) * BigInt(segSize);
}

/** The segment after `name` on the same timeline; after the last segment of a log id comes segment 0 of the next. */
export function nextWalSegment(name: WalSegmentName, segSize: number = DEFAULT_WAL_SEGMENT_SIZE): WalSegmentName {
  return walSegmentFromNumber(name.timeline, walSegmentNumber(name, segSize) + 1n, segSize);
}

/**
 * Every segment from `start` to `end`, both included, on one timeline. The arguments are checked when this
 * is called, not when the first segment is pulled, so a bad range fails where it was made.
 */
export function walSegmentRange(
  start: WalSegmentName,
  end: WalSegmentName,
  segSize: number = DEFAULT_WAL_SEGMENT_SIZE,
): Generator<WalSegmentName, void, undefined> {
  if (start.timeline !== end.timeline) {
    throw new RangeError(
      `WAL range ${formatWalSegmentName(start)}..${formatWalSegmentName(end)} spans two timelines; ` +
        'crossing a timeline switch needs the timeline history (walSegmentsOnPath)',
    );
  }
  const first = walSegmentNumber(start, segSize);
  const last = walSegmentNumber(end, segSize);
  if (first > last) {
    throw new RangeError(`WAL range ${formatWalSegmentName(start)}..${formatWalSegmentName(end)} runs backwards`);
  }
  return (function* () {
    for (let n = first; n <= last; n++) yield walSegmentFromNumber(start.timeline, n, segSize);
  })();
}

function segmentFromMatch(name: string, match: RegExpExecArray, segSize: number | undefined): WalSegmentName {
  const segmentName = {
    timeline: parseInt(match[1]!, 16),
    logId: parseInt(match[2]!, 16),
    segment: parseInt(match[3]!, 16),
  };
  if (segmentName.timeline === 0) throw badName(name, 'timeline 0 does not exist');
  if (segSize !== undefined && segmentName.segment >= segmentsPerLogId(segSize)) {
    throw badName(name, `segment part ${match[3]} does not exist with ${segSize / MIB} MiB segments`);
  }
  return segmentName;
}

function badName(name: string, why: string): UsageError {
  const shown = /^[\x20-\x7e]{1,80}$/.test(name) ? `'${name}'` : JSON.stringify(name.slice(0, 80));
  return new UsageError(
    `${shown} is not a WAL file name: ${why}`,
    'pass the file name PostgreSQL gives as %f (archive_command, restore_command), e.g. 000000010000000000000003',
  );
}

function assertUint32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_UINT32) {
    throw new RangeError(`${what} ${value} is outside 0..${MAX_UINT32}`);
  }
}

function hex8(value: number): string {
  return value.toString(16).toUpperCase().padStart(8, '0');
}
