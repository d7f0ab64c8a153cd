import { RepositoryError, UsageError } from '../errors.js';
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from '../repo/concurrent-reads.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { isSnapshotId, parseEtcdSnapshotManifest, type EtcdSnapshotManifest } from './manifest.js';

/**
 * The etcd snapshots the repository holds, read from the objects themselves. A snapshot is complete only when its
 * manifest exists and validates; objects under a snapshot id without one are the remains of an interrupted (or
 * running) snapshot and are never offered to restore. Health and retention read the same catalog.
 */
export interface EtcdSnapshotCatalog {
  /** Oldest first. */
  complete: EtcdSnapshotManifest[];
  incomplete: { snapshotId: string; objectCount: number; storedBytes: number; lastModified: Date }[];
  /** Manifests that exist but do not validate: reported, never restored from. */
  invalid: { snapshotId: string; problem: string }[];
}

export async function readEtcdSnapshots(store: ObjectStore, layout: RepositoryLayout): Promise<EtcdSnapshotCatalog> {
  const groups = new Map<string, { objectCount: number; storedBytes: number; lastModified: Date; hasManifest: boolean }>();
  const prefix = layout.etcdPrefix();
  for await (const info of store.list(prefix)) {
    const rest = info.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const snapshotId = rest.slice(0, slash);
    if (!isSnapshotId(snapshotId)) continue;
    const group = groups.get(snapshotId) ?? { objectCount: 0, storedBytes: 0, lastModified: info.lastModified, hasManifest: false };
    group.objectCount++;
    group.storedBytes += info.size;
    if (info.lastModified > group.lastModified) group.lastModified = info.lastModified;
    if (info.key === layout.etcdSnapshotManifest(snapshotId)) group.hasManifest = true;
    groups.set(snapshotId, group);
  }
  const catalog: EtcdSnapshotCatalog = { complete: [], incomplete: [], invalid: [] };
  const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const manifests = await mapConcurrently(
    ordered.filter(([, group]) => group.hasManifest).map(([snapshotId]) => snapshotId),
    MANIFEST_READS_IN_FLIGHT,
    async (snapshotId): Promise<EtcdSnapshotManifest | { snapshotId: string; problem: string }> => {
      try {
        return await readEtcdSnapshotManifest(store, layout, snapshotId);
      } catch (err) {
        if (err instanceof RepositoryError) return { snapshotId, problem: err.message };
        throw err;
      }
    },
  );
  for (const read of manifests) {
    if ('problem' in read) catalog.invalid.push(read);
    else catalog.complete.push(read);
  }
  for (const [snapshotId, group] of ordered) {
    if (!group.hasManifest) {
      catalog.incomplete.push({ snapshotId, objectCount: group.objectCount, storedBytes: group.storedBytes, lastModified: group.lastModified });
    }
  }
  return catalog;
}

export async function readEtcdSnapshotManifest(store: ObjectStore, layout: RepositoryLayout, snapshotId: string): Promise<EtcdSnapshotManifest> {
  let raw: Buffer;
  try {
    raw = await store.getBuffer(layout.etcdSnapshotManifest(snapshotId));
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new RepositoryError(
        `etcd snapshot ${snapshotId} has no manifest in ${store.location} (cluster ${layout.cluster})`,
        'run `pgdr etcd list` to see the complete snapshots',
      );
    }
    throw err;
  }
  return parseEtcdSnapshotManifest(raw, { snapshotId, cluster: layout.cluster });
}

/**
 * Which snapshot a restore uses: `latest` is the newest complete one; an id must name a complete one. A pure
 * choice over the catalog, so "latest" never silently falls back to an incomplete or damaged snapshot.
 */
export function chooseEtcdSnapshot(catalog: EtcdSnapshotCatalog, wanted: string, where: string): EtcdSnapshotManifest {
  if (wanted === 'latest') {
    const latest = catalog.complete[catalog.complete.length - 1];
    if (latest === undefined) {
      throw new RepositoryError(`no complete etcd snapshot in ${where}`, 'take one with `pgdr etcd snapshot`, or check --repo and --cluster');
    }
    return latest;
  }
  if (!isSnapshotId(wanted)) {
    throw new UsageError(`--snapshot-id ${JSON.stringify(wanted)} is not a snapshot id`, 'use an id from `pgdr etcd list` (like 20261123T125304Z) or latest');
  }
  const found = catalog.complete.find((m) => m.snapshotId === wanted);
  if (found !== undefined) return found;
  const invalid = catalog.invalid.find((s) => s.snapshotId === wanted);
  if (invalid !== undefined) throw new RepositoryError(invalid.problem, 'restore from another snapshot (see `pgdr etcd list`)');
  if (catalog.incomplete.some((s) => s.snapshotId === wanted)) {
    throw new RepositoryError(`etcd snapshot ${wanted} in ${where} is incomplete (no manifest)`, 'it was interrupted; restore from another snapshot (see `pgdr etcd list`)');
  }
  throw new UsageError(`no etcd snapshot ${wanted} in ${where}`, 'run `pgdr etcd list` to see the snapshots');
}
