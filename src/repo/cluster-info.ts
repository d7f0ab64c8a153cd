import { RepositoryError } from '../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import type { RepositoryLayout } from './layout.js';
import { checkRecord, matching, nonEmptyString, oneOf, positiveInteger, utcTimestamp } from './record-fields.js';

/**
 * cluster.json pins a repository namespace to one PostgreSQL cluster (its system identifier). It is written once,
 * by whichever of `backup now` or `wal push` comes first, with a conditional write, and every later writer checks it:
 * a repository that holds another cluster's WAL or backups is refused rather than mixed.
 */
export interface ClusterInfo {
  format: 1;
  cluster: string;
  systemIdentifier: string;
  /** PostgreSQL major version (15); read from the server, or from the WAL page magic when WAL arrives first. */
  pgMajor: number;
  created: string;
}

/** Every `wal push` reads and checks cluster.json, so it is checked field by field (src/repo/record-fields.ts). */
const CLUSTER_INFO_FIELDS = {
  format: oneOf(1),
  cluster: nonEmptyString,
  systemIdentifier: matching(/^\d+$/, 'a string of digits'),
  pgMajor: positiveInteger,
  created: utcTimestamp,
};

export async function readClusterInfo(store: ObjectStore, layout: RepositoryLayout): Promise<ClusterInfo | null> {
  let raw: Buffer;
  try {
    raw = await store.getBuffer(layout.clusterInfo());
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
  return parseClusterInfo(raw, `${store.location}/${layout.clusterInfo()}`);
}

export function parseClusterInfo(raw: Buffer, where: string): ClusterInfo {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RepositoryError(`${where} is not valid JSON`, 'the repository is damaged; restore cluster.json from a copy or recreate it (see docs/repository-format.md)');
  }
  const checked = checkRecord<ClusterInfo>(json, CLUSTER_INFO_FIELDS);
  if (!checked.ok) throw new RepositoryError(`${where} is not a pgdr cluster file: ${checked.problem}`, 'see docs/repository-format.md for its fields');
  return checked.value;
}

export async function ensureClusterInfo(
  store: ObjectStore,
  layout: RepositoryLayout,
  identity: { systemIdentifier: string; pgMajor: number },
  now: Date = new Date(),
): Promise<ClusterInfo> {
  const existing = await readClusterInfo(store, layout);
  if (existing) {
    checkSameCluster(existing, identity.systemIdentifier, store.location, layout.cluster);
    return existing;
  }
  const info: ClusterInfo = {
    format: 1,
    cluster: layout.cluster,
    systemIdentifier: identity.systemIdentifier,
    pgMajor: identity.pgMajor,
    created: now.toISOString(),
  };
  try {
    await store.put(layout.clusterInfo(), { kind: 'buffer', data: Buffer.from(`${JSON.stringify(info, null, 2)}\n`) }, { ifNoneMatch: true });
    // Read back: on a store that ignores If-None-Match a second writer may have replaced it meanwhile.
    const stored = await readClusterInfo(store, layout);
    if (stored) checkSameCluster(stored, identity.systemIdentifier, store.location, layout.cluster);
    return stored ?? info;
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    // Someone else wrote it between our read and write: theirs wins, and must match.
    const winner = await readClusterInfo(store, layout);
    if (!winner) throw err;
    checkSameCluster(winner, identity.systemIdentifier, store.location, layout.cluster);
    return winner;
  }
}

export function checkSameCluster(info: ClusterInfo, systemIdentifier: string, location: string, cluster: string): void {
  if (info.systemIdentifier !== systemIdentifier) {
    throw new RepositoryError(
      `repository ${location} cluster "${cluster}" belongs to PostgreSQL system ${info.systemIdentifier}, not ${systemIdentifier}`,
      'use another --cluster name (or repository) for this database; nothing was written',
    );
  }
}
