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
import { mapConcurrently, MANIFEST_READS_IN_FLIGHT } from '../repo/concurrent-reads.js';
import { keptBackupRetainUntil, lockHorizons, needsExtension, type ObjectLockSettings } from '../repo/object-lock.js';

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
  /**
   * pgdr's Object Lock settings: kept backups get their retention extended to what their tiers need. Whether or not
   * they are set, on a bucket with Object Lock nothing still retained is deleted (retention is read, on the real clock).
   */
  objectLock?: ObjectLockSettings;
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
  /** Under Object Lock retention until then: left alone until that moment. */
  retainedUntil: string | null;
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
    return { kind, id: l.id, objects: l.objects, storedBytes: l.storedBytes, lastModified: l.lastModified.toISOString(), verdict: verdict.verdict, reason: verdict.reason, retainedUntil: null };
  });
}

export interface ExpireReport {
  now: string;
  dryRun: boolean;
  /** From this moment on every moment stays restorable (given a backup that finished by then). */
  windowStart: string;
  /** Every complete backup, oldest first. */
  /** Oldest first. neededBy: kept backups restored from this one; missingChain: why it cannot be restored. */
  /**
   * retainedUntil: the policy would delete it, but it is under Object Lock retention until then (or a backup built on
   * it is): it stays, with its WAL, and goes at the first expire after that moment.
   */
  backups: { backupId: string; type: BackupManifest['type']; verdict: Verdict; reason: string; neededBy: string[]; missingChain: string[]; retainedUntil: string | null }[];
  /** WAL removed (or, in a dry run, that would be). */
  wal: WalDeleteRange[];
  /** The first WAL segment kept, and the kept backup that starts there; null when no WAL may go. */
  walKeptFrom: { segment: string; backupId: string } | null;
  /** Why no WAL was planned for removal, when that is not simply "none is old enough". */
  walSkipped: string | null;
  /** WAL files the policy lets go that are still under Object Lock retention: left alone until `latest` at most. */
  walRetained: { files: number; earliest: string; latest: string } | null;
  /** Object Lock: whether the bucket has it, and the retention extended on the backups kept longer than first locked. */
  objectLock: { bucket: boolean; extended: { backupId: string; retainUntil: string; objects: number }[] } | null;
  garbage: GarbageEntry[];
  etcdSnapshots: { snapshotId: string; verdict: Verdict; reason: string; retainedUntil: string | null }[];
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
    await extendRetention(options, planned);
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
  /** Kept backups whose retention must reach further, and how far (Object Lock). */
  extensions: { backupId: string; retainUntil: Date }[];
  walDeleteKeys: string[];
  /** The unfinished writes the report names, by the id it names them with. */
  pendingWrites: Map<string, PendingWrite>;
}

async function plan(options: ExpireOptions, catalog: BackupCatalog, now: Date): Promise<ExpirePlan> {
  const { store, layout, policy } = options;
  const retention = planRetention(catalog.complete, policy, now);
  // Retention is read on the real clock: the store's idea of "now" is what decides whether a delete is refused.
  const lockClock = new Date();
  const bucketLocked = await bucketHasObjectLock(store, options.objectLock);

  // A backup the policy lets go but Object Lock still holds stays, and so does every backup it is restored from.
  const retainedUntil = new Map<string, Date>();
  if (bucketLocked) {
    const doomed = retention.backups.filter((b) => b.verdict === 'delete').map((b) => b.backupId);
    const held = await retainedKeys(store, doomed.map((id) => layout.backupManifest(id)), lockClock);
    const byId = new Map(catalog.complete.map((m) => [m.backupId, m]));
    for (const id of doomed) {
      const until = held.get(layout.backupManifest(id));
      if (until === undefined) continue;
      for (const member of [...(byId.get(id)?.chain ?? []), id]) {
        const previous = retainedUntil.get(member);
        if (previous === undefined || previous < until) retainedUntil.set(member, until);
      }
    }
  }
  const staying = catalog.complete.filter((m) => retention.kept.includes(m) || retainedUntil.has(m.backupId));

  const walKeys = await listWal(store, layout);
  let walPlan = planWalRetention(staying, [...walKeys.keys()]);
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

  let walDeleteKeys = walPlan.deleteFiles.map((name) => walKeys.get(name)!);
  let walRetained: ExpireReport['walRetained'] = null;
  const etcdRetained = new Map<string, Date>();
  const extensions: ExpirePlan['extensions'] = [];
  if (bucketLocked) {
    const heldWal = await retainedKeys(store, walDeleteKeys, lockClock);
    if (heldWal.size > 0) {
      const dates = [...heldWal.values()].sort((a, b) => a.getTime() - b.getTime());
      walRetained = { files: heldWal.size, earliest: dates[0]!.toISOString(), latest: dates[dates.length - 1]!.toISOString() };
      walDeleteKeys = walDeleteKeys.filter((key) => !heldWal.has(key));
    }
    for (const entry of garbage) {
      if (entry.verdict !== 'delete' || entry.kind === 'pending-write') continue;
      const prefix = entry.kind === 'backup' ? layout.backupPrefix(entry.id) : layout.etcdSnapshotPrefix(entry.id);
      const keys: string[] = [];
      for await (const info of store.list(prefix)) keys.push(info.key);
      const latest = latestOf((await retainedKeys(store, keys, lockClock)).values());
      if (latest !== undefined) entry.retainedUntil = latest.toISOString();
    }
    const doomedSnapshots = etcdPlan.snapshots.filter((s) => s.verdict === 'delete').map((s) => s.snapshotId);
    const heldSnapshots = await retainedKeys(store, doomedSnapshots.map((id) => layout.etcdSnapshotManifest(id)), lockClock);
    for (const id of doomedSnapshots) {
      const until = heldSnapshots.get(layout.etcdSnapshotManifest(id));
      if (until !== undefined) etcdRetained.set(id, until);
    }
    if (options.objectLock !== undefined) extensions.push(...(await plannedExtensions(options, retention.backups, catalog, now, options.objectLock)));
  }

  const report: ExpireReport = {
    now: now.toISOString(),
    dryRun: options.dryRun,
    windowStart: retention.windowStart.toISOString(),
    backups: retention.backups.map(({ backupId, type, verdict, reason, neededBy, missingChain }) => {
      const until = verdict === 'delete' ? retainedUntil.get(backupId) : undefined;
      return {
        backupId,
        type,
        verdict,
        reason: until === undefined ? reason : `${reason}: retained (Object Lock) until ${until.toISOString()}, deletable then`,
        neededBy,
        missingChain,
        retainedUntil: until?.toISOString() ?? null,
      };
    }),
    wal: walPlan.ranges,
    walKeptFrom: walPlan.keepFrom !== undefined && walPlan.keepFromBackupId !== undefined ? { segment: walPlan.keepFrom, backupId: walPlan.keepFromBackupId } : null,
    walSkipped,
    walRetained,
    objectLock: bucketLocked ? { bucket: true, extended: [] } : null,
    garbage,
    etcdSnapshots: etcdPlan.snapshots.map((s) => {
      const until = etcdRetained.get(s.snapshotId);
      return { ...s, reason: until === undefined ? s.reason : `${s.reason}: retained (Object Lock) until ${until.toISOString()}, deletable then`, retainedUntil: until?.toISOString() ?? null };
    }),
    invalid: [
      ...catalog.invalid.map((b) => ({ kind: 'backup' as const, id: b.backupId, problem: b.problem })),
      ...etcd.invalid.map((s) => ({ kind: 'etcd-snapshot' as const, id: s.snapshotId, problem: s.problem })),
    ],
    deleted: { backups: 0, walFiles: 0, garbage: 0, etcdSnapshots: 0, objects: 0 },
  };
  return { report, walDeleteKeys, pendingWrites: pending, extensions };
}

/** Whether the bucket has Object Lock: pgdr's own setting says so; else the bucket is asked (a refusal counts as no). */
async function bucketHasObjectLock(store: ObjectStore, settings: ObjectLockSettings | undefined): Promise<boolean> {
  if (settings !== undefined) return true;
  if (store.objectLock === undefined || !store.location.startsWith('s3://')) return false;
  try {
    return (await store.objectLock()).enabled;
  } catch {
    return false;
  }
}

/** Of these keys, those under retention past `now`, with their retain-until date (one HEAD each, 16 at a time). */
async function retainedKeys(store: ObjectStore, keys: readonly string[], now: Date): Promise<Map<string, Date>> {
  const held = new Map<string, Date>();
  await mapConcurrently(keys, MANIFEST_READS_IN_FLIGHT, async (key) => {
    const until = (await store.head(key))?.retention?.retainUntil;
    if (until !== undefined && until > now) held.set(key, until);
  });
  return held;
}

function latestOf(dates: Iterable<Date>): Date | undefined {
  let latest: Date | undefined;
  for (const d of dates) if (latest === undefined || d > latest) latest = d;
  return latest;
}

/**
 * Kept backups whose manifest's retention ends before their tiers need (src/repo/object-lock.ts): those and the
 * backups they are restored from get a longer retention. A moving target is extended only once half of the
 * write-time lock is used up, not on every run.
 */
async function plannedExtensions(
  options: ExpireOptions,
  verdicts: readonly { backupId: string; verdict: Verdict; keptBy: string[] }[],
  catalog: BackupCatalog,
  now: Date,
  settings: ObjectLockSettings,
): Promise<ExpirePlan['extensions']> {
  const { store, layout, policy } = options;
  const byId = new Map(catalog.complete.map((m) => [m.backupId, m]));
  const wanted = new Map<string, Date>();
  for (const v of verdicts) {
    if (v.verdict !== 'keep') continue;
    const manifest = byId.get(v.backupId);
    if (manifest === undefined) continue;
    const until = keptBackupRetainUntil(v.keptBy, new Date(manifest.startTime), policy.retention, settings, now);
    for (const id of [...(manifest.chain ?? []), v.backupId]) {
      const previous = wanted.get(id);
      if (byId.has(id) && (previous === undefined || previous < until)) wanted.set(id, until);
    }
  }
  const slackMs = lockHorizons(policy.retention).backupMs / 2;
  const ids = [...wanted.keys()].sort();
  const current = await mapConcurrently(ids, MANIFEST_READS_IN_FLIGHT, async (id) => (await store.head(layout.backupManifest(id)))?.retention?.retainUntil);
  return ids.flatMap((id, i) => (needsExtension(current[i], wanted.get(id)!, slackMs) ? [{ backupId: id, retainUntil: wanted.get(id)! }] : []));
}

/** Every object of each backup gets the longer retention, the manifest last (it is what the next run reads). */
async function extendRetention(options: ExpireOptions, planned: ExpirePlan): Promise<void> {
  const { store, layout, log, objectLock } = options;
  if (objectLock === undefined || store.extendRetention === undefined || planned.report.objectLock === null) return;
  for (const { backupId, retainUntil } of planned.extensions) {
    const keys: string[] = [];
    for await (const info of store.list(layout.backupPrefix(backupId))) if (info.key !== layout.backupManifest(backupId)) keys.push(info.key);
    keys.push(layout.backupManifest(backupId));
    const retention = { mode: objectLock.mode, retainUntil };
    await mapConcurrently(keys.slice(0, -1), MANIFEST_READS_IN_FLIGHT, (key) => store.extendRetention!(key, retention));
    await store.extendRetention(layout.backupManifest(backupId), retention);
    log(`expire: backup ${backupId} is kept longer: its ${keys.length} object(s) are now retained until ${retainUntil.toISOString()}`);
    planned.report.objectLock.extended.push({ backupId, retainUntil: retainUntil.toISOString(), objects: keys.length });
  }
}

async function execute(options: ExpireOptions, planned: ExpirePlan, catalog: BackupCatalog): Promise<void> {
  const { report, walDeleteKeys: walKeys, pendingWrites } = planned;
  const { store, layout, log } = options;
  const stopMs = (m: { stopTime: string }) => new Date(m.stopTime).getTime();
  const newest = [...catalog.complete].sort((a, b) => stopMs(b) - stopMs(a) || (a.backupId < b.backupId ? 1 : -1))[0];
  // Newest first: a chain member is always older than the backups built on it, so an expire cut short anywhere
  // leaves every remaining complete backup with its whole chain.
  const doomed = report.backups.filter((b) => b.verdict === 'delete' && b.retainedUntil === null).reverse();
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
    if (entry.verdict !== 'delete' || entry.retainedUntil !== null) continue;
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
    if (snapshot.verdict !== 'delete' || snapshot.retainedUntil !== null) continue;
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
