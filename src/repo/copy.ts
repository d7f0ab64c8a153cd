import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import { RepositoryError, VerificationError } from '../errors.js';
import { readEtcdSnapshots } from '../etcd/catalog.js';
import { parseWalFileName } from '../postgres/wal-file-name.js';
import { failpoint } from '../process/failpoint.js';
import { readWalSegmentHeader } from '../postgres/wal-header.js';
import { ObjectExistsError, ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../storage/object-store.js';
import { isAgeEncrypted } from '../stream/age-buffer.js';
import { ChecksumStage, sha256Hex } from '../stream/checksum.js';
import { zstdDecompressBuffer } from '../stream/zstd-buffer.js';
import { readBackupCatalog } from './catalog.js';
import { checkSameCluster, parseClusterInfo, type ClusterInfo } from './cluster-info.js';
import { mapConcurrently } from './concurrent-reads.js';
import type { RepositoryLayout } from './layout.js';

/**
 * `pgdr copy --from A --to B`: brings repository B up to date with A, copying the stored bytes as they are (an
 * encrypted object stays encrypted; no key is needed). The same rules as a backup keep B safe to read at any moment:
 *
 * - cluster.json first: a B that belongs to another PostgreSQL system is refused before anything is written;
 * - WAL before the backups that need it, each file checked on the way (its zstd frame decodes, a segment's header
 *   names the same system) and written with If-None-Match; a name B holds with other content is reported, never
 *   replaced;
 * - a backup's or etcd snapshot's objects first, each hashed while it streams and compared with the sha256 its
 *   manifest records (a mismatch removes the copy and fails), and the manifest last: a backup appears in B only
 *   complete, so a copy killed at any moment leaves B with garbage at worst, which the next run completes;
 * - what B already holds (same key, same size; for an object of a backup B has no manifest for yet, its sha256 too)
 *   is skipped, so a second run copies nothing.
 */
export interface CopyOptions {
  from: ObjectStore;
  to: ObjectStore;
  layout: RepositoryLayout;
  /** Objects copied at once. */
  concurrency?: number;
  /** Bytes copied so far, and the total once known. */
  progress?: { setTotal(bytes: number): void; update(bytes: number): void };
  log: (message: string) => void;
}

export interface CopyReport {
  copied: number;
  skipped: number;
  bytes: number;
  backups: { copied: number; skipped: number };
  walFiles: { copied: number; skipped: number };
  etcdSnapshots: { copied: number; skipped: number };
}

interface Conflict {
  key: string;
  problem: string;
}

export async function copyRepository(options: CopyOptions): Promise<CopyReport> {
  const { from, to, layout } = options;
  const concurrency = options.concurrency ?? 4;
  const report: CopyReport = { copied: 0, skipped: 0, bytes: 0, backups: { copied: 0, skipped: 0 }, walFiles: { copied: 0, skipped: 0 }, etcdSnapshots: { copied: 0, skipped: 0 } };
  const conflicts: Conflict[] = [];

  // What B holds, listed once: the listing is what "already there" is decided from.
  const held = new Map<string, ObjectInfo>();
  for await (const info of to.list(layout.root)) held.set(info.key, info);
  const source: ObjectInfo[] = [];
  for await (const info of from.list(layout.root)) source.push(info);

  const info = await copyClusterInfo(options, held, report);
  if (info === null && source.length === 0) return report;

  const walPrefix = layout.walPrefix();
  const wal = source.filter((o) => o.key.startsWith(walPrefix));
  const pending = (o: ObjectInfo) => held.get(o.key)?.size !== o.size;
  const walToCopy = wal.filter(pending);
  // Backups and snapshots complete in A; in B, those without a manifest yet.
  const backups = (await readBackupCatalog(from, layout)).complete;
  const snapshots = (await readEtcdSnapshots(from, layout)).complete;
  const sizeOf = (prefix: string) => source.filter((o) => o.key.startsWith(prefix) && pending(o)).reduce((n, o) => n + o.size, 0);
  options.progress?.setTotal(
    walToCopy.reduce((n, o) => n + o.size, 0) +
      backups.filter((b) => !held.has(layout.backupManifest(b.backupId))).reduce((n, b) => n + sizeOf(layout.backupPrefix(b.backupId)), 0) +
      snapshots.filter((s) => !held.has(layout.etcdSnapshotManifest(s.snapshotId))).reduce((n, s) => n + sizeOf(layout.etcdSnapshotPrefix(s.snapshotId)), 0),
  );
  const counted = (bytes: number) => {
    report.bytes += bytes;
    options.progress?.update(report.bytes);
  };

  // WAL first, history files before segments (as PostgreSQL archives them), so that every backup B gets can reach
  // its consistent point from B alone.
  const byArchiveOrder = (a: ObjectInfo, b: ObjectInfo) => Number(!a.key.endsWith('.history.zst')) - Number(!b.key.endsWith('.history.zst')) || (a.key < b.key ? -1 : 1);
  report.walFiles.skipped = wal.length - walToCopy.length;
  await mapConcurrently([...walToCopy].sort(byArchiveOrder), concurrency, async (object) => {
    const outcome = await copyWalFile(options, object, info, held.get(object.key), conflicts);
    if (outcome === 'copied') {
      report.walFiles.copied++;
      counted(object.size);
    } else report.walFiles.skipped++;
  });

  // Backups and etcd snapshots alike: their objects checked against the manifest, the manifest written last.
  const committed = [
    ...backups.map((manifest) => ({
      tally: report.backups,
      what: `backup ${manifest.backupId}`,
      prefix: layout.backupPrefix(manifest.backupId),
      manifestKey: layout.backupManifest(manifest.backupId),
      recorded: new Map(manifest.objects.map((o) => [layout.backupObject(manifest.backupId, o.name), { size: o.storedBytes, sha256: o.sha256 }])),
    })),
    ...snapshots.map((snapshot) => ({
      tally: report.etcdSnapshots,
      what: `etcd snapshot ${snapshot.snapshotId}`,
      prefix: layout.etcdSnapshotPrefix(snapshot.snapshotId),
      manifestKey: layout.etcdSnapshotManifest(snapshot.snapshotId),
      recorded: new Map([[layout.etcdSnapshotObject(snapshot.snapshotId, snapshot.object), { size: snapshot.storedBytes, sha256: snapshot.sha256 }]]),
    })),
  ];
  for (const { tally, ...item } of committed) {
    const done = await copyCommitted(options, { ...item, source, held, conflicts, counted, report, concurrency });
    if (done === 'copied') tally.copied++;
    else if (done === 'skipped') tally.skipped++;
  }

  // Restore points (recovery targets by name) and drill reports: small objects written once.
  for (const prefix of [layout.restorePointsPrefix(), layout.drillsPrefix()]) {
    for (const object of source.filter((o) => o.key.startsWith(prefix))) {
      if (held.get(object.key)?.size === object.size) {
        report.skipped++;
        continue;
      }
      const data = await from.getBuffer(object.key);
      try {
        await to.put(object.key, { kind: 'buffer', data }, { ifNoneMatch: true });
        report.copied++;
        counted(data.length);
      } catch (err) {
        if (!(err instanceof ObjectExistsError)) throw err;
        if ((await to.getBuffer(object.key)).equals(data)) report.skipped++;
        else conflicts.push({ key: object.key, problem: 'holds different content' });
      }
    }
  }

  report.copied += report.walFiles.copied;
  report.skipped += report.walFiles.skipped;
  if (conflicts.length > 0) {
    for (const c of conflicts) options.log(`${to.location}: ${c.key} ${c.problem}; left as it is`);
    throw new RepositoryError(
      `${to.location} holds ${conflicts.length} object${conflicts.length === 1 ? '' : 's'} that differ from ${from.location} under the same name (first: ${conflicts[0]!.key}); nothing was overwritten`,
      'two servers may archive into one of them under the same --cluster; compare the two (pgdr verify --repo each) before copying again',
    );
  }
  return report;
}

/** cluster.json: B's must name the same system; a B without one gets A's, byte for byte. */
async function copyClusterInfo(options: CopyOptions, held: Map<string, ObjectInfo>, report: CopyReport): Promise<ClusterInfo | null> {
  const { from, to, layout } = options;
  const key = layout.clusterInfo();
  let raw: Buffer;
  try {
    raw = await from.getBuffer(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    throw err;
  }
  const info = parseClusterInfo(raw, `${from.location}/${key}`);
  const check = async () => {
    const theirs = parseClusterInfo(await to.getBuffer(key), `${to.location}/${key}`);
    checkSameCluster(theirs, info.systemIdentifier, to.location, layout.cluster);
    report.skipped++;
  };
  if (held.has(key)) {
    await check();
    return info;
  }
  try {
    await to.put(key, { kind: 'buffer', data: raw }, { ifNoneMatch: true });
    report.copied++;
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    await check();
  }
  return info;
}

/** One WAL file: checked (its frame decodes, a segment names A's system), then written if B lacks the name. */
async function copyWalFile(options: CopyOptions, object: ObjectInfo, info: ClusterInfo | null, theirs: ObjectInfo | undefined, conflicts: Conflict[]): Promise<'copied' | 'skipped'> {
  const { from, to } = options;
  const data = await from.getBuffer(object.key);
  if (data.length !== object.size) throw new VerificationError(`${from.location}: ${object.key} read back ${data.length} bytes, listed ${object.size}`, 'the source changed during the copy; run pgdr copy again');
  const content = await walContent(data, object.key, from.location);
  if (content !== undefined && info !== null) checkSegment(content, object.key, info, from.location);
  if (theirs === undefined) {
    try {
      await to.put(object.key, { kind: 'buffer', data }, { ifNoneMatch: true });
      return 'copied';
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
    }
  }
  // B has the name with another size (another compression level, say): the same WAL is success, other WAL a conflict.
  const stored = await to.getBuffer(object.key);
  if (stored.equals(data)) return 'skipped';
  const storedContent = content === undefined ? undefined : await walContent(stored, object.key, to.location).catch(() => undefined);
  if (content !== undefined && storedContent !== undefined && sha256Hex(storedContent) === sha256Hex(content)) return 'skipped';
  conflicts.push({ key: object.key, problem: 'holds a different WAL file under this name' });
  return 'skipped';
}

/** The decompressed WAL file, or undefined for an object pgdr cannot read without a key (an encrypted one). */
async function walContent(data: Buffer, key: string, location: string): Promise<Buffer | undefined> {
  // Copied as stored; its age AEAD is checked by whoever decrypts it, and its sha256 is nowhere recorded.
  if (!key.endsWith('.zst') || isAgeEncrypted(data)) return undefined;
  try {
    return await zstdDecompressBuffer(data);
  } catch (err) {
    throw new VerificationError(`${location}: WAL object ${key} does not decompress: ${(err as Error).message}`, 'the copy in the source is damaged: run pgdr verify on it', err);
  }
}

function checkSegment(content: Buffer, key: string, info: ClusterInfo, location: string): void {
  const name = key.slice(key.lastIndexOf('/') + 1).replace(/\.zst$/, '');
  let kind: string;
  try {
    kind = parseWalFileName(name).kind;
  } catch {
    return;
  }
  if (kind !== 'segment' && kind !== 'partial') return;
  const header = readWalSegmentHeader(content.subarray(0, 64));
  if (header === null || header.systemIdentifier !== info.systemIdentifier) {
    throw new VerificationError(
      `${location}: WAL object ${key} ${header === null ? 'has no WAL page header' : `belongs to PostgreSQL system ${header.systemIdentifier}, not ${info.systemIdentifier}`}`,
      'the source holds a foreign or damaged WAL file: run pgdr verify on it',
    );
  }
}

interface Committed {
  what: string;
  prefix: string;
  manifestKey: string;
  /** The objects the manifest names, with the size and sha256 it records. */
  recorded: Map<string, { size: number; sha256: string }>;
  source: readonly ObjectInfo[];
  held: Map<string, ObjectInfo>;
  conflicts: Conflict[];
  counted: (bytes: number) => void;
  report: CopyReport;
  concurrency: number;
}

/** A backup or an etcd snapshot: its objects, each verified against its manifest, then the manifest. */
async function copyCommitted(options: CopyOptions, c: Committed): Promise<'copied' | 'skipped' | 'conflict'> {
  const { from, to } = options;
  const manifest = await from.getBuffer(c.manifestKey);
  const objects = c.source.filter((o) => o.key.startsWith(c.prefix) && o.key !== c.manifestKey);
  if (c.held.has(c.manifestKey)) {
    if ((await to.getBuffer(c.manifestKey)).equals(manifest)) {
      c.report.skipped += objects.length + 1;
      return 'skipped';
    }
    c.conflicts.push({ key: c.manifestKey, problem: `is another ${c.what} under the same id` });
    return 'conflict';
  }
  for (const [key, recorded] of c.recorded) {
    if (!objects.some((o) => o.key === key)) throw new RepositoryError(`${from.location}: ${c.what} names ${key}, which is not there`, 'run pgdr verify on the source');
    if (objects.find((o) => o.key === key)!.size !== recorded.size) {
      throw new VerificationError(`${from.location}: ${key} is not the size its manifest records (${recorded.size} bytes)`, 'run pgdr verify on the source');
    }
  }
  options.log(`copying ${c.what} (${objects.length} object${objects.length === 1 ? '' : 's'})`);
  await mapConcurrently(objects, c.concurrency, async (object) => {
    const recorded = c.recorded.get(object.key);
    const theirs = c.held.get(object.key);
    // Left by a copy that was stopped: kept if it is what the manifest records, else written again (no manifest
    // in B names it yet, so nothing reads it).
    if (theirs !== undefined && theirs.size === object.size && (recorded === undefined || (await sha256Of(to, object.key)) === recorded.sha256)) {
      c.report.skipped++;
      return;
    }
    await copyObject(options, object, recorded, c.counted);
    c.report.copied++;
  });
  // The fault suite kills a copy here: every object is in B, the manifest is not, and B must show no such backup.
  await failpoint('copy:before-manifest', c.manifestKey);
  try {
    await to.put(c.manifestKey, { kind: 'buffer', data: manifest }, { ifNoneMatch: true });
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    if (!(await to.getBuffer(c.manifestKey)).equals(manifest)) {
      c.conflicts.push({ key: c.manifestKey, problem: `is another ${c.what} under the same id` });
      return 'conflict';
    }
  }
  c.report.copied++;
  return 'copied';
}

async function sha256Of(store: ObjectStore, key: string): Promise<string> {
  const checksum = new ChecksumStage();
  await pipeline(await store.get(key), checksum, new PassThrough().resume());
  return checksum.sha256;
}

/** Streams one object from A to B, hashing it on the way; a copy that is not what the manifest records is removed. */
async function copyObject(options: CopyOptions, object: ObjectInfo, recorded: { size: number; sha256: string } | undefined, counted: (bytes: number) => void): Promise<void> {
  const { from, to } = options;
  const checksum = new ChecksumStage();
  const body = await from.get(object.key);
  body.on('error', (err) => checksum.destroy(err));
  let sent = 0;
  await to.put(
    object.key,
    { kind: 'stream', open: () => body.pipe(checksum), oneShot: true },
    {
      expectedBytes: object.size,
      onProgress: (bytes) => {
        counted(bytes - sent);
        sent = bytes;
      },
    },
  );
  if (sent < checksum.bytes) counted(checksum.bytes - sent);
  if (recorded !== undefined && (checksum.bytes !== recorded.size || checksum.sha256 !== recorded.sha256)) {
    await to.delete([object.key]);
    throw new VerificationError(
      `${from.location}: ${object.key} is not what its manifest records (read ${checksum.bytes} bytes, sha256 ${checksum.sha256}); its copy was removed`,
      'the source object is damaged: run pgdr verify on the source; this backup cannot be copied',
    );
  }
}
