import type { RetentionPolicy } from '../config/policy.js';
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from '../repo/concurrent-reads.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { BackupManifest } from '../repo/manifest.js';
import { lockedKind, lockHorizons } from '../repo/object-lock.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';

/**
 * What `pgdr verify` says about Object Lock: the retain-until dates of each backup's objects and of the WAL, and the
 * objects locked for less than the policy needs at the least (see src/repo/object-lock.ts): a backup object until
 * its backup's start plus the write-time lock, a WAL file until it was stored plus the WAL lock. The margin is not
 * required, so clock skew never makes noise. An object with no retention at all (written before Object Lock was set,
 * or by another tool) counts as short. These are notes, not problems: nothing is damaged, the protection is thinner.
 */
export interface RetentionSummary {
  objects: number;
  /** Objects with no retention, or one that ends before the policy needs. */
  short: number;
  earliest: string | null;
  latest: string | null;
}

export interface RetentionAudit {
  backups: ({ backupId: string } & RetentionSummary)[];
  wal: RetentionSummary;
  /** The first few short objects, for the note. */
  shortKeys: { key: string; retainUntil: string | null; needed: string }[];
}

const SHORT_KEYS_SHOWN = 10;

export async function auditRetention(
  store: ObjectStore,
  layout: RepositoryLayout,
  backups: readonly BackupManifest[],
  listing: readonly ObjectInfo[],
  retention: RetentionPolicy,
): Promise<RetentionAudit> {
  const horizons = lockHorizons(retention);
  const shortKeys: RetentionAudit['shortKeys'] = [];
  const summarize = async (items: readonly { key: string; needed: Date }[]): Promise<RetentionSummary> => {
    const dates = await mapConcurrently(items, MANIFEST_READS_IN_FLIGHT, async (item) => (await store.head(item.key))?.retention?.retainUntil);
    const summary: RetentionSummary = { objects: items.length, short: 0, earliest: null, latest: null };
    dates.forEach((until, i) => {
      const item = items[i]!;
      if (until === undefined || until < item.needed) {
        summary.short++;
        if (shortKeys.length < SHORT_KEYS_SHOWN) shortKeys.push({ key: item.key, retainUntil: until?.toISOString() ?? null, needed: item.needed.toISOString() });
      }
      if (until === undefined) return;
      const iso = until.toISOString();
      if (summary.earliest === null || iso < summary.earliest) summary.earliest = iso;
      if (summary.latest === null || iso > summary.latest) summary.latest = iso;
    });
    return summary;
  };

  const audit: RetentionAudit = { backups: [], wal: { objects: 0, short: 0, earliest: null, latest: null }, shortKeys };
  for (const manifest of backups) {
    const needed = new Date(new Date(manifest.startTime).getTime() + horizons.backupMs);
    const keys = [...manifest.objects.map((o) => layout.backupObject(manifest.backupId, o.name)), layout.backupManifest(manifest.backupId)];
    audit.backups.push({ backupId: manifest.backupId, ...(await summarize(keys.map((key) => ({ key, needed })))) });
  }
  const wal = listing.filter((info) => lockedKind(layout, info.key) === 'wal');
  audit.wal = await summarize(wal.map((info) => ({ key: info.key, needed: new Date(info.lastModified.getTime() + horizons.walMs) })));
  return audit;
}
