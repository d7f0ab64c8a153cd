import type { RetentionPolicy, TierCounts } from '../config/policy.js';
import type { ObjectRetention, ObjectStore, PutBody, PutOptions, PutResult, RetentionMode } from '../storage/object-store.js';
import type { RepositoryLayout } from './layout.js';

/**
 * S3 Object Lock: which keys pgdr writes under retention, and until when. Pure functions over the layout and the
 * retention policy, plus a thin store wrapper that applies them to every put, so the code that writes backups, WAL
 * and reports needs to know nothing about it.
 *
 * What is locked. Everything pgdr writes once and never changes: backup objects and manifests, WAL and history
 * files, etcd snapshots and their manifests, drill reports, restore points and cluster.json. Lock objects and the
 * state/ prefix are rewritten and deleted as pgdr works, so they are written without retention.
 *
 * Until when ("the moment the policy would delete it, plus a margin"). The tiers decide a backup's fate only later
 * (the newest backup of today may or may not end up the newest of its month), so a backup is locked at write time
 * for what the policy guarantees any new backup (the PITR window, and the daily tier with one backup a day), and
 * `pgdr expire` extends the retention of the backups it keeps to the end of the period their tiers keep them for.
 * A backup that no tier keeps becomes deletable when its first lock ends. WAL is kept by the policy from the oldest
 * kept backup's start, and the oldest kept backup is one the longest tier keeps: WAL is locked for that longest span
 * at write time. etcd snapshots are small and written several times a day: they are locked for the longest span of
 * their own tiers rather than extended. The objects expire never deletes (history files, cluster.json, restore
 * points, drill reports) are locked for the WAL span.
 */

export interface ObjectLockSettings {
  mode: RetentionMode;
  /** Added to every retain-until: room for a late expire run, clock skew, an operator's slow reaction. */
  marginMs: number;
}

export type LockedKind = 'backup' | 'wal' | 'etcd' | 'permanent';

const DAY_MS = 86_400_000;
/** The longest a calendar period of each tier lasts. */
export const TIER_PERIOD_MS: Readonly<Record<keyof TierCounts, number>> = {
  daily: DAY_MS,
  weekly: 7 * DAY_MS,
  monthly: 31 * DAY_MS,
  yearly: 366 * DAY_MS,
};

/** How long a tier of N periods keeps the item it names, counted from the item's time, with one item per period. */
export function tierSpanMs(tiers: TierCounts, tier: keyof TierCounts): number {
  return tiers[tier] * TIER_PERIOD_MS[tier];
}

function longestTierSpanMs(tiers: TierCounts): number {
  return Math.max(tierSpanMs(tiers, 'daily'), tierSpanMs(tiers, 'weekly'), tierSpanMs(tiers, 'monthly'), tierSpanMs(tiers, 'yearly'));
}

/** The write-time lock of each kind of object, before the margin (see the module comment for the reasoning). */
export interface LockHorizons {
  backupMs: number;
  walMs: number;
  etcdMs: number;
  permanentMs: number;
}

export function lockHorizons(retention: RetentionPolicy): LockHorizons {
  const walMs = Math.max(retention.pitrWindow, longestTierSpanMs(retention.backups));
  return {
    backupMs: Math.max(retention.pitrWindow, tierSpanMs(retention.backups, 'daily')),
    walMs,
    etcdMs: longestTierSpanMs(retention.etcdSnapshots),
    permanentMs: walMs,
  };
}

/** Which lock a key gets; null for mutable objects (locks, state/) and keys pgdr does not know. */
export function lockedKind(layout: RepositoryLayout, key: string): LockedKind | null {
  if (key === layout.clusterInfo()) return 'permanent';
  if (key.startsWith(layout.backupsPrefix())) return 'backup';
  if (key.startsWith(layout.walPrefix())) return key.endsWith('.history.zst') ? 'permanent' : 'wal';
  if (key.startsWith(layout.etcdPrefix())) return 'etcd';
  if (key.startsWith(layout.drillsPrefix()) || key.startsWith(layout.restorePointsPrefix())) return 'permanent';
  return null;
}

export function retentionAtWrite(kind: LockedKind, horizons: LockHorizons, settings: ObjectLockSettings, now: Date): ObjectRetention {
  const horizon = { backup: horizons.backupMs, wal: horizons.walMs, etcd: horizons.etcdMs, permanent: horizons.permanentMs }[kind];
  return { mode: settings.mode, retainUntil: new Date(now.getTime() + horizon + settings.marginMs) };
}

/**
 * How long a backup expire keeps must stay locked, by the rules that keep it ("daily 2024-05-03", "monthly 2024-04",
 * "PITR window", "newest", the keptBy labels of src/retention/plan.ts): a tier of N periods keeps it about N periods
 * past its start, and while a rule still names it, at least one more period from now (backups that stopped for a
 * while keep the old ones longer). The window and newest rules hold it for the write-time lock from now.
 */
export function keptBackupRetainUntil(keptBy: readonly string[], start: Date, retention: RetentionPolicy, settings: ObjectLockSettings, now: Date): Date {
  const horizons = lockHorizons(retention);
  let until = start.getTime() + horizons.backupMs;
  for (const label of keptBy) {
    const tier = /^(daily|weekly|monthly|yearly) /.exec(label)?.[1] as keyof TierCounts | undefined;
    if (tier !== undefined) {
      until = Math.max(until, start.getTime() + tierSpanMs(retention.backups, tier), now.getTime() + TIER_PERIOD_MS[tier]);
    } else {
      until = Math.max(until, now.getTime() + horizons.backupMs);
    }
  }
  return new Date(until + settings.marginMs);
}

/**
 * Whether an object locked until `current` needs a longer lock to reach `wanted`. A target that moves with the clock
 * (the newest backup, the PITR window) is extended only once less than half of its horizon is left, not every run.
 */
export function needsExtension(current: Date | undefined, wanted: Date, slackMs: number): boolean {
  return current === undefined || current.getTime() + slackMs < wanted.getTime();
}

/**
 * The store pgdr writes through on a repository under Object Lock: every put of a key that never changes carries its
 * retention. Everything else passes through unchanged.
 */
export function withObjectLock(
  store: ObjectStore,
  layout: RepositoryLayout,
  settings: ObjectLockSettings,
  /** The retention policy, or how to load it: `wal push` loads the policy file (YAML) only when it stores a file. */
  retention: RetentionPolicy | (() => Promise<RetentionPolicy>),
  clock: () => Date = () => new Date(),
): ObjectStore {
  let horizons: Promise<LockHorizons> | undefined;
  const loadHorizons = (): Promise<LockHorizons> =>
    (horizons ??= (typeof retention === 'function' ? retention() : Promise.resolve(retention)).then(lockHorizons));
  return {
    location: store.location,
    async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
      const kind = lockedKind(layout, key);
      if (kind === null || options.retention !== undefined) return store.put(key, body, options);
      return store.put(key, body, { ...options, retention: retentionAtWrite(kind, await loadHorizons(), settings, clock()) });
    },
    get: (key, options) => store.get(key, options),
    getBuffer: (key) => store.getBuffer(key),
    head: (key) => store.head(key),
    list: (prefix, options) => store.list(prefix, options),
    listPrefixes: (prefix) => store.listPrefixes(prefix),
    delete: (keys) => store.delete(keys),
    listPendingWrites: (prefix) => store.listPendingWrites(prefix),
    abortPendingWrite: (write) => store.abortPendingWrite(write),
    close: () => store.close(),
    ...(store.objectLock ? { objectLock: () => store.objectLock!() } : {}),
    ...(store.extendRetention ? { extendRetention: (key: string, r: ObjectRetention) => store.extendRetention!(key, r) } : {}),
  };
}
