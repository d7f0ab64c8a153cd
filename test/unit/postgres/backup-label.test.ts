import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../src/errors.js';
import { parseBackupLabel } from '../../../src/postgres/backup-label.js';

describe('backup_label', () => {
  const label = [
    'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)',
    'CHECKPOINT LOCATION: 0/4000060',
    'BACKUP METHOD: streamed',
    'BACKUP FROM: primary',
    'START TIME: 2026-11-23 13:01:49 UTC',
    'LABEL: pgdr 20261123T130149Z',
    'START TIMELINE: 1',
    '',
  ].join('\n');

  it('reads where recovery starts', () => {
    expect(parseBackupLabel(label)).toEqual({
      startLsn: '0/4000028',
      startWal: '000000010000000000000004',
      startTimeline: 1,
      checkpointLsn: '0/4000060',
      label: 'pgdr 20261123T130149Z',
    });
  });

  it('refuses a label without a start location', () => {
    expect(() => parseBackupLabel('LABEL: x\n')).toThrow(ServiceError);
  });
});
