import { ServiceError } from '../errors.js';

/**
 * Where a base backup starts and stops, as PostgreSQL writes it: backup_label and backup_manifest (the first and
 * last entries of pg_basebackup's tar), and the backup history file (`<segment>.<offset>.backup`) a primary archives
 * when a backup stops. All come from the server, so all are validated before pgdr records anything from them.
 */
export interface BackupLabel {
  startLsn: string;
  startWal: string;
  startTimeline: number;
  checkpointLsn: string;
  label: string;
}

function labelField(text: string, name: string): string | undefined {
  const match = new RegExp(`^${name}: (.*)$`, 'm').exec(text);
  return match?.[1]?.trim();
}

const WAL_LOCATION = /^([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/;

export function parseBackupLabel(text: string): BackupLabel {
  const field = (name: string): string | undefined => labelField(text, name);
  const start = WAL_LOCATION.exec(field('START WAL LOCATION') ?? '');
  const checkpoint = field('CHECKPOINT LOCATION');
  const timeline = Number(field('START TIMELINE'));
  if (!start || !checkpoint || !Number.isInteger(timeline) || timeline < 1) {
    throw new ServiceError('pg_basebackup produced a backup_label pgdr cannot read', 'check that the server is PostgreSQL 15 and pg_basebackup is version 15');
  }
  return { startLsn: start[1]!, startWal: start[2]!, startTimeline: timeline, checkpointLsn: checkpoint, label: field('LABEL') ?? '' };
}

export interface BackupWalRange {
  timeline: number;
  startLsn: string;
  endLsn: string;
}

export function parseBackupManifestWalRanges(text: string): BackupWalRange[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ServiceError('pg_basebackup produced a backup_manifest that is not JSON', 'check the pg_basebackup version (15 or newer)');
  }
  const ranges = (json as { 'WAL-Ranges'?: unknown })['WAL-Ranges'];
  if (!Array.isArray(ranges) || ranges.length === 0) {
    throw new ServiceError('backup_manifest from pg_basebackup has no WAL-Ranges', 'check the pg_basebackup version (15 or newer)');
  }
  return ranges.map((r: { Timeline?: unknown; 'Start-LSN'?: unknown; 'End-LSN'?: unknown }) => {
    if (typeof r.Timeline !== 'number' || typeof r['Start-LSN'] !== 'string' || typeof r['End-LSN'] !== 'string') {
      throw new ServiceError('backup_manifest from pg_basebackup has a malformed WAL range', 'check the pg_basebackup version (15 or newer)');
    }
    return { timeline: r.Timeline, startLsn: r['Start-LSN'], endLsn: r['End-LSN'] };
  });
}

/**
 * The range the backup stops in: the one on the newest timeline. PostgreSQL lists the stop's timeline first, but
 * pgdr does not lean on the order.
 */
export function stopRange(ranges: readonly BackupWalRange[]): BackupWalRange {
  const stop = ranges.reduce((best, range) => (range.timeline > best.timeline ? range : best), ranges[0]!);
  return stop;
}

export interface BackupHistory extends BackupLabel {
  stopLsn: string;
  stopWal: string;
  stopTimeline: number;
}

/** The backup history file: backup_label's fields plus STOP WAL LOCATION and STOP TIMELINE. */
export function parseBackupHistoryFile(text: string): BackupHistory {
  let label: BackupLabel;
  try {
    label = parseBackupLabel(text);
  } catch {
    throw new ServiceError('a backup history file has no valid START WAL LOCATION, CHECKPOINT LOCATION or START TIMELINE', 'check that the server is PostgreSQL 15 or newer');
  }
  const stop = WAL_LOCATION.exec(labelField(text, 'STOP WAL LOCATION') ?? '');
  const stopTimeline = Number(labelField(text, 'STOP TIMELINE'));
  if (!stop || !Number.isInteger(stopTimeline) || stopTimeline < label.startTimeline) {
    throw new ServiceError('a backup history file has no valid STOP WAL LOCATION or STOP TIMELINE', 'check that the server is PostgreSQL 15 or newer');
  }
  return { ...label, stopLsn: stop[1]!, stopWal: stop[2]!, stopTimeline };
}
