import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { UsageError, VerificationError, errorMessage } from '../errors.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ChecksumStage } from '../stream/checksum.js';
import { zstdDecompressStage } from '../stream/zstd.js';
import { checkIdentityFor, decryptStage } from '../stream/age.js';
import { chooseEtcdSnapshot, readEtcdSnapshots } from './catalog.js';
import type { EtcdSnapshotManifest } from './manifest.js';
import type { EtcdRestorePlan } from './restore-plan.js';
import { SnapshotTrailerStage } from './snapshot-integrity.js';
import { findEtcdSnapshotTool, restoreSnapshotFile, type EtcdSnapshotTool } from './tools.js';

export interface EtcdRestoreOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** age identity file, for a snapshot stored encrypted. */
  identityFile?: string;
  /** A snapshot id, or 'latest'. */
  snapshotId: string;
  plan: EtcdRestorePlan;
  /** Where the snapshot is downloaded and checked (removed afterwards). */
  workDir: string;
  /** Check everything (targets, the snapshot's every hash) but write no data directory. */
  dryRun: boolean;
  log: (message: string) => void;
  tool?: EtcdSnapshotTool;
}

export interface EtcdRestoreResult {
  manifest: EtcdSnapshotManifest;
  plan: EtcdRestorePlan;
  dryRun: boolean;
}

/**
 * Restores a stored snapshot into new data directories, refusing to guess at every step:
 *  1. every target directory must be absent or empty, checked before any download;
 *  2. the stored object must match the manifest's size and sha256, the decompressed snapshot its snapshotSha256,
 *     and the snapshot's own trailer its database: all of this in a work directory, before any target is touched;
 *  3. etcd's tool writes each member into a hidden sibling of its target, and only when every member succeeded are
 *     they renamed into place. A failure at any step leaves the targets as they were.
 */
export async function restoreEtcdSnapshot(options: EtcdRestoreOptions): Promise<EtcdRestoreResult> {
  const { store, layout, plan, log } = options;
  const where = `${store.location} (cluster ${layout.cluster})`;
  const manifest = chooseEtcdSnapshot(await readEtcdSnapshots(store, layout), options.snapshotId, where);
  // Before anything is downloaded or written: a missing or wrong identity is the operator's to fix.
  if (manifest.encryption !== undefined) await checkIdentityFor(options.identityFile, manifest.encryption.recipients, `etcd snapshot ${manifest.snapshotId}`);
  for (const member of plan.members) await checkTarget(member.dataDir);
  const tool = options.tool ?? findEtcdSnapshotTool();

  const work = await mkdtemp(join(options.workDir, 'pgdr-etcd-restore-')).catch((err: unknown) => {
    throw new UsageError(`cannot create a work directory in ${options.workDir}: ${errorMessage(err)}`, 'pass --work-dir with a writable directory that has room for the snapshot');
  });
  const staged: { staging: string; target: string }[] = [];
  try {
    log(`etcd snapshot ${manifest.snapshotId}: downloading and checking (revision ${manifest.revision}, ${manifest.storedBytes} bytes stored)`);
    const snapshotFile = await downloadAndVerify(store, layout, manifest, work, options.identityFile);
    if (options.dryRun) {
      log(`dry run: snapshot ${manifest.snapshotId} verified; would restore ${plan.members.map((m) => `${m.name} into ${m.dataDir}`).join(', ')}`);
      return { manifest, plan, dryRun: true };
    }

    for (const member of plan.members) {
      // A hidden sibling on the same file system, so the final step is a rename; etcd's tool wants it absent.
      const parent = dirname(member.dataDir);
      await mkdir(parent, { recursive: true });
      const staging = join(parent, `.${basename(member.dataDir)}.pgdr-restore-${randomBytes(4).toString('hex')}`);
      staged.push({ staging, target: member.dataDir });
      log(`member ${member.name}: ${tool.name} snapshot restore into ${member.dataDir}`);
      await restoreSnapshotFile(tool, snapshotFile, {
        name: member.name,
        dataDir: staging,
        peerUrls: member.peerUrls,
        initialCluster: plan.initialCluster,
        initialClusterToken: plan.initialClusterToken,
      });
    }
    // Once more: a directory could have been filled while the restore ran.
    for (const member of plan.members) await checkTarget(member.dataDir);
    for (const { staging, target } of staged) {
      await rmdir(target).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await rename(staging, target);
    }
    staged.length = 0;
    return { manifest, plan, dryRun: false };
  } finally {
    for (const { staging } of staged) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

/** A target must not exist, or be an empty directory: pgdr never restores over a member's data. */
async function checkTarget(dir: string): Promise<void> {
  let info;
  try {
    info = await stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new UsageError(`cannot inspect data directory ${dir}: ${errorMessage(err)}`, 'check the path and its permissions');
  }
  if (!info.isDirectory()) throw new UsageError(`${dir} exists and is not a directory`, 'give a data directory that does not exist yet, or is empty');
  if ((await readdir(dir)).length > 0) {
    throw new UsageError(`data directory ${dir} is not empty`, 'stop that member and move its old data directory aside (or remove it) first; pgdr never restores over data');
  }
}

/**
 * Downloads the stored object and checks it against the manifest, then decompresses it and checks the snapshot:
 * its sha256 against the manifest and its trailer against its database. Returns the snapshot file, or throws
 * VerificationError naming the first check that failed.
 */
async function downloadAndVerify(store: ObjectStore, layout: RepositoryLayout, manifest: EtcdSnapshotManifest, work: string, identityFile: string | undefined): Promise<string> {
  const id = manifest.snapshotId;
  const key = layout.etcdSnapshotObject(id, manifest.object);
  const storedFile = join(work, manifest.object);
  const stored = new ChecksumStage();
  await pipeline(await store.get(key), stored, createWriteStream(storedFile, { mode: 0o600 }));
  if (stored.bytes !== manifest.storedBytes || stored.sha256 !== manifest.sha256) {
    throw new VerificationError(
      `etcd snapshot ${id}: the stored object ${key} does not match its manifest (${stored.bytes} bytes, sha256 ${stored.sha256}; manifest: ${manifest.storedBytes} bytes, sha256 ${manifest.sha256})`,
      'the object is damaged; nothing was restored. Restore another snapshot (pgdr etcd list) and run pgdr verify',
    );
  }

  const snapshotFile = join(work, 'snapshot.db');
  const trailer = new SnapshotTrailerStage();
  try {
    if (manifest.encryption !== undefined && identityFile !== undefined) {
      await pipeline(createReadStream(storedFile), decryptStage(identityFile, `etcd snapshot ${id}`), zstdDecompressStage(), trailer, createWriteStream(snapshotFile, { mode: 0o600 }));
    } else {
      await pipeline(createReadStream(storedFile), zstdDecompressStage(), trailer, createWriteStream(snapshotFile, { mode: 0o600 }));
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new VerificationError(
      `etcd snapshot ${id}: ${manifest.object} does not decompress: ${errorMessage(err)}`,
      'the object is damaged although its sha256 matched the manifest; restore another snapshot (pgdr etcd list)',
      err,
    );
  }
  const check = trailer.result;
  if (check.bytes !== manifest.bytes || check.sha256 !== manifest.snapshotSha256) {
    throw new VerificationError(
      `etcd snapshot ${id}: the decompressed snapshot does not match its manifest (${check.bytes} bytes, sha256 ${check.sha256}; manifest: ${manifest.bytes} bytes, sha256 ${manifest.snapshotSha256})`,
      'the object or the manifest is damaged; nothing was restored. Restore another snapshot (pgdr etcd list)',
    );
  }
  if (check.problem !== undefined || check.databaseSha256 !== manifest.databaseSha256) {
    throw new VerificationError(
      `etcd snapshot ${id}: ${check.problem ?? `its database's sha256 ${check.databaseSha256} differs from the manifest's ${manifest.databaseSha256}`}`,
      'etcd would refuse it too; nothing was restored. Restore another snapshot (pgdr etcd list)',
    );
  }
  return snapshotFile;
}
