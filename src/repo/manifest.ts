import { z } from 'zod';

/**
 * The backup manifest: written last, after every object it names is stored and its checksum confirmed.
 * Its presence is what makes a backup visible to restore. Every field is documented in
 * docs/repository-format.md; readers validate it because the repository is outside input too.
 */
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex sha256');
const lsn = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/, 'expected an LSN like 0/3000028');
const walName = z.string().regex(/^[0-9A-F]{24}$/, 'expected a 24-digit WAL segment name');

export const BackupObjectSchema = z.object({
  /** Object name relative to the backup's prefix, e.g. base.tar.zst. */
  name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/),
  /** Bytes before compression (the tar stream). */
  bytes: z.number().int().nonnegative(),
  /** Bytes as stored (compressed). */
  storedBytes: z.number().int().nonnegative(),
  /** sha256 of the stored bytes. */
  sha256: hex64,
  /** How the stored bytes decode: zstd frames around a tar archive, or around one plain file. */
  encoding: z.enum(['tar+zstd', 'zstd']),
  /** A tablespace's archive: unpacked into its location (or where `--tablespace-map` puts it), not the data directory. */
  tablespace: z
    .object({
      oid: z.number().int().positive(),
      /** Where the tablespace was on the source server. */
      location: z.string().min(1),
      name: z.string().min(1).optional(),
    })
    .optional(),
  /** A plain file (encoding zstd): its name in the data directory. */
  file: z.enum(['backup_manifest']).optional(),
});

export const BackupManifestSchema = z.object({
  format: z.literal(1),
  backupId: z.string().regex(/^\d{8}T\d{6}Z$/),
  cluster: z.string().min(1),
  type: z.literal('full'),
  startTime: z.iso.datetime(),
  stopTime: z.iso.datetime(),
  startLsn: lsn,
  stopLsn: lsn,
  timeline: z.number().int().positive(),
  /** First and last WAL segment the backup needs to become consistent. */
  startWal: walName,
  stopWal: walName,
  systemIdentifier: z.string().regex(/^\d+$/),
  pgVersion: z.string().min(1),
  pgVersionNum: z.number().int().positive(),
  /** host:port of the server the backup was taken from. */
  source: z.string().min(1),
  /** The Patroni member the backup was taken from, when pgdr found the source through Patroni or etcd. */
  sourceMember: z.string().min(1).optional(),
  compression: z.object({ algorithm: z.literal('zstd'), level: z.number().int() }),
  bytes: z.number().int().nonnegative(),
  storedBytes: z.number().int().nonnegative(),
  objects: z.array(BackupObjectSchema).min(1),
  pgdrVersion: z.string(),
});

export type BackupObject = z.infer<typeof BackupObjectSchema>;
export type BackupManifest = z.infer<typeof BackupManifestSchema>;

export function serializeManifest(manifest: BackupManifest): Buffer {
  return Buffer.from(`${JSON.stringify(BackupManifestSchema.parse(manifest), null, 2)}\n`);
}
