import { formatWalSegmentName, isValidWalSegmentSize, walSegmentForLsn } from '../postgres/wal-file-name.js';
import { parseLsn } from '../postgres/lsn.js';
import type { BackupManifest } from '../repo/manifest.js';

/** Every wal_segment_size PostgreSQL accepts: powers of two from 1 MiB to 1 GiB. */
const SIZES = Array.from({ length: 11 }, (_, i) => 2 ** (20 + i)).filter(isValidWalSegmentSize);

/**
 * The WAL segment size the backup manifests tell, without reading any WAL (a segment may be encrypted, and verify
 * may hold no key): the size the newest manifest records, or else the only size under which every manifest's start
 * and stop LSNs fall into the segments it names (a segment name means another position at another size). Undefined
 * when the manifests do not tell (none, or several sizes fit). Pure, for verify.
 */
export function segmentSizeFromManifests(manifests: readonly BackupManifest[]): { bytes: number; how: string } | undefined {
  const newestFirst = [...manifests].sort((a, b) => b.stopTime.localeCompare(a.stopTime) || b.backupId.localeCompare(a.backupId));
  const recorded = newestFirst.find((m) => m.walSegmentSize !== undefined);
  if (recorded?.walSegmentSize !== undefined) return { bytes: recorded.walSegmentSize, how: `recorded in backup ${recorded.backupId}'s manifest` };
  if (manifests.length === 0) return undefined;
  const fits = SIZES.filter((size) => manifests.every((m) => namesFit(m, size)));
  if (fits.length !== 1) return undefined;
  return { bytes: fits[0]!, how: `the only size at which the WAL positions of ${manifests.length === 1 ? 'the backup' : `all ${manifests.length} backups`} match their segment names` };
}

function namesFit(m: BackupManifest, size: number): boolean {
  try {
    const start = parseLsn(m.startLsn);
    const stop = parseLsn(m.stopLsn);
    const last = stop > start ? stop - 1n : stop;
    const segmentOf = (lsn: bigint, name: string) => formatWalSegmentName(walSegmentForLsn(lsn, parseInt(name.slice(0, 8), 16), size)) === name;
    return segmentOf(start, m.startWal) && segmentOf(last, m.stopWal);
  } catch {
    return false;
  }
}
