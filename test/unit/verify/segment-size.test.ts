import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../../src/postgres/lsn.js';
import { formatWalSegmentName, walSegmentForLsn } from '../../../src/postgres/wal-file-name.js';
import { BackupManifestSchema, type BackupManifest } from '../../../src/repo/manifest.js';
import { segmentSizeFromManifests } from '../../../src/verify/segment-size.js';
import { backup } from './fixtures.js';

const MIB = 1024 * 1024;

/** A manifest whose WAL names were computed, as backup now computes them, at `size`. */
function takenAt(size: number, backupId: string, startLsn: string, stopLsn: string, walSegmentSize?: number): BackupManifest {
  const name = (lsn: bigint) => formatWalSegmentName(walSegmentForLsn(lsn, 1, size));
  return {
    ...backup({ backupId, startLsn, stopLsn }),
    startWal: name(parseLsn(startLsn)),
    stopWal: name(parseLsn(stopLsn) - 1n),
    ...(walSegmentSize === undefined ? {} : { walSegmentSize }),
  };
}

describe('segmentSizeFromManifests', () => {
  it('takes the size the newest manifest records', () => {
    const told = segmentSizeFromManifests([takenAt(64 * MIB, '20260101T000000Z', '0/8000028', '0/9000100', 64 * MIB), takenAt(64 * MIB, '20260102T000000Z', '1/8000028', '1/9000100')]);
    expect(told).toEqual({ bytes: 64 * MIB, how: "recorded in backup 20260101T000000Z's manifest" });
  });

  it('finds the only size at which the positions match their names, for 16 MiB and for other sizes', () => {
    expect(segmentSizeFromManifests([takenAt(16 * MIB, '20260101T000000Z', '0/2000028', '0/2000138')])?.bytes).toBe(16 * MIB);
    expect(segmentSizeFromManifests([takenAt(64 * MIB, '20260101T000000Z', '3/48000028', '3/4A000100')])?.bytes).toBe(64 * MIB);
    expect(segmentSizeFromManifests([takenAt(MIB, '20260101T000000Z', '0/2A00028', '0/2B00100')])?.bytes).toBe(MIB);
    expect(segmentSizeFromManifests([takenAt(1024 * MIB, '20260101T000000Z', '5/48000028', '5/4A000100')])?.bytes).toBe(1024 * MIB);
  });

  it('tells nothing when there is no manifest, or when the positions fit several sizes', () => {
    expect(segmentSizeFromManifests([])).toBeUndefined();
    // Inside the first segment at every size: 0/28 is segment 0 whether segments are 1 MiB or 1 GiB.
    expect(segmentSizeFromManifests([takenAt(16 * MIB, '20260101T000000Z', '0/28', '0/100')])).toBeUndefined();
  });

  it('the manifest field is validated: a size PostgreSQL does not allow is refused', () => {
    const m = takenAt(16 * MIB, '20260101T000000Z', '0/2000028', '0/2000138');
    expect(BackupManifestSchema.safeParse({ ...m, walSegmentSize: 16 * MIB }).success).toBe(true);
    expect(BackupManifestSchema.safeParse({ ...m, walSegmentSize: 3 * MIB }).success).toBe(false);
  });
});
