import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Etcd3 } from 'etcd3';
import { RepositoryError, ServiceError, UsageError, errorMessage } from '../errors.js';
import { newBackupId, type RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ChecksumStage } from '../stream/checksum.js';
import { zstdCompressStage } from '../stream/zstd.js';
import { compressEncryptStage } from '../stream/age.js';
import { encryptionFor } from '../repo/manifest.js';
import { PGDR_VERSION } from '../version.js';
import { etcdIdHex, openEtcdClient, type EtcdConnection } from './connection.js';
import { SNAPSHOT_OBJECT, serializeEtcdSnapshotManifest, type EtcdSnapshotManifest } from './manifest.js';
import { SnapshotTrailerStage } from './snapshot-integrity.js';
import { findEtcdSnapshotTool, snapshotFileStatus, type EtcdSnapshotTool } from './tools.js';

export interface EtcdSnapshotOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  connection: EtcdConnection;
  compressLevel: number;
  compressThreads?: number;
  /** Where the snapshot is staged while it is checked and compressed (removed afterwards). */
  workDir: string;
  /** Limit for streaming the whole snapshot. */
  timeoutMs: number;
  log: (message: string) => void;
  now?: () => Date;
  /** age recipients the stored snapshot is encrypted to; empty or absent: plain zstd. */
  encryptTo?: readonly string[];
  /** Which offline tool reads the snapshot's revision; found on PATH when absent. */
  tool?: EtcdSnapshotTool;
}

/** The member a snapshot comes from, as it described itself right before. */
interface SnapshotSource {
  client: Etcd3;
  endpoint: string;
  memberId: string;
  memberName: string;
  clusterId: string;
  version: string;
  dbSize: number;
}

/**
 * An etcd snapshot into the repository, committed last. The member streams its database (Maintenance.Snapshot);
 * pgdr stages it in a file, because the revision it holds can only be read from the finished database (etcd 3.4
 * sends no header with the stream) and a file is a body a retried upload can read again. The stream's own sha256
 * trailer is checked, the file compressed (zstd) with its sha256 recorded, uploaded, and only then is
 * manifest.json written. Any failure before that leaves at most an object without a manifest, which `etcd list`
 * shows as incomplete and restore never uses.
 */
export async function takeEtcdSnapshot(options: EtcdSnapshotOptions): Promise<EtcdSnapshotManifest> {
  const { store, layout, log } = options;
  const now = options.now ?? (() => new Date());
  // Before any traffic: a snapshot that could not be read afterwards would be wasted.
  const tool = options.tool ?? findEtcdSnapshotTool();
  const source = await connectToMember(options.connection, log);
  const work = await mkdtemp(join(options.workDir, 'pgdr-etcd-snapshot-')).catch((err: unknown) => {
    throw new UsageError(`cannot create a work directory in ${options.workDir}: ${errorMessage(err)}`, 'pass --work-dir with a writable directory that has room for the snapshot');
  });
  try {
    const snapshotId = await freshSnapshotId(store, layout, now);
    const startTime = now();
    const rawFile = join(work, 'snapshot.db');
    log(`etcd snapshot ${snapshotId}: streaming from member ${source.memberName || source.memberId} (${source.endpoint})`);
    const trailer = await streamSnapshot(source, rawFile, options.timeoutMs);
    const status = await snapshotFileStatus(tool, rawFile);

    const storedFile = join(work, SNAPSHOT_OBJECT);
    const checksum = new ChecksumStage();
    const zstd = { level: options.compressLevel, threads: options.compressThreads ?? 1 };
    const encryptTo = options.encryptTo ?? [];
    const encode = encryptTo.length > 0 ? compressEncryptStage(zstd, encryptTo) : zstdCompressStage(zstd);
    await pipeline(createReadStream(rawFile), encode, checksum, createWriteStream(storedFile, { mode: 0o600 }));

    const objectKey = layout.etcdSnapshotObject(snapshotId, SNAPSHOT_OBJECT);
    await store.put(objectKey, { kind: 'file', path: storedFile }, { ifNoneMatch: true });
    const stored = await store.head(objectKey);
    if (stored === null || stored.size !== checksum.bytes) {
      throw new RepositoryError(
        `etcd snapshot object ${objectKey} holds ${stored === null ? 'nothing' : `${stored.size} bytes`} right after ${checksum.bytes} bytes were uploaded`,
        'check the repository storage; the snapshot was not committed, run pgdr etcd snapshot again',
      );
    }
    const manifest: EtcdSnapshotManifest = {
      format: 1,
      snapshotId,
      cluster: layout.cluster,
      startTime: startTime.toISOString(),
      stopTime: now().toISOString(),
      revision: status.revision,
      totalKeys: status.totalKey,
      member: { name: source.memberName, id: source.memberId, endpoint: source.endpoint },
      etcdClusterId: source.clusterId,
      etcdVersion: source.version,
      dbSize: source.dbSize,
      object: SNAPSHOT_OBJECT,
      compression: { algorithm: 'zstd', level: options.compressLevel },
      ...(encryptionFor(encryptTo) === undefined ? {} : { encryption: encryptionFor(encryptTo)! }),
      bytes: trailer.bytes,
      storedBytes: checksum.bytes,
      sha256: checksum.sha256,
      snapshotSha256: trailer.sha256,
      databaseSha256: trailer.databaseSha256,
      pgdrVersion: PGDR_VERSION,
    };
    // The commit: before this put the snapshot does not exist for restore.
    await store.put(layout.etcdSnapshotManifest(snapshotId), { kind: 'buffer', data: serializeEtcdSnapshotManifest(manifest) }, { ifNoneMatch: true });
    log(`etcd snapshot ${snapshotId}: complete (revision ${manifest.revision}, ${manifest.bytes} bytes stored as ${manifest.storedBytes})`);
    return manifest;
  } finally {
    source.client.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** The first endpoint that answers status and member list; the others are only tried when one does not. */
async function connectToMember(connection: EtcdConnection, log: (message: string) => void): Promise<SnapshotSource> {
  const failures: string[] = [];
  for (const endpoint of connection.endpoints) {
    const client = await openEtcdClient(connection, endpoint);
    try {
      const status = await client.maintenance.status();
      const { members } = await client.cluster.memberList({});
      const memberIdDecimal = status.header.member_id;
      const member = members.find((m) => m.ID === memberIdDecimal);
      const dbSize = Number(status.dbSize);
      if (!/^\d+$/.test(memberIdDecimal) || !/^\d+$/.test(status.header.cluster_id) || !Number.isSafeInteger(dbSize) || typeof status.version !== 'string') {
        throw new Error('the member answered a status without a member id, cluster id, version or db size');
      }
      return {
        client,
        endpoint,
        memberId: etcdIdHex(memberIdDecimal),
        memberName: member?.name ?? '',
        clusterId: etcdIdHex(status.header.cluster_id),
        version: status.version,
        dbSize,
      };
    } catch (err) {
      client.close();
      failures.push(`${endpoint}: ${errorMessage(err)}`);
      log(`etcd endpoint ${endpoint} did not answer: ${errorMessage(err)}`);
    }
  }
  throw new ServiceError(
    `no etcd endpoint answered (${failures.join('; ')})`,
    'check --etcd / PGDR_ETCD, that the members run, and PGDR_ETCD_CACERT/CERT/KEY and PGDR_ETCD_USER/PASSWORD for a secured cluster',
  );
}

/** Turns the RPC's messages into the snapshot's bytes, checking each message's shape (outside input). */
class SnapshotMessageStage extends Transform {
  /** remaining_bytes of the last message: 0 once the member has sent everything. */
  lastRemaining: number | undefined;

  constructor() {
    super({ writableObjectMode: true });
  }

  override _transform(message: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    const m = message as { blob?: unknown; remaining_bytes?: unknown } | null;
    const remaining = typeof m?.remaining_bytes === 'string' || typeof m?.remaining_bytes === 'number' ? Number(m.remaining_bytes) : Number.NaN;
    if (m === null || !(m.blob instanceof Uint8Array) || !Number.isSafeInteger(remaining) || remaining < 0) {
      callback(new ServiceError('etcd sent a snapshot message without blob or remaining_bytes', 'check that the endpoint is an etcd 3.4+ member'));
      return;
    }
    this.lastRemaining = remaining;
    callback(null, Buffer.from(m.blob.buffer, m.blob.byteOffset, m.blob.byteLength));
  }
}

async function streamSnapshot(source: SnapshotSource, rawFile: string, timeoutMs: number): Promise<{ bytes: number; sha256: string; databaseSha256: string }> {
  const messages = new SnapshotMessageStage();
  const trailer = new SnapshotTrailerStage();
  try {
    const call = await source.client.maintenance.snapshot({ deadline: Date.now() + timeoutMs });
    // grpc-js hands back a Readable in object mode; the typings only promise an event emitter.
    if (!(call instanceof Readable)) throw new Error('the etcd client did not return a readable stream for the snapshot');
    await pipeline(call, messages, trailer, createWriteStream(rawFile, { mode: 0o600 }));
  } catch (err) {
    if (err instanceof ServiceError) throw err;
    throw new ServiceError(
      `etcd snapshot from ${source.endpoint} failed: ${errorMessage(err)}`,
      'check the member (etcdctl endpoint status) and --timeout; a large database needs time',
      err,
    );
  }
  const result = trailer.result;
  if (messages.lastRemaining !== 0) {
    throw new ServiceError(
      `etcd snapshot from ${source.endpoint} ended early: the member still announced ${messages.lastRemaining ?? 'unknown'} bytes to come`,
      'run pgdr etcd snapshot again; if it repeats, check the member and the network',
    );
  }
  if (result.problem !== undefined) {
    throw new ServiceError(
      `etcd snapshot from ${source.endpoint} failed its check: ${result.problem}`,
      'nothing was stored; run pgdr etcd snapshot again, or against another member with --etcd',
    );
  }
  return result;
}

async function freshSnapshotId(store: ObjectStore, layout: RepositoryLayout, now: () => Date): Promise<string> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const id = newBackupId(now());
    let taken = false;
    for await (const _ of store.list(layout.etcdSnapshotPrefix(id))) {
      taken = true;
      break;
    }
    if (!taken) return id;
    // Ids have one-second resolution: the next second is free unless snapshots run in a tight loop.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new RepositoryError('could not find an unused etcd snapshot id', 'another pgdr etcd snapshot is running; retry in a few seconds');
}
