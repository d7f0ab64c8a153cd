import type { ObjectStore } from '../storage/object-store.js';
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from './concurrent-reads.js';
import { isClusterName, RepositoryLayout } from './layout.js';

/**
 * The clusters one repository holds, for the fleet view (`pgdr health --all`, `pgdr report --all`). A cluster is a
 * first-level name that is a valid cluster name and holds cluster.json, backups/ or wal/: what the first
 * `pgdr wal push` or `pgdr backup now` of a cluster writes. Anything else at the top (a README, another tool's
 * directory) is not one. Found with delimiter listings, so the cost does not grow with the clusters' objects.
 */
export async function listClusters(store: ObjectStore): Promise<string[]> {
  const names: string[] = [];
  for await (const prefix of store.listPrefixes('')) {
    const name = prefix.slice(0, -1);
    if (isClusterName(name)) names.push(name);
  }
  const held = await mapConcurrently(names, MANIFEST_READS_IN_FLIGHT, async (name) => {
    const layout = new RepositoryLayout(name);
    for await (const sub of store.listPrefixes(layout.root)) {
      if (sub === layout.backupsPrefix() || sub === layout.walPrefix()) return true;
    }
    return (await store.head(layout.clusterInfo())) !== null;
  });
  return names.filter((_, i) => held[i]);
}
