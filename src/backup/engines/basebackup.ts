import type { Readable } from 'node:stream';
import { ServiceError } from '../../errors.js';
import { openBaseBackupSession, type BaseBackupSession } from '../../postgres/base-backup-session.js';
import { withConnection, type PgEndpoint } from '../../postgres/connection.js';
import type { BackupObject } from '../../repo/manifest.js';
import { sha256Hex } from '../../stream/checksum.js';
import { encodeSmallObject, uploadCompressed, type UploadedObject } from '../object-upload.js';
import type { BackupEngine, EngineJob, EngineResult } from '../engine.js';

/**
 * The remote engine: PostgreSQL's BASE_BACKUP over a replication connection (what pg_basebackup sends), read by
 * pgdr itself, so that it runs wherever the server can be reached (a Kubernetes CronJob) and sees what the server
 * sends: one tar per tablespace, the data directory last, then PostgreSQL's backup_manifest and the exact stop
 * position and timeline (a backup from a standby can stop on a later timeline than it began).
 *
 *   base.tar            → base.tar.zst
 *   <oid>.tar           → tablespace-<oid>.tar.zst    (restored to the tablespace's location, or where it is mapped)
 *   backup_manifest     → backup_manifest.zst         (restored into the data directory, as pg_basebackup leaves it)
 *
 * Each archive passes zstd (-T, on its own cores) and a sha256 on its way to the store, in bounded memory: the
 * session stops reading the server's socket while the upload is behind.
 */
export const baseBackupEngine: BackupEngine = {
  name: 'basebackup',
  async run(job: EngineJob): Promise<EngineResult> {
    const names = await tablespaceNames(job.endpoint);
    const session = await openBaseBackupSession({
      endpoint: job.endpoint,
      label: job.label,
      ...(job.maxRate === undefined ? {} : { maxRate: job.maxRate }),
      ...(job.progress.active ? { onProgress: (done: number) => job.progress.update(done) } : {}),
    });
    // Losing the lock stops the backup: the server is told, and the archive being stored fails.
    job.interrupted.catch((err: Error) => session.cancel(err));
    try {
      const objects: BackupObject[] = [];
      for (let archive = await session.nextArchive(); archive !== null; archive = await session.nextArchive()) {
        const oid = archive.tablespaceLocation === null ? null : Number(archive.name.replace(/\.tar$/, ''));
        if (oid !== null && (!Number.isInteger(oid) || oid <= 0)) {
          throw new ServiceError(`the server sent an archive named ${JSON.stringify(archive.name)} for a tablespace`, 'check the server version (PostgreSQL 15 or newer)');
        }
        const name = oid === null ? 'base.tar.zst' : `tablespace-${oid}.tar.zst`;
        job.log(`backup ${job.backupId}: storing ${oid === null ? 'the data directory' : `tablespace ${names.get(oid) ?? oid} (${archive.tablespaceLocation})`} as ${name}`);
        const stored = await storeArchive(job, name, archive.data, session);
        objects.push({
          name,
          bytes: stored.bytes,
          storedBytes: stored.storedBytes,
          sha256: stored.sha256,
          encoding: 'tar+zstd',
          ...(oid === null ? {} : { tablespace: { oid, location: archive.tablespaceLocation!, ...(names.has(oid) ? { name: names.get(oid)! } : {}) } }),
        });
      }
      objects.push(await storeManifest(job, await session.manifest()));
      const stop = await session.end();
      return { objects, start: session.start, stop };
    } catch (err) {
      session.cancel(err instanceof Error ? err : new Error(String(err)));
      await session.closed;
      throw err;
    } finally {
      job.progress.stop();
    }
  },
};

/** Tablespace names by oid, for the manifest and for `--tablespace-map NAME=DIR` at restore. */
async function tablespaceNames(endpoint: PgEndpoint): Promise<Map<number, string>> {
  return withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{ oid: string; name: string }>("SELECT oid::text, spcname AS name FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')");
    return new Map(rows.map((r) => [Number(r.oid), r.name]));
  });
}

/** One archive of the server's stream, compressed and stored; a failure anywhere cancels the server's backup. */
async function storeArchive(job: EngineJob, name: string, tar: Readable, session: BaseBackupSession): Promise<UploadedObject> {
  const key = job.layout.backupObject(job.backupId, name);
  job.started.push(key);
  return uploadCompressed({
    store: job.store,
    key,
    source: tar,
    compress: job.compress,
    encryptTo: job.encryptTo,
    // The server's size estimate bounds the compressed size: it sizes S3 parts for large databases.
    expectedBytes: job.server.estimatedBytes,
    interrupted: job.interrupted,
    onFailure: (err) => session.cancel(err),
  });
}

async function storeManifest(job: EngineJob, manifest: Buffer): Promise<BackupObject> {
  const name = 'backup_manifest.zst';
  const key = job.layout.backupObject(job.backupId, name);
  job.started.push(key);
  const compressed = await encodeSmallObject(manifest, job.compress.level, job.encryptTo);
  await job.store.put(key, { kind: 'buffer', data: compressed });
  return { name, bytes: manifest.length, storedBytes: compressed.length, sha256: sha256Hex(compressed), encoding: 'zstd', file: 'backup_manifest' };
}
