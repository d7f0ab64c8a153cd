import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorMessage, UsageError } from '../errors.js';
import { parseTimelineHistory, type TimelineHistory } from '../postgres/timeline-history.js';
import { DEFAULT_WAL_SEGMENT_SIZE, isValidWalSegmentSize, parseWalFileName } from '../postgres/wal-file-name.js';
import { readWalSegmentHeader } from '../postgres/wal-header.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { parseFileList, type FileListEntry } from '../repo/file-list.js';
import type { BackupManifest, BackupObject } from '../repo/manifest.js';
import { chainDependants } from '../retention/chains.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { isSnapshotId, parseEtcdSnapshotManifest, type EtcdSnapshotManifest } from '../etcd/manifest.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { ChecksumStage } from '../stream/checksum.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';
import { ageDecryptBuffer, isAgeEncrypted } from '../stream/age.js';
import { decodeStored } from '../repo/file-list-store.js';
import { parseDrillReport } from './drill-report.js';
import { checkChains, checkFileListParts } from './backup-chains.js';
import { describeBackups, type VerifyNote, type VerifyProblem } from './problems.js';
import { classifyObject, type ManifestState, type RepositoryManifests } from './repository-objects.js';
import { auditRetention, type RetentionAudit } from './retention-audit.js';
import type { RetentionPolicy } from '../config/policy.js';
import { buildWalIndex, checkWalCoverage, type ArchivedWalObject, type WalIndex } from './wal-coverage.js';
import { segmentSizeFromManifests } from './segment-size.js';

export interface VerifyOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** Existence and size only: no object is read. */
  quick: boolean;
  /**
   * The repository receives no WAL of its own (an off-site one for daily fulls): it holds each backup's WAL from its
   * start to its stop, copied there by the backup, and nothing between backups. WAL missing after a backup's stop is
   * then a note; WAL a backup needs to become consistent is still a problem.
   */
  backupRangesOnly?: boolean;
  /** age identity: a full verify then also decrypts encrypted file lists (and a segment's header) to check them. */
  identityFile?: string;
  log: (message: string) => void;
  /** Set when pgdr writes under Object Lock: the policy the retain-until dates are checked against. */
  objectLockRetention?: RetentionPolicy;
}

/** The outcome for one object a backup manifest names. */
export interface ObjectCheck {
  backupId: string;
  name: string;
  key: string;
  status: 'ok' | 'missing' | 'size-mismatch' | 'checksum-mismatch' | 'unreadable';
}

export interface VerifyCounts {
  backups: number;
  invalidBackups: number;
  incompleteBackups: number;
  backupObjects: number;
  bytesHashed: number;
  /** diff and incr backups whose chain was checked (from the manifests, also with --quick). */
  chains: number;
  /** Files-engine file lists read, parsed and matched against their chain (full verify only). */
  fileLists: number;
  walFiles: number;
  walSegmentsNeeded: number;
  walSegmentsMissing: number;
  timelinePaths: number;
  etcdSnapshots: number;
  drillReports: number;
  objectsListed: number;
  foreignObjects: number;
  /** Temp files and multipart uploads never finished (notes, not problems). */
  pendingWrites: number;
}

export interface VerifyReport {
  ok: boolean;
  quick: boolean;
  checked: VerifyCounts;
  problems: VerifyProblem[];
  notes: VerifyNote[];
  objects: ObjectCheck[];
  /** The newest archived segment of the latest timeline path: how far the archive reaches. */
  archiveEnd: { segment: string; archivedAt: string } | null;
  /** Object Lock retain-until dates per backup and of the WAL (only when pgdr writes under Object Lock). */
  retention: RetentionAudit | null;
  timings: VerifyTimings;
}

/** Where the time went, in seconds: on a large repository a full verify should be mostly `backupObjects` (hashing). */
export interface VerifyTimings {
  /** Listing the cluster's namespace. */
  listing: number;
  /** Reading the backup manifests. */
  manifests: number;
  /** Checking the objects the manifests name: sizes, and with a full verify reading and hashing them. */
  backupObjects: number;
  /** Reading .history files and the segment size, and checking every backup's WAL. */
  wal: number;
  /** etcd snapshots (hashed too with a full verify), drill reports, foreign objects. */
  rest: number;
  total: number;
}

/**
 * Reads the whole cluster namespace once and checks it: every object each backup manifest names (size, and
 * sha256 unless quick), the WAL chain of every backup on every timeline path, and that nothing foreign lives
 * there. Each finding becomes a problem record; nothing here throws at the first one, so one run shows all the
 * damage. Storage errors that stop the listing itself are thrown (RepositoryError, exit 3): then nothing could be
 * verified.
 */
export async function verifyRepository(options: VerifyOptions): Promise<VerifyReport> {
  const { store, layout, log } = options;
  const clock = stopwatch();
  // The listing comes first: a backup that commits while verify runs then has its objects already listed, and
  // one that starts later is simply not seen.
  const listing: ObjectInfo[] = [];
  for await (const info of store.list(layout.root)) listing.push(info);
  const byKey = new Map(listing.map((o) => [o.key, o]));
  const listingSeconds = clock.lap();
  const catalog = await readBackupCatalog(store, layout);
  const manifestsSeconds = clock.lap();
  log(
    `verify: ${listing.length} objects under ${store.location}/${layout.root}; ` +
      `${catalog.complete.length} complete backups, ${catalog.incomplete.length} incomplete, ${catalog.invalid.length} invalid`,
  );

  const problems: VerifyProblem[] = [];
  const notes: VerifyNote[] = [];

  for (const invalid of catalog.invalid) {
    problems.push({
      kind: 'invalid-manifest',
      key: layout.backupManifest(invalid.backupId),
      detail: `backup ${invalid.backupId} cannot be restored: ${invalid.problem}`,
      breaks: [invalid.backupId],
    });
  }
  for (const incomplete of catalog.incomplete) {
    notes.push({
      kind: 'incomplete-backup',
      key: layout.backupPrefix(incomplete.backupId),
      detail:
        `backup ${incomplete.backupId} has ${incomplete.objectCount} objects but no manifest (last written ${incomplete.lastModified.toISOString()}): ` +
        'a backup still running, or left by an interrupted one that pgdr expire removes after its grace period',
    });
  }

  // Writes a killed process never finished: invisible to the listing above, so reported from their own.
  let pendingWrites = 0;
  for await (const write of store.listPendingWrites(layout.root)) {
    pendingWrites++;
    notes.push({
      kind: 'pending-write',
      key: write.key,
      detail:
        `${write.key === write.id ? 'a temp file' : 'a multipart upload'} never finished (${write.size === null ? 'size unknown' : `${write.size} bytes`}, ` +
        `${write.key === write.id ? 'last written' : 'started'} ${write.startedAt.toISOString()}): left by an interrupted write, or one still running; pgdr expire removes it after its grace period`,
    });
  }

  // Chains of diff and incr backups: from the manifests alone, so --quick checks them too.
  problems.push(...checkChains(catalog, layout));
  const dependants = chainDependants(catalog.complete);
  const completeById = new Map(catalog.complete.map((m) => [m.backupId, m]));

  // Backup objects. A full verify reads each file list whole (it is small) to check its parts against the chain.
  const objects: ObjectCheck[] = [];
  let bytesHashed = 0;
  let fileLists = 0;
  for (const manifest of catalog.complete) {
    const builtOn = dependants.get(manifest.backupId) ?? [];
    for (const object of manifest.objects) {
      const key = layout.backupObject(manifest.backupId, object.name);
      const sealedList = object.content === 'file-list' && manifest.encryption !== undefined && options.identityFile === undefined;
      const readList = object.content === 'file-list' && !options.quick && !sealedList;
      if (sealedList && !options.quick) {
        notes.push({
          kind: 'encrypted-file-list',
          key,
          detail: `backup ${manifest.backupId}'s file list is encrypted: its sha256 was checked, its parts were not matched against the chain (pass --identity-file for that)`,
        });
      }
      const check = await checkStoredObject(store, key, byKey.get(key), object, options.quick, readList);
      bytesHashed += check.bytesHashed;
      objects.push({ backupId: manifest.backupId, name: object.name, key, status: check.status });
      if (check.failure) {
        const owner = check.status === 'unreadable' ? `backup ${manifest.backupId} could not be checked` : `backup ${manifest.backupId} cannot be restored`;
        const what = check.status === 'missing' ? `its object ${object.name} is missing` : `${object.name} ${check.failure.what}`;
        // Every backup restored from this one is broken with it.
        const also = builtOn.length === 0 ? '' : `; neither can ${describeBackups(builtOn)}, which ${builtOn.length === 1 ? 'builds' : 'build'} on it`;
        problems.push({ kind: check.failure.kind, key, detail: `${owner}: ${what}${also}`, breaks: [manifest.backupId, ...builtOn] });
      } else if (check.data !== undefined) {
        fileLists++;
        const listProblem = await checkFileListObject(manifest, object, key, check.data, completeById, layout, options.identityFile);
        if (listProblem !== undefined) problems.push(listProblem);
      }
    }
  }
  const objectsSeconds = clock.lap();
  log(
    `verify: ${objects.length} backup objects checked${options.quick ? ' (existence and size)' : ` (${bytesHashed} bytes hashed)`} in ${objectsSeconds.toFixed(1)} s`,
  );

  // WAL.
  const wal = await readWalArchive(store, layout, listing, log, options.identityFile, catalog.complete);
  if (wal.segmentSizeNote !== undefined) notes.push(wal.segmentSizeNote);
  problems.push(...wal.problems);
  const coverage = checkWalCoverage(wal.index, catalog.complete, layout);
  for (const problem of coverage.problems) {
    // A gap that only keeps backups from later moments (every such line says "cannot become consistent" when it does more).
    if (options.backupRangesOnly === true && problem.kind === 'missing-wal' && !problem.detail.includes('cannot become consistent')) {
      notes.push({ kind: 'wal-between-backups', key: problem.key, detail: `${problem.detail} (this repository receives no WAL: restore later moments with the WAL of one that does)` });
    } else problems.push(problem);
  }
  const walSeconds = clock.lap();
  log(
    `verify: ${wal.files} WAL files archived; ${coverage.neededSegments} segments needed by the backups, ${coverage.missingSegments} missing (${walSeconds.toFixed(1)} s)`,
  );

  // etcd snapshots, drill reports, then everything nobody names.
  const etcd = await checkEtcdSnapshots(store, layout, listing, byKey, options.quick, problems, notes);
  const etcdSnapshots = etcd.states;
  bytesHashed += etcd.bytesHashed;
  const backups = new Map<string, ManifestState>();
  for (const m of catalog.complete) backups.set(m.backupId, { state: 'complete', objectNames: new Set(m.objects.map((o) => o.name)) });
  for (const b of catalog.invalid) backups.set(b.backupId, { state: 'invalid' });
  for (const b of catalog.incomplete) backups.set(b.backupId, { state: 'incomplete' });
  const manifests: RepositoryManifests = { backups, etcdSnapshots };

  let drillReports = 0;
  let foreignObjects = 0;
  for (const info of listing) {
    const role = classifyObject(info.key, layout, manifests);
    if (role === 'foreign') {
      foreignObjects++;
      problems.push({
        kind: 'foreign-object',
        key: info.key,
        detail: `${info.key} (${info.size} bytes, ${info.lastModified.toISOString()}) is named by no manifest and is not a pgdr WAL, lock or report object`,
        breaks: [],
      });
    } else if (role === 'drill-report') {
      drillReports++;
      const drillId = info.key.slice(layout.drillsPrefix().length, -'.json'.length);
      try {
        parseDrillReport(await store.getBuffer(info.key), drillId);
      } catch (err) {
        problems.push({ kind: 'invalid-drill-report', key: info.key, detail: errorMessage(err), breaks: [] });
      }
    }
  }

  let retention: RetentionAudit | null = null;
  if (options.objectLockRetention !== undefined) {
    retention = await auditRetention(store, layout, catalog.complete, listing, options.objectLockRetention);
    const short = retention.backups.reduce((n, b) => n + b.short, retention.wal.short);
    if (short > 0) {
      const first = retention.shortKeys[0]!;
      notes.push({
        kind: 'retention-short',
        key: first.key,
        detail:
          `${short} object(s) are under Object Lock retention for less than the policy needs, or none (e.g. ${first.key}: ` +
          `${first.retainUntil === null ? 'no retention' : `until ${first.retainUntil}`}, needed until ${first.needed}): written before Object Lock was set, or by another tool`,
      });
    }
  }

  const latest = wal.index.paths[wal.index.paths.length - 1];
  const restSeconds = clock.lap();
  return {
    ok: problems.length === 0,
    quick: options.quick,
    checked: {
      backups: catalog.complete.length,
      invalidBackups: catalog.invalid.length,
      incompleteBackups: catalog.incomplete.length,
      backupObjects: objects.length,
      bytesHashed,
      chains: catalog.complete.filter((m) => (m.chain ?? []).length > 0).length,
      fileLists,
      walFiles: wal.files,
      walSegmentsNeeded: coverage.neededSegments,
      walSegmentsMissing: coverage.missingSegments,
      timelinePaths: wal.index.paths.length,
      etcdSnapshots: [...etcdSnapshots.values()].filter((s) => s.state === 'complete').length,
      drillReports,
      objectsListed: listing.length,
      foreignObjects,
      pendingWrites,
    },
    problems,
    notes,
    objects,
    archiveEnd: latest?.end ? { segment: latest.end.segment, archivedAt: latest.end.archivedAt.toISOString() } : null,
    retention,
    timings: {
      listing: listingSeconds,
      manifests: manifestsSeconds,
      backupObjects: objectsSeconds,
      wal: walSeconds,
      rest: restSeconds,
      total: clock.total(),
    },
  };
}

function stopwatch(): { lap(): number; total(): number } {
  const began = performance.now();
  let last = began;
  const seconds = (ms: number) => Math.round(ms) / 1000;
  return {
    lap() {
      const now = performance.now();
      const lap = seconds(now - last);
      last = now;
      return lap;
    },
    total: () => seconds(performance.now() - began),
  };
}

interface ObjectOutcome {
  status: ObjectCheck['status'];
  /** What is wrong, completing "<owner> cannot be restored: <name> ..." */
  failure?: { kind: VerifyProblem['kind']; what: string };
  bytesHashed: number;
  /** The stored bytes, when asked for and they passed. */
  data?: Buffer;
}

/**
 * Existence and size from the listing, then (unless quick) the sha256 of the stored bytes, streamed; `keep` also
 * returns the bytes (for a small object read anyway, such as a file list, so that it is not read twice).
 */
async function checkStoredObject(
  store: ObjectStore,
  key: string,
  listed: ObjectInfo | undefined,
  expected: { storedBytes: number; sha256: string },
  quick: boolean,
  keep = false,
): Promise<ObjectOutcome> {
  try {
    // The listing was taken before the manifests were read; an object missing from it is looked up once more.
    const info = listed ?? (await store.head(key));
    if (info === null) return { status: 'missing', bytesHashed: 0, failure: { kind: 'missing-object', what: 'is missing' } };
    if (info.size !== expected.storedBytes) {
      return {
        status: 'size-mismatch',
        bytesHashed: 0,
        failure: { kind: 'size-mismatch', what: `has ${info.size} bytes, the manifest says ${expected.storedBytes}` },
      };
    }
    if (quick) return { status: 'ok', bytesHashed: 0 };
    const checksum = new ChecksumStage();
    const chunks: Buffer[] = [];
    await pipeline(
      await store.get(key),
      checksum,
      new Writable({
        write: (chunk: Buffer, _encoding, done) => {
          if (keep) chunks.push(chunk);
          done();
        },
      }),
    );
    if (checksum.sha256 !== expected.sha256) {
      return {
        status: 'checksum-mismatch',
        bytesHashed: checksum.bytes,
        failure: {
          kind: 'checksum-mismatch',
          what: `fails its checksum (sha256 ${checksum.sha256.slice(0, 16)}…, the manifest says ${expected.sha256.slice(0, 16)}…)`,
        },
      };
    }
    return { status: 'ok', bytesHashed: checksum.bytes, ...(keep ? { data: Buffer.concat(chunks) } : {}) };
  } catch (err) {
    return { status: 'unreadable', bytesHashed: 0, failure: { kind: 'unreadable-object', what: `could not be read: ${errorMessage(err)}` } };
  }
}

/** A file list that passed its checksum: decompressed, parsed, and its parts matched against the chain. */
async function checkFileListObject(
  manifest: BackupManifest,
  object: BackupObject,
  key: string,
  stored: Buffer,
  complete: ReadonlyMap<string, BackupManifest>,
  layout: RepositoryLayout,
  identityFile: string | undefined,
): Promise<VerifyProblem | undefined> {
  let entries: FileListEntry[];
  try {
    const frames = await decodeStored(stored, manifest, identityFile, `backup ${manifest.backupId} file list`);
    entries = parseFileList((await zstdDecompressBuffer(frames)).toString('utf8'), `backup ${manifest.backupId} file list`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    return { kind: 'invalid-file-list', key, detail: `backup ${manifest.backupId} cannot be restored: its file list ${object.name} cannot be read: ${errorMessage(err)}`, breaks: [manifest.backupId] };
  }
  return checkFileListParts(manifest, entries, complete, layout);
}

export interface WalArchive {
  index: WalIndex;
  /** WAL files (segments, .partial, .backup, .history) stored where wal fetch looks for them. */
  files: number;
  /** History files that could not be read. */
  problems: VerifyProblem[];
  /** Set when the segment size was assumed rather than read. */
  segmentSizeNote?: VerifyNote;
}

/**
 * Lists wal/ (or takes the lines of a listing made already), reads every .history file and the segment size, and
 * indexes what is archived: what both verify and drill judge WAL continuity from.
 */
export async function readWalArchive(
  store: ObjectStore,
  layout: RepositoryLayout,
  listing: readonly ObjectInfo[] | undefined,
  log: (message: string) => void,
  identityFile?: string,
  /** The complete backups' manifests: they may tell the segment size when the newest segment is encrypted. */
  manifests: readonly BackupManifest[] = [],
): Promise<WalArchive> {
  const prefix = layout.walPrefix();
  let objects = listing;
  if (objects === undefined) {
    const listed: ObjectInfo[] = [];
    for await (const info of store.list(prefix)) listed.push(info);
    objects = listed;
  }
  const problems: VerifyProblem[] = [];
  const files: (ArchivedWalObject & { key: string })[] = [];
  for (const info of objects) {
    if (!info.key.startsWith(prefix) || !info.key.endsWith('.zst')) continue;
    const name = info.key.slice(info.key.lastIndexOf('/') + 1, -'.zst'.length);
    // Only files where wal fetch would look for them (layout.walObject) take part in the chain.
    if (layout.walObject(name) !== info.key) continue;
    try {
      parseWalFileName(name);
    } catch {
      continue;
    }
    files.push({ name, lastModified: info.lastModified, key: info.key });
  }

  const histories = new Map<number, TimelineHistory>();
  const unreadableHistories = new Set<number>();
  for (const file of files) {
    if (!file.name.endsWith('.history')) continue;
    const timeline = parseInt(file.name.slice(0, 8), 16);
    try {
      const text = (await zstdDecompressBuffer(await store.getBuffer(file.key))).toString('utf8');
      histories.set(timeline, parseTimelineHistory(timeline, text));
    } catch (err) {
      unreadableHistories.add(timeline);
      problems.push({
        kind: 'invalid-history',
        key: file.key,
        detail: `${file.name} cannot be read, so recovery cannot follow timeline ${timeline}: ${errorMessage(err)}`,
        breaks: [],
      });
    }
  }

  const segmentSize = await readSegmentSize(store, files, log, identityFile, manifests);
  return {
    index: buildWalIndex({ files, histories, unreadableHistories, segmentSize: segmentSize.bytes }),
    files: files.length,
    problems,
    ...(segmentSize.note === undefined ? {} : { segmentSizeNote: segmentSize.note }),
  };
}

/**
 * The cluster's WAL segment size (segment names mean different positions at different sizes): from the page header
 * of the newest archived segment when it is plain; else from the backup manifests (src/verify/segment-size.ts);
 * else from the header decrypted with the identity. 16 MiB, PostgreSQL's default, when nothing tells, with a note
 * saying so: then WAL gaps are judged on an assumption.
 */
async function readSegmentSize(
  store: ObjectStore,
  files: readonly (ArchivedWalObject & { key: string })[],
  log: (message: string) => void,
  identityFile: string | undefined,
  manifests: readonly BackupManifest[],
): Promise<{ bytes: number; note?: VerifyNote }> {
  // The greatest name, timeline first: one pass, not a sort of the whole archive.
  let newest: (ArchivedWalObject & { key: string }) | undefined;
  for (const f of files) if (/^[0-9A-F]{24}$/.test(f.name) && (newest === undefined || f.name > newest.name)) newest = f;
  if (!newest) return { bytes: DEFAULT_WAL_SEGMENT_SIZE };
  const assumed = (why: string): { bytes: number; note: VerifyNote } => {
    log(`verify: ${why}; assuming 16 MiB WAL segments`);
    return {
      bytes: DEFAULT_WAL_SEGMENT_SIZE,
      note: {
        kind: 'wal-segment-size-assumed',
        key: newest.key,
        detail: `the WAL segment size could not be read (${why}): WAL was checked assuming 16 MiB segments, PostgreSQL's default; on a cluster with another wal_segment_size, pass --identity-file`,
      },
    };
  };
  let stored: Buffer;
  try {
    stored = await store.getBuffer(newest.key);
  } catch (err) {
    return assumed(`cannot read ${newest.name}: ${errorMessage(err)}`);
  }
  if (isAgeEncrypted(stored)) {
    const told = segmentSizeFromManifests(manifests);
    if (told !== undefined) {
      log(`verify: ${newest.name} is encrypted; WAL segments are ${told.bytes / (1024 * 1024)} MiB (${told.how})`);
      return { bytes: told.bytes };
    }
    if (identityFile === undefined) return assumed(`${newest.name} is encrypted, no identity was given, and no backup manifest records the size`);
    try {
      stored = await ageDecryptBuffer(stored, identityFile, `WAL file ${newest.name}`);
    } catch (err) {
      return assumed(`${newest.name} does not decrypt: ${errorMessage(err)}`);
    }
  }
  try {
    const header = readWalSegmentHeader(await zstdDecompressBuffer(stored));
    if (header && isValidWalSegmentSize(header.segmentSize)) return { bytes: header.segmentSize };
    return assumed(`${newest.name} has no readable WAL page header`);
  } catch (err) {
    return assumed(`${newest.name} does not decompress: ${errorMessage(err)}`);
  }
}

/**
 * etcd snapshot manifests, and the snapshot object each names (size, and sha256 unless quick). A snapshot is not
 * a backup of PostgreSQL, so its problems break no backup id.
 */
async function checkEtcdSnapshots(
  store: ObjectStore,
  layout: RepositoryLayout,
  listing: readonly ObjectInfo[],
  byKey: ReadonlyMap<string, ObjectInfo>,
  quick: boolean,
  problems: VerifyProblem[],
  notes: VerifyNote[],
): Promise<{ states: Map<string, ManifestState>; bytesHashed: number }> {
  const prefix = layout.etcdPrefix();
  const groups = new Map<string, string[]>();
  for (const info of listing) {
    if (!info.key.startsWith(prefix)) continue;
    const rest = info.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0 || !isSnapshotId(rest.slice(0, slash))) continue;
    const names = groups.get(rest.slice(0, slash)) ?? [];
    names.push(rest.slice(slash + 1));
    groups.set(rest.slice(0, slash), names);
  }
  const states = new Map<string, ManifestState>();
  let bytesHashed = 0;
  for (const [snapshotId, names] of groups) {
    if (!names.includes('manifest.json')) {
      states.set(snapshotId, { state: 'incomplete' });
      notes.push({
        kind: 'incomplete-etcd-snapshot',
        key: layout.etcdSnapshotPrefix(snapshotId),
        detail: `etcd snapshot ${snapshotId} has ${names.length} objects but no manifest: a snapshot still running, or left by an interrupted one`,
      });
      continue;
    }
    const key = layout.etcdSnapshotManifest(snapshotId);
    let manifest: EtcdSnapshotManifest;
    try {
      manifest = parseEtcdSnapshotManifest(await store.getBuffer(key), { snapshotId, cluster: layout.cluster });
    } catch (err) {
      states.set(snapshotId, { state: 'invalid' });
      problems.push({ kind: 'invalid-etcd-manifest', key, detail: `etcd snapshot ${snapshotId} cannot be restored: ${errorMessage(err)}`, breaks: [] });
      continue;
    }
    states.set(snapshotId, { state: 'complete', objectNames: new Set([manifest.object]) });
    const objectKey = layout.etcdSnapshotObject(snapshotId, manifest.object);
    const outcome = await checkStoredObject(store, objectKey, byKey.get(objectKey), { storedBytes: manifest.storedBytes, sha256: manifest.sha256 }, quick);
    bytesHashed += outcome.bytesHashed;
    if (outcome.failure) {
      problems.push({ kind: outcome.failure.kind, key: objectKey, detail: `etcd snapshot ${snapshotId} cannot be restored: ${manifest.object} ${outcome.failure.what}`, breaks: [] });
    }
  }
  return { states, bytesHashed };
}

/** One line per problem, for people: the kind, then the sentence saying what it breaks. */
export function formatVerifyReport(report: VerifyReport): string {
  const c = report.checked;
  const lines = [
    `checked ${c.backups} backups (${c.backupObjects} objects, ${report.quick ? 'existence and size only' : `${c.bytesHashed} bytes hashed`}), ` +
      `${c.walFiles} WAL files on ${c.timelinePaths} timeline paths (${c.walSegmentsNeeded} segments needed), ` +
      `${c.etcdSnapshots} etcd snapshots, ${c.drillReports} drill reports, ${c.objectsListed} objects in all` +
      (c.chains > 0 || c.fileLists > 0 ? `; ${c.chains} backup chains${report.quick ? '' : `, ${c.fileLists} file lists read`}` : ''),
  ];
  if (report.archiveEnd) lines.push(`archive reaches ${report.archiveEnd.segment} (archived ${report.archiveEnd.archivedAt})`);
  if (report.retention !== null) {
    const range = (r: { earliest: string | null; latest: string | null }) => (r.earliest === null ? 'no retention' : `retained ${r.earliest} .. ${r.latest}`);
    for (const b of report.retention.backups) lines.push(`Object Lock: backup ${b.backupId}: ${b.objects} objects ${range(b)}${b.short > 0 ? `, ${b.short} short` : ''}`);
    const w = report.retention.wal;
    lines.push(`Object Lock: WAL: ${w.objects} files ${range(w)}${w.short > 0 ? `, ${w.short} short` : ''}`);
  }
  for (const note of report.notes) lines.push(`note: ${note.detail}`);
  for (const problem of report.problems) lines.push(`${problem.kind}: ${problem.detail}`);
  lines.push(report.ok ? 'verify: OK, no problems found' : `verify: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found`);
  return lines.join('\n');
}

