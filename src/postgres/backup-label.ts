import { ServiceError } from '../errors.js';

/**
 * Where a base backup starts, as PostgreSQL writes it in backup_label. It comes from the server, so it is validated
 * before pgdr records anything from it.
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
    throw new ServiceError('the server produced a backup_label pgdr cannot read', 'check that the server is PostgreSQL 15 or newer');
  }
  return { startLsn: start[1]!, startWal: start[2]!, startTimeline: timeline, checkpointLsn: checkpoint, label: field('LABEL') ?? '' };
}
