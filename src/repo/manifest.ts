import { z } from 'zod';
import { isValidWalSegmentSize } from '../postgres/wal-file-name.js';

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
  file: z.enum(['backup_manifest', 'backup_label', 'tablespace_map']).optional(),
  /**
   * Files engine (format 2): `files` is a tar of whole files, `blocks` a tar of changed blocks (one member per run
   * of blocks, named `<path>@<first block>`), `file-list` the backup's list of every file (JSON lines, zstd).
   */
  content: z.enum(['files', 'blocks', 'file-list']).optional(),
});

const backupId = z.string().regex(/^\d{8}T\d{6}Z$/);

/**
 * Objects encrypted with age after zstd (docs/repository-format.md#encryption): to whom, by public key only. The
 * key of an object does not change; its first bytes tell (age-encryption.org/v1 or the zstd magic). Absent: plain.
 */
export const EncryptionSchema = z.object({
  algorithm: z.literal('age'),
  recipients: z.array(z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/, 'expected an age X25519 recipient (age1…)')).min(1),
});
export type Encryption = z.infer<typeof EncryptionSchema>;

/** The manifest field for objects encrypted to `recipients`; undefined when there are none. */
export function encryptionFor(recipients: readonly string[]): Encryption | undefined {
  return recipients.length === 0 ? undefined : { algorithm: 'age', recipients: [...recipients] };
}

export const BackupManifestSchema = z.object({
  /** 1: a backup of the basebackup engine; 2: of the files engine (a file list, and possibly a chain). */
  format: z.union([z.literal(1), z.literal(2)]),
  backupId,
  cluster: z.string().min(1),
  /** full: every file stored; diff: what changed since the last full; incr: what changed since the last backup. */
  type: z.enum(['full', 'diff', 'incr']),
  /** Format 2: how the data was read. Format 1 backups are the basebackup engine's. */
  engine: z.literal('files').optional(),
  /** diff and incr: the backup whose state this one builds on. */
  reference: backupId.optional(),
  /** Every backup a restore of this one reads from, oldest (the full) first, this one excluded; empty for a full. */
  chain: z.array(backupId).optional(),
  /** Format 2: size of the data directory and tablespaces once restored, and how many files the list names. */
  restoredBytes: z.number().int().nonnegative().optional(),
  fileCount: z.number().int().nonnegative().optional(),
  /** Pages whose checksum failed while the backup read them (stored as read; PostgreSQL would refuse them too). */
  pageChecksumFailures: z
    .array(z.object({ path: z.string().min(1), tablespace: z.number().int().positive().optional(), blocks: z.array(z.number().int().nonnegative()).min(1) }))
    .optional(),
  startTime: z.iso.datetime(),
  stopTime: z.iso.datetime(),
  startLsn: lsn,
  stopLsn: lsn,
  timeline: z.number().int().positive(),
  /** First and last WAL segment the backup needs to become consistent. */
  startWal: walName,
  stopWal: walName,
  /**
   * The server's wal_segment_size in bytes (absent in manifests from before it was recorded): `verify` reads WAL
   * names with it when the newest archived segment is encrypted and it holds no key to read its header.
   */
  walSegmentSize: z.number().int().refine(isValidWalSegmentSize, 'expected a power of two from 1 MiB to 1 GiB').optional(),
  systemIdentifier: z.string().regex(/^\d+$/),
  pgVersion: z.string().min(1),
  pgVersionNum: z.number().int().positive(),
  /** host:port of the server the backup was taken from. */
  source: z.string().min(1),
  /** The Patroni member the backup was taken from, when pgdr found the source through Patroni or etcd. */
  sourceMember: z.string().min(1).optional(),
  compression: z.object({ algorithm: z.literal('zstd'), level: z.number().int() }),
  /** Every object of this backup (file list included) is encrypted to these recipients after compression. */
  encryption: EncryptionSchema.optional(),
  bytes: z.number().int().nonnegative(),
  storedBytes: z.number().int().nonnegative(),
  objects: z.array(BackupObjectSchema).min(1),
  pgdrVersion: z.string(),
}).superRefine((m, ctx) => {
  const problem = manifestShapeProblem(m);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** What a format-1 or format-2 manifest must hold beyond its fields' types, or undefined when it holds. */
function manifestShapeProblem(m: {
  format: number;
  type: string;
  engine?: string;
  reference?: string;
  chain?: string[];
  backupId: string;
  objects: { content?: string; name: string }[];
}): string | undefined {
  if (m.format === 1) {
    if (m.type !== 'full' || m.engine !== undefined || m.reference !== undefined || m.chain !== undefined) return 'a format 1 manifest describes a full backup of the basebackup engine';
    if (m.objects.some((o) => o.content !== undefined)) return 'a format 1 manifest names no files-engine objects';
    return undefined;
  }
  if (m.engine !== 'files') return 'a format 2 manifest is a files-engine backup (engine "files")';
  if (m.objects.filter((o) => o.content === 'file-list').length !== 1) return 'a format 2 manifest names exactly one file-list object';
  const chain = m.chain ?? [];
  if (m.type === 'full') {
    if (m.reference !== undefined || chain.length > 0) return 'a full backup has no reference and no chain';
    return undefined;
  }
  if (m.reference === undefined || chain.length === 0 || chain[chain.length - 1] !== m.reference) return `a ${m.type} backup names its reference, last in its chain`;
  if (!chain.every((id, i) => i === 0 || chain[i - 1]! < id) || chain[chain.length - 1]! >= m.backupId) return 'a chain runs oldest first and ends before the backup itself';
  return undefined;
}

export type BackupObject = z.infer<typeof BackupObjectSchema>;
export type BackupManifest = z.infer<typeof BackupManifestSchema>;

/** Every backup a restore of `manifest` reads objects from, oldest first, `manifest` itself last. */
export function restoreChain(manifest: BackupManifest): string[] {
  return [...(manifest.chain ?? []), manifest.backupId];
}

export function serializeManifest(manifest: BackupManifest): Buffer {
  return Buffer.from(`${JSON.stringify(BackupManifestSchema.parse(manifest), null, 2)}\n`);
}
