import { ServiceError } from '../errors.js';

/**
 * The two small files pg_basebackup puts in its tar: backup_label (where recovery starts) and backup_manifest
 * (PostgreSQL's own JSON manifest, whose WAL-Ranges give the stop LSN). Both come from the server, so both are
 * validated before pgdr records anything from them.
 */
export interface BackupLabel {
  startLsn: string;
  startWal: string;
  startTimeline: number;
  checkpointLsn: string;
  label: string;
}

export function parseBackupLabel(text: string): BackupLabel {
  const field = (name: string): string | undefined => {
    const match = new RegExp(`^${name}: (.*)$`, 'm').exec(text);
    return match?.[1]?.trim();
  };
  const start = /^([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/.exec(field('START WAL LOCATION') ?? '');
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
