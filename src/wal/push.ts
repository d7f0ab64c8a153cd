import { constants, createReadStream, existsSync } from 'node:fs';
import { access, open, readdir } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { RepositoryError, UsageError } from '../errors.js';
import { parseWalFileName } from '../postgres/wal-file-name.js';
import { readWalSegmentHeader } from '../postgres/wal-header.js';
import { checkSameCluster, ensureClusterInfo, readClusterInfo, type ClusterInfo } from '../repo/cluster-info.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { ObjectExistsError, type ObjectStore } from '../storage/object-store.js';
import { ChecksumStage, sha256Hex } from '../stream/checksum.js';
import type { RunningCommand } from '../process/run-command.js';
import { ageDecryptBuffer, isAgeEncrypted } from '../stream/age-buffer.js';
import { zstdDecompressBuffer } from '../stream/zstd-buffer.js';
import { startWalEncoding, walEncryptTo } from './encoding.js';
import { failpoint } from '../process/failpoint.js';
import {
  claimOwner,
  forgetStoredAttempt,
  markedFiles,
  readMarker,
  readPartialPush,
  readStoredRecord,
  recordStoredAttempt,
  releaseClaim,
  removeMarker,
  removePartialPush,
  storedRecordPath,
  sweepMarkers,
  tryClaim,
  writeMarker,
  writePartialPush,
  type SpoolMarker,
} from './spool.js';

/** One repository `wal push` stores into. */
export interface WalPushTarget {
  store: ObjectStore;
  /** What spool records name it by: its URL and endpoint (a name may later mean another store). */
  id: string;
  /** How messages name it: the repository's name, or its URL. */
  label: string;
  /**
   * The store ignores If-None-Match (src/repo/store-probe.ts): a conditional put would silently replace, so pgdr
   * looks before it writes and reads back after.
   */
  storeIgnoresConditions?: boolean;
  /** The repository's own age recipients (its encryptRecipients); undefined: WalPushOptions.encryptTo. */
  encryptTo?: readonly string[];
}

export interface WalPushOptions {
  /**
   * Every repository that receives WAL (src/config/repositories.ts): a push succeeds only once each holds the file,
   * so one that is down delays archiving (PostgreSQL retries) and never loses a segment.
   */
  targets: readonly WalPushTarget[];
  layout: RepositoryLayout;
  compressLevel: number;
  spoolDir: string;
  /** The repositories' URLs as configured: markers name them so a marker for other repositories is never trusted. */
  repoUrl: string;
  /** age recipients WAL segments are encrypted to (empty: none), unless a target has its own; see walEncryptTo. */
  encryptTo?: readonly string[];
  /** An identity to compare an encrypted copy already stored with; a writer normally has none. */
  identityFile?: string;
  log: (message: string) => void;
}

export type WalPushOutcome = 'stored' | 'already-stored';


/**
 * archive_command. Exit 0 (return) only once the file is durably in the repository: stored with a conditional
 * write, or already stored with identical content (PostgreSQL retries after a crash). Different content under the
 * same name is an error and nothing is overwritten. The foreground always stores (or verifies) its own file; the
 * files PostgreSQL has marked ready after it are pushed by a background pusher (src/wal/background-pusher.ts), so
 * PostgreSQL's later calls find them done and answer through the fast path. `compression` is zstd already started
 * on this file by a caller that had to wait for something else meanwhile (src/cli/wal-push-entry.ts): its frame is
 * stored if the file is to be stored; the caller stops it when it is not needed.
 */
export async function pushWal(path: string, options: WalPushOptions, compression?: RunningCommand): Promise<WalPushOutcome> {
  const absolute = resolve(path);
  const name = basename(absolute);
  parseWalFileName(name);
  await checkReadable(absolute);
  const { spoolDir } = options;
  const clusterName = options.layout.cluster;
  let claimed = tryClaim(spoolDir, clusterName, name);
  // The background pusher may be storing this very file (it holds the claim), or may have stored it a moment ago:
  // then its marker is the answer, and storing or comparing the file again would be wasted work.
  const marker = claimed ? readMarker(spoolDir, clusterName, name) : await waitForPusher(spoolDir, clusterName, name);
  if (marker !== null && marker.repo === options.repoUrl && marker.sha256 === (await sha256OfFile(absolute))) {
    removeMarker(spoolDir, clusterName, name);
    if (claimed) releaseClaim(spoolDir, clusterName, name);
    return 'already-stored';
  }
  if (!claimed) claimed = tryClaim(spoolDir, clusterName, name);
  const digest = fileDigest(absolute);
  // A retry after some repositories took the file and one did not: only the rest are asked again.
  const partial = readPartialPush(spoolDir, clusterName, name);
  const holding = partial !== null && partial.sha256 === (await digest()) ? partial.stored : [];
  const rest = options.targets.filter((t) => !holding.includes(t.id));
  const stored: string[] = [];
  try {
    if (rest.length === 0) return 'already-stored';
    if (holding.length > 0) options.log(`${name} is in ${options.targets.filter((t) => holding.includes(t.id)).map((t) => t.label).join(', ')} already; storing it in ${rest.map((t) => t.label).join(', ')}`);
    const outcome = await storeWalFile(name, absolute, clusterIdentities({ ...options, targets: rest }), { ...options, targets: rest }, digest, compression, (t) => stored.push(t.id));
    removePartialPush(spoolDir, clusterName, name);
    return holding.length > 0 ? 'stored' : outcome;
  } catch (err) {
    if (stored.length > 0) writePartialPush(spoolDir, clusterName, name, { sha256: await digest(), stored: [...holding, ...stored] });
    throw err;
  } finally {
    removeMarker(spoolDir, clusterName, name);
    if (claimed) releaseClaim(spoolDir, clusterName, name);
    // This file's partial and stored records stay: PostgreSQL has not heard of this push yet, and may ask again.
    sweepMarkers(spoolDir, clusterName, dirname(absolute), name);
  }
}

/** How long archive_command waits for the pusher that claimed its file before storing the file itself. */
const PUSHER_CLAIM_WAIT_MS = 30_000;

async function waitForPusher(spoolDir: string, cluster: string, name: string): Promise<SpoolMarker | null> {
  const deadline = Date.now() + PUSHER_CLAIM_WAIT_MS;
  for (;;) {
    const marker = readMarker(spoolDir, cluster, name);
    if (marker !== null) return marker;
    if (claimOwner(spoolDir, cluster, name) === undefined || Date.now() >= deadline) return readMarker(spoolDir, cluster, name);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Markers the spool may hold at once: the pusher stops working ahead when PostgreSQL lags this far behind it. */
export const MAX_SPOOL_MARKERS = 64;

/**
 * Pushes every file marked ready in `pgWalDir` that has no marker and nobody pushing it, oldest first (history
 * files first, as PostgreSQL orders them), two at a time, and leaves a marker for each; returns how many it stored.
 * A file that fails is left for PostgreSQL's own call, which reports the error. Markers for files PostgreSQL no
 * longer waits for are swept first, and the spool never holds more than MAX_SPOOL_MARKERS.
 */
export async function pushReadyFiles(
  pgWalDir: string,
  options: WalPushOptions,
  limit: number,
  /** Files left to PostgreSQL's own call (they failed here, or were stored already): not tried again. */
  failed: Set<string> = new Set(),
): Promise<number> {
  const cluster = clusterIdentities(options);
  const { spoolDir } = options;
  const clusterName = options.layout.cluster;
  sweepMarkers(spoolDir, clusterName, pgWalDir);
  const room = Math.max(0, MAX_SPOOL_MARKERS - markedFiles(spoolDir, clusterName).length);
  const queue = (await readyFilesAfter(pgWalDir, '', Number.MAX_SAFE_INTEGER))
    .filter((file) => !failed.has(file) && readMarker(spoolDir, clusterName, file) === null && claimOwner(spoolDir, clusterName, file) === undefined)
    .slice(0, Math.min(limit, room));
  let stored = 0;
  const worker = async (): Promise<void> => {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      if (!tryClaim(spoolDir, clusterName, file)) continue;
      // Since the queue was read, PostgreSQL's own call may have stored it (its marker) or archived it (not ready).
      if (readMarker(spoolDir, clusterName, file) !== null || !existsSync(join(pgWalDir, 'archive_status', `${file}.ready`))) {
        releaseClaim(spoolDir, clusterName, file);
        continue;
      }
      try {
        // Stored already (by PostgreSQL's own call, which has just not marked it done yet): that call answered, or
        // will check the stored copy itself; uploading or comparing it here again would only repeat its work.
        const key = options.layout.walObject(file);
        if ((await Promise.all(options.targets.map((t) => t.store.head(key)))).some((info) => info !== null)) {
          options.log(`${file} is stored already; left to PostgreSQL's own call`);
          failed.add(file);
          continue;
        }
        // The marker needs the file's sha256: hashed here while zstd compresses it in its own process.
        const digest = fileDigest(join(pgWalDir, file));
        void digest();
        await storeWalFile(file, join(pgWalDir, file), cluster, options, digest);
        writeMarker(spoolDir, clusterName, file, { sha256: await digest(), repo: options.repoUrl });
        stored++;
      } catch {
        // Left for PostgreSQL's own call to this file, which pushes it in the foreground and reports any error.
        failed.add(file);
      } finally {
        releaseClaim(spoolDir, clusterName, file);
      }
      // PostgreSQL may have archived it meanwhile through its own call: then nobody will read this marker.
      if (!existsSync(join(pgWalDir, 'archive_status', `${file}.ready`))) removeMarker(spoolDir, clusterName, file);
    }
  };
  await Promise.all([worker(), worker()]);
  return stored;
}

async function checkReadable(path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch (err) {
    throw new UsageError(`cannot read WAL file ${path}: ${(err as Error).message}`, "archive_command must pass %p (the file's path) as run from the data directory");
  }
}

/**
 * Stores one WAL file in every target. zstd reads the file itself and starts first, so it compresses on its own core
 * while this process checks the segment header against each repository's cluster.json; nothing is stored in a
 * repository unless its check passes. The targets are written at once; one that fails (down, refusing, holding other
 * content) fails the push after the others are done, so PostgreSQL's retry finds those holding the file already.
 * The file's sha256 is taken only when something needs it (`digest`): the name is taken already, the store ignores
 * conditional writes, the background pusher leaves a marker, or the file is encrypted (its stored record,
 * src/wal/spool.ts, hashed here while zstd and age work in their own processes). Nothing holds the whole file in
 * memory but its compressed frame (a segment may be 1 GiB).
 */
async function storeWalFile(
  name: string,
  path: string,
  clusters: readonly ClusterIdentity[],
  options: WalPushOptions,
  digest: () => Promise<string>,
  started?: RunningCommand,
  onStored?: (target: WalPushTarget) => void,
): Promise<WalPushOutcome> {
  const kind = parseWalFileName(name).kind;
  // One encoding per set of recipients: a repository with recipients of its own gets its own ciphertext.
  const encodings = new Map<string, RunningCommand>();
  const defaultRecipients = walEncryptTo(name, options.encryptTo ?? []);
  if (started !== undefined) encodings.set(defaultRecipients.join(','), started);
  // An encrypted copy gets a stored record before its upload, which needs the file's sha256: start it now.
  if (options.targets.some((t) => walEncryptTo(name, t.encryptTo ?? options.encryptTo ?? []).length > 0)) void digest();
  const encodingFor = (target: WalPushTarget): Promise<Buffer> => {
    const recipients = walEncryptTo(name, target.encryptTo ?? options.encryptTo ?? []);
    const key = recipients.join(',');
    let encoding = encodings.get(key);
    if (encoding === undefined) {
      encoding = startWalEncoding(path, options.compressLevel, recipients);
      encodings.set(key, encoding);
    }
    return encoding.result.then((r) => r.stdout);
  };
  const head = kind === 'segment' || kind === 'partial' ? readHead(path, 64) : undefined;
  head?.catch(() => undefined);
  const results = await Promise.allSettled(
    options.targets.map(async (target, i) => {
      const encoded = encodingFor(target);
      encoded.catch(() => undefined);
      if (head !== undefined) await clusters[i]!.check(await head, name);
      const outcome = await storeIn(target, name, await encoded, options, digest);
      onStored?.(target);
      return outcome;
    }),
  );
  const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ target: options.targets[i]!, error: r.reason as unknown }] : []));
  if (failures.length === results.length) for (const encoding of encodings.values()) encoding.kill();
  if (failures.length > 0) {
    if (options.targets.length > 1) {
      for (const f of failures) options.log(`${name}: repository ${f.target.label}: ${(f.error as Error).message}`);
      const stored = options.targets.filter((t) => !failures.some((f) => f.target === t));
      if (stored.length > 0) options.log(`${name} is in ${stored.map((t) => t.label).join(', ')}; PostgreSQL will retry for the rest`);
    }
    throw failures[0]!.error;
  }
  return results.some((r) => r.status === 'fulfilled' && r.value === 'stored') ? 'stored' : 'already-stored';
}

async function storeIn(target: WalPushTarget, name: string, compressed: Buffer, options: WalPushOptions, digest: () => Promise<string>): Promise<WalPushOutcome> {
  const key = options.layout.walObject(name);
  const spool = { dir: options.spoolDir, cluster: options.layout.cluster };
  // Before the upload, so that whatever moment kills this push, a stored copy has its record (src/wal/spool.ts).
  const recorded = isAgeEncrypted(compressed);
  // Hashed only when needed: a plain push on an honest store (the common case) never reads its frame again.
  const storedSha256 = recorded || target.storeIgnoresConditions ? sha256Hex(compressed) : '';
  if (recorded) recordStoredAttempt(spool.dir, spool.cluster, name, { sha256: await digest(), storedSha256, repo: target.id });
  // This attempt's bytes were certainly not stored: its record entry would only widen what a retry accepts.
  const notStored = (): void => {
    if (recorded) forgetStoredAttempt(spool.dir, spool.cluster, name, storedSha256);
  };
  if (target.storeIgnoresConditions && (await target.store.head(key)) !== null) {
    notStored();
    return compareWithStored(name, key, digest, target, options);
  }
  try {
    await target.store.put(key, { kind: 'buffer', data: compressed }, { ifNoneMatch: true });
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    notStored();
    return compareWithStored(name, key, digest, target, options);
  }
  // The fault suite kills a push here: stored, and PostgreSQL never heard so.
  await failpoint('wal-push:after-store', name);
  if (target.storeIgnoresConditions) {
    // Another writer between the look and the write replaced ours, or we theirs: either way the stored copy must
    // be this file, or PostgreSQL must hear that it is not archived. Our own bytes need no decrypting.
    const stored = await target.store.getBuffer(key);
    if (sha256Hex(stored) !== storedSha256 && !(await sameContent(name, stored, digest, target, options))) {
      throw new RepositoryError(
        `${name} was replaced in ${target.store.location} by different content while pgdr stored it (the store ignores conditional writes)`,
        'two servers archive the same timeline into one repository: give each its own --cluster, or find the stray archiver',
      );
    }
  }
  return 'stored';
}

/** The name is taken: identical content is success (a retried push), anything else is refused. */
async function compareWithStored(name: string, key: string, digest: () => Promise<string>, target: WalPushTarget, options: WalPushOptions): Promise<WalPushOutcome> {
  if (await sameContent(name, await target.store.getBuffer(key), digest, target, options)) {
    options.log(`${name} is already in ${options.targets.length > 1 ? `repository ${target.label}` : 'the repository'} with identical content`);
    return 'already-stored';
  }
  throw new RepositoryError(
    `${name} is already in ${target.store.location} with different content; nothing was overwritten`,
    'two servers archive the same timeline into one repository: give each its own --cluster, or find the stray archiver',
  );
}

/**
 * Whether a stored WAL object holds the file being pushed. A plain copy is decompressed and compared. An encrypted
 * copy is decrypted when an identity is at hand; a host that writes backups normally holds none, and then the
 * spool's stored record decides: the copy's bytes must be ones an earlier push from this spool uploaded, and the
 * record says which file they encrypt. Without such a record pgdr cannot tell a retried push from a different file,
 * and refuses to guess (exit 3: PostgreSQL retries, and archiving waits for an operator).
 */
async function sameContent(name: string, stored: Buffer, digest: () => Promise<string>, target: WalPushTarget, options: WalPushOptions): Promise<boolean> {
  if (!isAgeEncrypted(stored)) return sha256Hex(await zstdDecompressBuffer(stored)) === (await digest());
  if (options.identityFile !== undefined) {
    const plain = await zstdDecompressBuffer(await ageDecryptBuffer(stored, options.identityFile, `stored WAL file ${name}`));
    const same = sha256Hex(plain) === (await digest());
    // Recorded as if this spool had stored it: PostgreSQL's next try, which holds no identity, then succeeds.
    if (same) recordStoredAttempt(options.spoolDir, options.layout.cluster, name, { sha256: await digest(), storedSha256: sha256Hex(stored), repo: target.id });
    return same;
  }
  const where = storedRecordPath(options.spoolDir, options.layout.cluster, name);
  const storedSha256 = sha256Hex(stored);
  const attempt = readStoredRecord(options.spoolDir, options.layout.cluster, name).find((a) => a.storedSha256 === storedSha256 && a.repo === target.id);
  if (attempt !== undefined) {
    // These exact bytes are what a push from this spool encrypted from the recorded file.
    if (attempt.sha256 !== (await digest())) return false;
    options.log(`${name} is already in ${target.label}, encrypted, with the very bytes an earlier push of this file stored (recorded in ${where})`);
    return true;
  }
  throw new RepositoryError(
    `${name} is already in ${target.store.location}, encrypted, and pgdr cannot tell whether it is this same file: it holds no identity to decrypt it, ` +
      `and the spool records no earlier push of these bytes (${where}); nothing was overwritten`,
    `compare once with the identity: pgdr wal push pg_wal/${name} --identity-file KEY (or PGDR_IDENTITY_FILE), as this user with the same settings, exits 0 ` +
      "for the same file and records it in this spool, so PostgreSQL's next try succeeds; " +
      'if it differs, a second server archives into this repository and cluster: give each its own --cluster',
  );
}

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function sha256OfFile(path: string): Promise<string> {
  const checksum = new ChecksumStage();
  // 1 MiB reads: less than half the time of the default 64 KiB on a 16 MiB segment, and memory stays bounded.
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), checksum, new Writable({ write: (_chunk, _encoding, done) => done() }));
  return checksum.sha256;
}

/** The file's sha256, read once on the first call; a caller may start it early and never ask (a failed store). */
function fileDigest(path: string): () => Promise<string> {
  let hashing: Promise<string> | undefined;
  return () => {
    if (hashing === undefined) {
      hashing = sha256OfFile(path);
      hashing.catch(() => undefined);
    }
    return hashing;
  };
}

function clusterIdentities(options: WalPushOptions): ClusterIdentity[] {
  return options.targets.map((t) => new ClusterIdentity(t.store, options.layout));
}

/** Checks each segment's system identifier against cluster.json, creating cluster.json from the first segment. */
class ClusterIdentity {
  private info: ClusterInfo | null | undefined;
  constructor(
    private readonly store: ObjectStore,
    private readonly layout: RepositoryLayout,
  ) {}

  async check(segment: Buffer, name: string): Promise<void> {
    const header = readWalSegmentHeader(segment);
    if (!header) {
      throw new UsageError(`${name} does not start with a WAL page header`, 'archive_command must pass %p, the path of a WAL file PostgreSQL wrote');
    }
    if (this.info === undefined) this.info = await readClusterInfo(this.store, this.layout);
    if (this.info) {
      checkSameCluster(this.info, header.systemIdentifier, this.store.location, this.layout.cluster);
      return;
    }
    if (header.pgMajor === undefined) {
      throw new UsageError(`${name} has WAL page magic 0x${header.magic.toString(16)}, which pgdr does not know`, 'pgdr supports PostgreSQL 15 to 18');
    }
    this.info = await ensureClusterInfo(this.store, this.layout, { systemIdentifier: header.systemIdentifier, pgMajor: header.pgMajor });
  }
}

/** WAL files whose .ready marker exists, after `current` in archive order (history files first, as PostgreSQL does). */
async function readyFilesAfter(pgWalDir: string, current: string, limit: number): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(join(pgWalDir, 'archive_status'));
  } catch {
    return [];
  }
  const ready = entries
    .filter((f) => f.endsWith('.ready'))
    .map((f) => f.slice(0, -'.ready'.length))
    .filter((f) => f !== current && isArchivable(f));
  const histories = ready.filter((f) => f.endsWith('.history')).sort();
  const others = ready.filter((f) => !f.endsWith('.history')).sort();
  return [...histories, ...others].slice(0, limit);
}

function isArchivable(name: string): boolean {
  try {
    parseWalFileName(name);
    return true;
  } catch {
    return false;
  }
}
