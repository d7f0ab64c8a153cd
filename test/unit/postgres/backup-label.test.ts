import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../src/errors.js';
import { parseBackupHistoryFile, parseBackupLabel, parseBackupManifestWalRanges, stopRange } from '../../../src/postgres/backup-label.js';

describe('backup_label and backup_manifest from pg_basebackup', () => {
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

  it('reads the WAL ranges of the manifest, several timelines included', () => {
    const manifest = JSON.stringify({
      'WAL-Ranges': [
        { Timeline: 2, 'Start-LSN': '0/5000000', 'End-LSN': '0/5000100' },
        { Timeline: 1, 'Start-LSN': '0/4000028', 'End-LSN': '0/5000000' },
      ],
    });
    expect(parseBackupManifestWalRanges(manifest)).toEqual([
      { timeline: 2, startLsn: '0/5000000', endLsn: '0/5000100' },
      { timeline: 1, startLsn: '0/4000028', endLsn: '0/5000000' },
    ]);
  });

  it('refuses a manifest that is not JSON or has no WAL ranges', () => {
    expect(() => parseBackupManifestWalRanges('{')).toThrow(/not JSON/);
    expect(() => parseBackupManifestWalRanges('{"WAL-Ranges": []}')).toThrow(/no WAL-Ranges/);
    expect(() => parseBackupManifestWalRanges('{"WAL-Ranges": [{"Timeline": "1"}]}')).toThrow(/malformed/);
  });

  it('takes the stop from the range on the newest timeline, whatever the order', () => {
    const ranges = [
      { timeline: 2, startLsn: '0/5000000', endLsn: '0/5000100' },
      { timeline: 1, startLsn: '0/4000028', endLsn: '0/5000000' },
    ];
    expect(stopRange(ranges)).toEqual(ranges[0]);
    expect(stopRange([...ranges].reverse())).toEqual(ranges[0]);
  });

  it('reads the start and stop of a backup history file', () => {
    const history = [
      'START WAL LOCATION: 0/88000028 (file 000000010000000000000088)',
      'STOP WAL LOCATION: 0/89000138 (file 000000010000000000000089)',
      'CHECKPOINT LOCATION: 0/88000060',
      'BACKUP METHOD: streamed',
      'BACKUP FROM: primary',
      'START TIME: 2026-11-23 15:25:08 UTC',
      'LABEL: pgdr 20261123T152508Z',
      'START TIMELINE: 1',
      'STOP TIME: 2026-11-23 15:25:22 UTC',
      'STOP TIMELINE: 1',
      '',
    ].join('\n');
    expect(parseBackupHistoryFile(history)).toEqual({
      startLsn: '0/88000028',
      startWal: '000000010000000000000088',
      startTimeline: 1,
      checkpointLsn: '0/88000060',
      label: 'pgdr 20261123T152508Z',
      stopLsn: '0/89000138',
      stopWal: '000000010000000000000089',
      stopTimeline: 1,
    });
    expect(() => parseBackupHistoryFile(label)).toThrow(/no valid STOP WAL LOCATION/);
    expect(() => parseBackupHistoryFile(history.replace('STOP TIMELINE: 1', 'STOP TIMELINE: 0'))).toThrow(ServiceError);
  });
});
