import { formatWalSegmentName } from '../../../src/postgres/wal-file-name.js';
import { newBackupId } from '../../../src/repo/layout.js';
import type { BackupManifest } from '../../../src/repo/manifest.js';

/** Segments per log id at the default 16 MiB segment size. */
const PER_LOG_ID = 256;

/** A WAL segment name for a position counted in 16 MiB segments. */
export function segmentName(timeline: number, position: number): string {
  return formatWalSegmentName({ timeline, logId: Math.floor(position / PER_LOG_ID), segment: position % PER_LOG_ID });
}

export interface BackupSpec {
  start: string | Date;
  /** Minutes the backup ran; default 10. */
  minutes?: number;
  timeline?: number;
  /** First and last WAL position (16 MiB segments); default derived from the start time. */
  startPos?: number;
  stopPos?: number;
}

/** A manifest as `pgdr backup now` writes it, reduced to the facts retention reads; the rest is plausible filler. */
export function backup(spec: BackupSpec): BackupManifest {
  const start = new Date(spec.start);
  const stop = new Date(start.getTime() + (spec.minutes ?? 10) * 60_000);
  const timeline = spec.timeline ?? 1;
  // One segment per hour since 2024 unless given: keeps positions increasing with time in hand-written examples.
  const startPos = spec.startPos ?? Math.max(0, Math.floor((start.getTime() - Date.UTC(2024, 0, 1)) / 3_600_000));
  const stopPos = spec.stopPos ?? startPos + 1;
  const lsn = (pos: number) => `${Math.floor(pos / PER_LOG_ID).toString(16).toUpperCase()}/${((pos % PER_LOG_ID) * 0x1000000 + 0x28).toString(16).toUpperCase()}`;
  return {
    format: 1,
    backupId: newBackupId(start),
    cluster: 'main',
    type: 'full',
    startTime: start.toISOString(),
    stopTime: stop.toISOString(),
    startLsn: lsn(startPos),
    stopLsn: lsn(stopPos),
    timeline,
    startWal: segmentName(timeline, startPos),
    stopWal: segmentName(timeline, stopPos),
    systemIdentifier: '7000000000000000001',
    pgVersion: '15.8',
    pgVersionNum: 150008,
    source: '127.0.0.1:5432',
    compression: { algorithm: 'zstd', level: 3 },
    bytes: 1000,
    storedBytes: 100,
    objects: [{ name: 'base.tar.zst', bytes: 1000, storedBytes: 100, sha256: 'a'.repeat(64), encoding: 'tar+zstd' }],
    pgdrVersion: '0.1.0',
  };
}

/**
 * A files-engine backup (manifest format 2) of `type` built on `chain` (oldest first, the reference last; empty for a
 * full), with the file-list object every format-2 manifest names.
 */
export function filesBackup(spec: BackupSpec & { type: 'full' | 'diff' | 'incr'; chain?: readonly BackupManifest[] }): BackupManifest {
  const base = backup(spec);
  const chain = (spec.chain ?? []).map((m) => m.backupId);
  return {
    ...base,
    format: 2,
    engine: 'files',
    type: spec.type,
    ...(chain.length > 0 ? { reference: chain[chain.length - 1]!, chain } : { chain: [] }),
    restoredBytes: 1000,
    fileCount: 1,
    objects: [
      { name: 'files-000001.tar.zst', bytes: 1000, storedBytes: 100, sha256: 'a'.repeat(64), encoding: 'tar+zstd', content: 'files' },
      { name: 'files.jsonl.zst', bytes: 100, storedBytes: 50, sha256: 'b'.repeat(64), encoding: 'zstd', content: 'file-list' },
    ],
  };
}
