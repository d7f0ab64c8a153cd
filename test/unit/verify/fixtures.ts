import { formatLsn, parseLsn } from '../../../src/postgres/lsn.js';
import { parseTimelineHistory, type TimelineHistory } from '../../../src/postgres/timeline-history.js';
import { formatWalSegmentName, walSegmentForLsn } from '../../../src/postgres/wal-file-name.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { BackupManifestSchema, type BackupManifest } from '../../../src/repo/manifest.js';
import { buildWalIndex, type ArchivedWalObject, type WalIndex } from '../../../src/verify/wal-coverage.js';

export const layout = new RepositoryLayout('main');

/** A manifest as `pgdr backup now` writes it, from the facts a verify test cares about. */
export function backup(spec: { backupId: string; startLsn: string; stopLsn: string; timeline?: number; stopTime?: string }): BackupManifest {
  const timeline = spec.timeline ?? 1;
  const stopTime = spec.stopTime ?? `${spec.backupId.slice(0, 4)}-${spec.backupId.slice(4, 6)}-${spec.backupId.slice(6, 8)}T${spec.backupId.slice(9, 11)}:${spec.backupId.slice(11, 13)}:${spec.backupId.slice(13, 15)}.000Z`;
  return BackupManifestSchema.parse({
    format: 1,
    backupId: spec.backupId,
    cluster: 'main',
    type: 'full',
    startTime: stopTime,
    stopTime,
    startLsn: formatLsn(parseLsn(spec.startLsn)),
    stopLsn: formatLsn(parseLsn(spec.stopLsn)),
    timeline,
    startWal: formatWalSegmentName(walSegmentForLsn(parseLsn(spec.startLsn), timeline)),
    stopWal: formatWalSegmentName(walSegmentForLsn(parseLsn(spec.stopLsn), timeline)),
    systemIdentifier: '7311234567890123456',
    pgVersion: '15.8',
    pgVersionNum: 150008,
    source: '127.0.0.1:5432',
    compression: { algorithm: 'zstd', level: 3 },
    bytes: 1000,
    storedBytes: 500,
    objects: [{ name: 'base.tar.zst', bytes: 1000, storedBytes: 500, sha256: 'a'.repeat(64), encoding: 'tar+zstd' }],
    pgdrVersion: '0.1.0',
  });
}

/** Segment names on one timeline, e.g. seg(1, 5) = 000000010000000000000005. */
export function seg(timeline: number, n: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
}

/** Archived at a fixed base time plus n minutes, so "cannot reach" times are predictable. */
export function archivedAt(n: number): Date {
  return new Date(Date.UTC(2024, 4, 3, 10, n, 0));
}

export function archive(names: string[], histories: Record<number, string> = {}): WalIndex {
  const files: ArchivedWalObject[] = names.map((name) => ({ name, lastModified: archivedAt(segmentMinute(name)) }));
  const parsed = new Map<number, TimelineHistory>();
  for (const [tl, text] of Object.entries(histories)) {
    parsed.set(Number(tl), parseTimelineHistory(Number(tl), text));
    files.push({ name: `${Number(tl).toString(16).toUpperCase().padStart(8, '0')}.history`, lastModified: archivedAt(0) });
  }
  return buildWalIndex({ files, histories: parsed, segmentSize: 16 * 1024 * 1024 });
}

function segmentMinute(name: string): number {
  const m = /^[0-9A-F]{16}([0-9A-F]{8})/.exec(name);
  return m ? parseInt(m[1]!, 16) : 0;
}

export function range(timeline: number, from: number, to: number): string[] {
  const out: string[] = [];
  for (let n = from; n <= to; n++) out.push(seg(timeline, n));
  return out;
}
