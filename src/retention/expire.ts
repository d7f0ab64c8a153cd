import type { RetentionPolicy } from '../config/policy.js';
import { PgdrError, RepositoryError } from '../errors.js';
import { failpoint } from '../process/failpoint.js';
import { parseWalFileName } from '../postgres/wal-file-name.js';
import { readBackupCatalog, type BackupCatalog } from '../repo/catalog.js';
import type { Locker, RepositoryLock } from '../repo/lock.js';
import { readEtcdSnapshots } from '../etcd/catalog.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { BackupManifest } from '../repo/manifest.js';
import type { ObjectStore, PendingWrite } from '../storage/object-store.js';
import {
  planGarbage,
  planRetention,
  planSnapshotRetention,
  planWalRetention,
  type GarbageCandidate,
  type SnapshotRecord,
  type Verdict,
  type WalDeleteRange,
} from './plan.js';
import { chainDependants } from './chains.js';

/**
 * `pgdr expire`: reads the repository, asks the pure planners (./plan.ts) what goes, and removes it in an order
 * that never leaves a backup looking complete while part of it is gone:
 *   1. each expired backup's manifest first (from then on no restore will pick it), then its data objects; newest
 *      backup first, so that no kept backup ever lacks a member of its chain;
 *   2. WAL before the oldest kept backup's start;
 *   3. the objects of interrupted backups (no manifest) that nothing has written to for the grace period;
 *   4. etcd snapshots the same way: manifest first, then the snapshot; then interrupted snapshots.
 * It holds the repository lock named 'backup', the one `pgdr backup now` takes, so it never runs beside a backup
 * (which could otherwise see its WAL removed or its half-written objects taken for garbage). A dry run takes no
 * lock and changes nothing.
 */

/** The lock `pgdr backup now` holds (src/backup/take-backup.ts). */
export const EXPIRE_LOCK_NAME = 'backup';

export interface ExpireOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** Takes the `backup` lock (in the repository, or in etcd on a store without conditional writes). */
  lock: Locker;
  policy: { retention: RetentionPolicy };
  dryRun: boolean;
  /** How long to wait for a running backup's lock; 0 fails at once. */
  lockWaitMs: number;
  /** The planning clock; the real one unless a test injects another. The lock always uses the real clock. */
  now?: Date;
  log: (message: string) => void;
}

export interface GarbageEntry {
  /** backup / etcd-snapshot: objects without a manifest; pending-write: a temp file or multipart upload never finished. */
  kind: 'backup' | 'etcd-snapshot' | 'pending-write';
  id: string;
  objects: number;
  storedBytes: number;
  lastModified: string;
  verdict: Verdict;
  reason: string;
}

/** The leftovers of unfinished backups or snapshots, each with the garbage planner's verdict. */
function garbageEntries(
  kind: GarbageEntry['kind'],
  leftovers: readonly { id: string; objects: number; storedBytes: number; lastModified: Date }[],
  graceMs: number,
  now: Date,
  neededBy: ReadonlyMap<string, readonly string[]> = new Map(),
): GarbageEntry[] {
  const why = kind === 'pending-write' ? 'never finished' : 'no manifest';
  const byId = new Map(leftovers.map((l) => [l.id, l]));
  return planGarbage(
    leftovers.map((l): GarbageCandidate => ({ id: l.id, lastModified: l.lastModified })),
    graceMs,
    now,
    why,
    neededBy,
  ).map((verdict) => {
    const l = byId.get(verdict.id)!;
    return { kind, id: l.id, objects: l.objects, storedBytes: l.storedBytes, lastModified: l.lastModified.toISOString(), verdict: verdict.verdict, reason: verdict.reason };
  });
}

export interface ExpireReport {
  now: string;
  dryRun: boolean;
  /** From this moment on every moment stays restorable (given a backup that finished by then). */
  windowStart: string;
  /** Every complete backup, oldest first. */
  /** Oldest first. neededBy: kept backups restored from this one; missingChain: why it cannot be restored. */
  backups: { backupId: string; type: BackupManifest['type']; verdict: Verdict; reason: string; neededBy: string[]; missingChain: string[] }[];
  /** WAL removed (or, in a dry run, that would be). */
  wal: WalDeleteRange[];
  /** The first WAL segment kept, and the kept backup that starts there; null when no WAL may go. */
  walKeptFrom: { segment: string; backupId: string } | null;
  /** Why no WAL was planned for removal, when that is not simply "none is old enough". */
  walSkipped: string | null;
  garbage: GarbageEntry[];
  etcdSnapshots: { snapshotId: string; verdict: Verdict; reason: string }[];
  /** Manifests that exist but do not validate: never deleted, listed so that someone looks at them. */
  invalid: { kind: 'backup' | 'etcd-snapshot'; id: string; problem: string }[];
  /** What was actually removed (all zero in a dry run). */
  deleted: { backups: number; walFiles: number; garbage: number; etcdSnapshots: number; objects: number };
}

export async function runExpire(options: ExpireOptions): Promise<ExpireReport> {
  const { store, layout, log } = options;
  const now = options.now ?? new Date();
  let lock: RepositoryLock | undefined;
  if (!options.dryRun) lock = await takeLock(options);
  try {
    const catalog = await readBackupCatalog(store, layout);
    const planned = await plan(options, catalog, now);
    const { report } = planned;
    if (options.dryRun) return report;
    await execute(options, planned, catalog);
    log(
      `expire: removed ${report.deleted.backups} backup(s), ${report.deleted.walFiles} WAL file(s), ${report.deleted.garbage} interrupted upload(s) ` +
        `and ${report.deleted.etcdSnapshots} etcd snapshot(s): ${report.deleted.objects} object(s) in all`,
    );
    return report;
  } finally {
    await lock?.release().catch(() => undefined);
  }
}

async function takeLock(options: ExpireOptions): Promise<RepositoryLock> {
  try {
    return await options.lock(EXPIRE_LOCK_NAME, 'expire', { waitMs: options.lockWaitMs });
  } catch (err) {
    if (err instanceof PgdrError) {
      const waited = options.lockWaitMs > 0 ? ` after waiting ${Math.round(options.lockWaitMs / 1000)} s` : '';
      throw new RepositoryError(
        `expire did not start${waited}, nothing was deleted: ${err.message}`,
        `${err.hint}; or run expire with --lock-wait SECONDS to wait for it`,
        err,
      );
    }
    throw err;
  }
}

interface ExpirePlan {
  report: ExpireReport;
  walDeleteKeys: string[];
  /** The unfinished writes the report names, by the id it names them with. */
  pendingWrites: Map<string, PendingWrite>;
}

async function plan(options: ExpireOptions, catalog: BackupCatalog, now: Date): Promise<ExpirePlan> {
  const { store, layout, policy } = options;
  const retention = planRetention(catalog.complete, policy, now);

  const walKeys = await listWal(store, layout);
  let walPlan = planWalRetention(retention.kept, [...walKeys.keys()]);
  let walSkipped: string | null = null;
  if (catalog.invalid.length > 0) {
    // A backup whose manifest does not validate may still be someone's only copy; which WAL it needs is unknown,
    // so no WAL goes until `pgdr verify` is clean.
    walSkipped = `the manifest of backup ${catalog.invalid[0]!.backupId} does not validate, so the WAL it needs is unknown; no WAL is removed until pgdr verify is clean`;
    walPlan = planWalRetention([], [...walKeys.keys()]);
  }

  const garbage: GarbageEntry[] = garbageEntries(
    'backup',
    catalog.incomplete.map((b) => ({ id: b.backupId, objects: b.objectCount, storedBytes: b.storedBytes, lastModified: b.lastModified })),
    policy.retention.garbageGrace,
    now,
    chainDependants(catalog.complete),
  );

  // The planner reads only an id and a time of each snapshot: its start, which its id is made from too.
  const etcd = await readEtcdSnapshots(store, layout);
  const etcdPlan = planSnapshotRetention(
    etcd.complete.map((m): SnapshotRecord => ({ snapshotId: m.snapshotId, time: m.startTime })),
    policy.retention.etcdSnapshots,
  );
  garbage.push(
    ...garbageEntries(
      'etcd-snapshot',
      etcd.incomplete.map((s) => ({ id: s.snapshotId, objects: s.objectCount, storedBytes: s.storedBytes, lastModified: s.lastModified })),
      policy.retention.garbageGrace,
      now,
    ),
  );
  // Temp files and multipart uploads a killed writer left: invisible to listings, so nothing else ever removes them.
  const pending = new Map<string, PendingWrite>();
  for await (const write of store.listPendingWrites(layout.root)) pending.set(write.key === write.id ? write.key : `${write.key}#${write.id}`, write);
  garbage.push(
    ...garbageEntries(
      'pending-write',
      [...pending.entries()].map(([id, w]) => ({ id, objects: 1, storedBytes: w.size ?? 0, lastModified: w.startedAt })),
      policy.retention.garbageGrace,
      now,
    ),
  );

  const report: ExpireReport = {
    now: now.toISOString(),
    dryRun: options.dryRun,
    windowStart: retention.windowStart.toISOString(),
    backups: retention.backups.map(({ backupId, type, verdict, reason, neededBy, missingChain }) => ({ backupId, type, verdict, reason, neededBy, missingChain })),
    wal: walPlan.ranges,
    walKeptFrom: walPlan.keepFrom !== undefined && walPlan.keepFromBackupId !== undefined ? { segment: walPlan.keepFrom, backupId: walPlan.keepFromBackupId } : null,
    walSkipped,
    garbage,
    etcdSnapshots: etcdPlan.snapshots,
    invalid: [
      ...catalog.invalid.map((b) => ({ kind: 'backup' as const, id: b.backupId, problem: b.problem })),
      ...etcd.invalid.map((s) => ({ kind: 'etcd-snapshot' as const, id: s.snapshotId, problem: s.problem })),
    ],
    deleted: { backups: 0, walFiles: 0, garbage: 0, etcdSnapshots: 0, objects: 0 },
  };
  return { report, walDeleteKeys: walPlan.deleteFiles.map((name) => walKeys.get(name)!), pendingWrites: pending };
}

async function execute(options: ExpireOptions, planned: ExpirePlan, catalog: BackupCatalog): Promise<void> {
  const { report, walDeleteKeys: walKeys, pendingWrites } = planned;
  const { store, layout, log } = options;
  const stopMs = (m: { stopTime: string }) => new Date(m.stopTime).getTime();
  const newest = [...catalog.complete].sort((a, b) => stopMs(b) - stopMs(a) || (a.backupId < b.backupId ? 1 : -1))[0];
  // Newest first: a chain member is always older than the backups built on it, so an expire cut short anywhere
  // leaves every remaining complete backup with its whole chain.
  const doomed = report.backups.filter((b) => b.verdict === 'delete').reverse();
  if (newest !== undefined && doomed.some((b) => b.backupId === newest.backupId)) {
    // The planner promises this never happens; an executor that deletes must not trust a promise it can check.
    throw new RepositoryError(`internal error: the plan would delete the newest backup ${newest.backupId}`, 'nothing was deleted; report this with the output of pgdr expire --dry-run --json');
  }
  const doomedIds = new Set(doomed.map((b) => b.backupId));
  for (const [memberId, dependants] of chainDependants(catalog.complete)) {
    const survivor = dependants.find((id) => !doomedIds.has(id));
    if (doomedIds.has(memberId) && survivor !== undefined) {
      throw new RepositoryError(
        `internal error: the plan would delete backup ${memberId}, which the kept backup ${survivor} is restored from`,
        'nothing was deleted; report this with the output of pgdr expire --dry-run --json',
      );
    }
  }

  for (const { backupId } of doomed) {
    log(`expire: deleting backup ${backupId}`);
    // The manifest goes first: from this moment restore and backup list no longer see a complete backup.
    await store.delete([layout.backupManifest(backupId)]);
    await failpoint('expire:after-manifest-delete', backupId);
    report.deleted.objects += 1 + (await deleteUnder(store, layout.backupPrefix(backupId)));
    report.deleted.backups++;
  }

  if (walKeys.length > 0) {
    for (const range of report.wal) log(`expire: WAL timeline ${range.timeline}: ${range.from} .. ${range.to} (${range.files} files)`);
    await failpoint('expire:before-wal-delete');
    await deleteKeys(store, walKeys);
    report.deleted.walFiles += walKeys.length;
    report.deleted.objects += walKeys.length;
  }

  for (const entry of report.garbage) {
    if (entry.verdict !== 'delete') continue;
    if (entry.kind === 'pending-write') {
      const write = pendingWrites.get(entry.id);
      if (write === undefined) continue;
      log(`expire: unfinished write ${entry.id}: ${entry.reason}`);
      await store.abortPendingWrite(write);
      report.deleted.objects += 1;
      report.deleted.garbage++;
      continue;
    }
    const prefix = entry.kind === 'backup' ? layout.backupPrefix(entry.id) : layout.etcdSnapshotPrefix(entry.id);
    const manifest = entry.kind === 'backup' ? layout.backupManifest(entry.id) : layout.etcdSnapshotManifest(entry.id);
    // A manifest that appeared since the plan means the upload finished after all: it is not garbage.
    if ((await store.head(manifest)) !== null) {
      log(`expire: ${entry.kind} ${entry.id} has a manifest now; left alone`);
      continue;
    }
    log(`expire: interrupted ${entry.kind} ${entry.id}: ${entry.reason}`);
    report.deleted.objects += await deleteUnder(store, prefix);
    report.deleted.garbage++;
  }

  for (const snapshot of report.etcdSnapshots) {
    if (snapshot.verdict !== 'delete') continue;
    log(`expire: deleting etcd snapshot ${snapshot.snapshotId}`);
    await store.delete([layout.etcdSnapshotManifest(snapshot.snapshotId)]);
    report.deleted.objects += 1 + (await deleteUnder(store, layout.etcdSnapshotPrefix(snapshot.snapshotId)));
    report.deleted.etcdSnapshots++;
  }
}

/** Deletes every object under a prefix; returns how many there were. */
async function deleteUnder(store: ObjectStore, prefix: string): Promise<number> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  await deleteKeys(store, keys);
  return keys.length;
}

async function deleteKeys(store: ObjectStore, keys: readonly string[]): Promise<void> {
  // Batches keep one request (S3 DeleteObjects takes at most 1000 keys) and one failure small.
  for (let i = 0; i < keys.length; i += 1000) await store.delete(keys.slice(i, i + 1000));
}

/** Archived WAL file names and their keys. Keys that are not where layout.walObject would put a WAL file are left out. */
async function listWal(store: ObjectStore, layout: RepositoryLayout): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const prefix = layout.walPrefix();
  for await (const info of store.list(prefix)) {
    const match = /^([0-9A-F]{8})\/([^/]+)\.zst$/.exec(info.key.slice(prefix.length));
    if (!match) continue;
    const name = match[2]!;
    try {
      parseWalFileName(name);
    } catch {
      continue;
    }
    if (layout.walObject(name) === info.key) names.set(name, info.key);
  }
  return names;
}
