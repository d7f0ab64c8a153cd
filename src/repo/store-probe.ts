import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RepositoryError } from '../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import { PGDR_VERSION } from '../version.js';
import type { RepositoryLayout } from './layout.js';
import { anyString, checkRecord, oneOf, utcTimestamp } from './record-fields.js';

/**
 * Whether the store honours conditional writes (S3 If-None-Match: *; link() in a local directory). pgdr's locks,
 * cluster.json and WAL's never-overwrite rest on it, and S3-compatible stores differ: Cloudflare R2 honours it,
 * Backblaze B2 does not document it, and an older server that ignores the header answers 200 and replaces the object.
 * So pgdr asks the store itself: a conditional write of a fresh key, then a second one, which must be refused.
 * The answer is recorded in the repository with its time (<cluster>/state/store-probe.json) and asked again once
 * it is older than the probe interval, so a store that changes (a migration, a proxy in front) is noticed.
 */
export type ConditionalWrites = 'honoured' | 'ignored';

export interface StoreProbeRecord {
  format: 1;
  conditionalWrites: ConditionalWrites;
  probedAt: string;
  /** The store as pgdr named it when probing, endpoint included (secrets redacted): a record for another is not trusted. */
  location: string;
  pgdrVersion: string;
}

/** Read by every `wal push` (from the spool's copy), so checked field by field (src/repo/record-fields.ts). */
const STORE_PROBE_FIELDS = {
  format: oneOf(1),
  conditionalWrites: oneOf('honoured', 'ignored'),
  probedAt: utcTimestamp,
  location: anyString,
  pgdrVersion: anyString,
};

/** The default time after which the record is probed again. */
export const DEFAULT_PROBE_INTERVAL_MS = 24 * 3_600_000;

/** Writes a fresh key twice with If-None-Match; the second write must be refused. Removes the key afterwards. */
export async function probeConditionalWrites(store: ObjectStore, layout: RepositoryLayout, now: Date = new Date(), identity: string = store.location): Promise<StoreProbeRecord> {
  const key = layout.probeScratch(randomUUID());
  let conditionalWrites: ConditionalWrites;
  try {
    await store.put(key, { kind: 'buffer', data: Buffer.from('first\n') }, { ifNoneMatch: true });
    try {
      await store.put(key, { kind: 'buffer', data: Buffer.from('second\n') }, { ifNoneMatch: true });
      conditionalWrites = 'ignored';
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      conditionalWrites = 'honoured';
    }
  } finally {
    await store.delete([key]).catch(() => undefined);
  }
  const record: StoreProbeRecord = { format: 1, conditionalWrites, probedAt: now.toISOString(), location: identity, pgdrVersion: PGDR_VERSION };
  await store.put(layout.storeProbe(), { kind: 'buffer', data: Buffer.from(`${JSON.stringify(record, null, 2)}\n`) });
  return record;
}

export async function readStoreProbe(store: ObjectStore, layout: RepositoryLayout): Promise<StoreProbeRecord | null> {
  let raw: Buffer;
  try {
    raw = await store.getBuffer(layout.storeProbe());
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
  return parseStoreProbe(raw);
}

export function parseStoreProbe(raw: Buffer | string): StoreProbeRecord | null {
  try {
    const checked = checkRecord<StoreProbeRecord>(JSON.parse(raw.toString()), STORE_PROBE_FIELDS);
    return checked.ok ? checked.value : null;
  } catch {
    return null;
  }
}

export interface ProbeOptions {
  /**
   * What identifies the store beyond its location: the S3 endpoint. The same bucket reached through another endpoint
   * (a proxy, a migration) is another store as far as conditional writes go.
   */
  identity?: string;
  /** Probe again once the record is older than this. */
  intervalMs: number;
  now?: Date;
  /**
   * A local copy of the record (the WAL spool): archive_command runs once per segment and should not read the
   * repository for this each time. Never trusted for longer than the interval either.
   */
  cacheFile?: string;
  log?: (message: string) => void;
}

/** The store's answer, from the cache, the repository's record, or a new probe: whichever is fresh first. */
export async function conditionalWriteSupport(store: ObjectStore, layout: RepositoryLayout, options: ProbeOptions): Promise<StoreProbeRecord> {
  const now = options.now ?? new Date();
  const identity = options.identity ?? store.location;
  const fresh = (record: StoreProbeRecord | null): record is StoreProbeRecord =>
    record !== null && record.location === identity && now.getTime() - Date.parse(record.probedAt) < options.intervalMs && Date.parse(record.probedAt) <= now.getTime() + 60_000;
  const cached = options.cacheFile === undefined ? null : readCache(options.cacheFile);
  if (fresh(cached)) return cached;
  let record = await readStoreProbe(store, layout);
  if (!fresh(record)) {
    record = await probeConditionalWrites(store, layout, now, identity);
    options.log?.(`probed ${identity}: it ${record.conditionalWrites === 'honoured' ? 'honours' : 'IGNORES'} conditional writes (If-None-Match)`);
  }
  if (options.cacheFile !== undefined) writeCache(options.cacheFile, record);
  return record;
}

function readCache(path: string): StoreProbeRecord | null {
  try {
    return parseStoreProbe(readFileSync(path));
  } catch {
    return null;
  }
}

function writeCache(path: string, record: StoreProbeRecord): void {
  try {
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
    const temp = `${path}.tmp-${process.pid}`;
    writeFileSync(temp, JSON.stringify(record), { mode: 0o600 });
    renameSync(temp, path);
  } catch {
    // a cache that cannot be written only costs a read of the repository next time
  }
}

/** The refusal for a command that needs a lock on a store that ignores conditional writes. */
export function unsafeStoreError(record: StoreProbeRecord, what: string): RepositoryError {
  return new RepositoryError(
    `${record.location} ignores conditional writes (If-None-Match, probed ${record.probedAt}), so ${what}`,
    'configure etcd (--etcd or PGDR_ETCD) and pgdr takes its locks there, or, if only one pgdr ever writes to this repository, accept the risk with --accept-unconditional-writes (PGDR_ACCEPT_UNCONDITIONAL_WRITES=1)',
  );
}
