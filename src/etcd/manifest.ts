import { z } from 'zod';
import { EncryptionSchema } from '../repo/manifest.js';
import { RepositoryError } from '../errors.js';

/**
 * The etcd snapshot manifest, <cluster>/etcd/<snapshotId>/manifest.json. It is written last, after the snapshot
 * object is stored and its checksum confirmed: its presence is what makes a snapshot restorable. Readers validate
 * it, since the repository is outside input too. docs/runbooks/etcd-restore.md documents every field.
 */
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex sha256');
/** etcd prints member and cluster ids as hex uint64 (`etcdctl member list`); so does the manifest. */
const etcdId = z.string().regex(/^[0-9a-f]{1,16}$/, 'expected an etcd id as lowercase hex');

export const SNAPSHOT_OBJECT = 'snapshot.db.zst';

export const EtcdSnapshotManifestSchema = z.object({
  format: z.literal(1),
  /** Sorts by time: 20261123T125304Z (UTC, when the snapshot started). */
  snapshotId: z.string().regex(/^\d{8}T\d{6}Z$/, 'expected a snapshot id like 20261123T125304Z'),
  /** pgdr's cluster namespace in the repository. */
  cluster: z.string().min(1),
  /** When the member started streaming the snapshot, and when pgdr had stored it. */
  startTime: z.iso.datetime(),
  stopTime: z.iso.datetime(),
  /** The key-value store revision the snapshot holds (read from the snapshot database itself). */
  revision: z.number().int().nonnegative(),
  /** Keys in the snapshot's key bucket, every revision still kept (as `etcdctl snapshot status` counts them). */
  totalKeys: z.number().int().nonnegative(),
  /** The member that served the snapshot. */
  member: z.object({
    name: z.string(),
    id: etcdId,
    endpoint: z.string().min(1),
  }),
  /** The etcd cluster's id: a restore makes a new one. */
  etcdClusterId: etcdId,
  /** Server version of the member, e.g. 3.4.23. */
  etcdVersion: z.string().min(1),
  /** The member's database size as it reported it (bytes allocated), just before the snapshot. */
  dbSize: z.number().int().nonnegative(),
  /** The object holding the snapshot, relative to the snapshot's prefix. */
  object: z.literal(SNAPSHOT_OBJECT),
  compression: z.object({ algorithm: z.literal('zstd'), level: z.number().int() }),
  /** The object is age-encrypted after compression, to these recipients (public keys); absent: plain zstd. */
  encryption: EncryptionSchema.optional(),
  /** Bytes of the snapshot as etcd streamed it: the database plus its 32-byte sha256 trailer. */
  bytes: z.number().int().positive(),
  /** Bytes as stored (zstd). */
  storedBytes: z.number().int().positive(),
  /** sha256 of the stored object. */
  sha256: hex64,
  /** sha256 of the uncompressed snapshot, trailer included: what `zstd -d` must give back. */
  snapshotSha256: hex64,
  /** The snapshot's own trailer: the sha256 etcd computed over the database, which `snapshot restore` checks. */
  databaseSha256: hex64,
  pgdrVersion: z.string(),
});

export type EtcdSnapshotManifest = z.infer<typeof EtcdSnapshotManifestSchema>;

export function isSnapshotId(value: string): boolean {
  return /^\d{8}T\d{6}Z$/.test(value);
}

export function serializeEtcdSnapshotManifest(manifest: EtcdSnapshotManifest): Buffer {
  return Buffer.from(`${JSON.stringify(EtcdSnapshotManifestSchema.parse(manifest), null, 2)}\n`);
}

/**
 * Parses a stored manifest and checks that it belongs where it was found. Throws RepositoryError with the first
 * problem, named by its field.
 */
export function parseEtcdSnapshotManifest(raw: Buffer, expected: { snapshotId: string; cluster: string }): EtcdSnapshotManifest {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RepositoryError(
      `manifest of etcd snapshot ${expected.snapshotId} is not valid JSON`,
      'the manifest is damaged; restore from another snapshot with --snapshot-id (see `pgdr etcd list`)',
    );
  }
  const parsed = EtcdSnapshotManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RepositoryError(
      `manifest of etcd snapshot ${expected.snapshotId} is invalid: ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`,
      'the manifest is damaged or from a newer pgdr; restore from another snapshot with --snapshot-id (see `pgdr etcd list`)',
    );
  }
  const manifest = parsed.data;
  if (manifest.snapshotId !== expected.snapshotId || manifest.cluster !== expected.cluster) {
    throw new RepositoryError(
      `manifest of etcd snapshot ${expected.snapshotId} names snapshot ${manifest.snapshotId} of cluster ${manifest.cluster}`,
      'the repository was edited by hand; move the manifest back where it belongs',
    );
  }
  if (manifest.bytes <= 32) {
    throw new RepositoryError(`manifest of etcd snapshot ${expected.snapshotId} records ${manifest.bytes} bytes, too few for a snapshot`, 'restore from another snapshot');
  }
  return manifest;
}
