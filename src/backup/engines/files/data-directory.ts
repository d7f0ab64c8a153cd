/**
 * What a file-level backup of a PostgreSQL data directory copies, and how it reads each file. The rules follow
 * PostgreSQL's documentation of the low-level backup API ("Backing Up the Data Directory") and what its own base
 * backup leaves out: runtime state that recovery rebuilds or must not see, WAL (archived separately), and the data
 * of unlogged and temporary relations (reset by recovery anyway).
 */

/** Directories kept empty in the backup: their contents are runtime state. */
const EMPTIED_DIRECTORIES = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);

/** Files of the data directory's top level that a backup never holds. */
const TOP_LEVEL_SKIPPED = new Set([
  'postmaster.pid',
  'postmaster.opts',
  // A non-exclusive backup returns its label and map from pg_backup_stop; leftovers of an old exclusive backup
  // would make recovery start from the wrong checkpoint.
  'backup_label',
  'backup_label.old',
  'tablespace_map',
  'tablespace_map.old',
  'backup_manifest',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  // A restore pgdr made leaves these behind; they are not part of the cluster.
  'recovery.signal',
  'pgdr-restore.log',
]);

/** A relation's file: `<relfilenode>[_fork][.<segment>]`. */
const RELATION_FILE = /^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/;
const TEMP_RELATION_FILE = /^t\d+_\d+(?:_(?:fsm|vm|init))?(?:\.\d+)?$/;

/** Blocks per 1 GB relation segment file, for the block number a page checksum is computed with. */
export const RELATION_SEGMENT_BLOCKS = 131072;

export type EntryDecision = 'copy' | 'skip' | 'empty-directory';

/**
 * Whether a data directory entry (path relative to the data directory, `/`-separated) is copied, left out, or kept
 * as an empty directory. Unlogged relations need the whole directory listing: see `unloggedRelationFiles`.
 */
export function dataDirectoryDecision(relativePath: string, isDirectory: boolean): EntryDecision {
  const parts = relativePath.split('/');
  const name = parts[parts.length - 1]!;
  if (name.startsWith('pgsql_tmp') || name.startsWith('pg_internal.init')) return 'skip';
  if (parts.length === 1) {
    if (isDirectory && EMPTIED_DIRECTORIES.has(name)) return 'empty-directory';
    if (!isDirectory && TOP_LEVEL_SKIPPED.has(name)) return 'skip';
  }
  if (!isDirectory && TEMP_RELATION_FILE.test(name) && isDatabaseDirectory(parts.slice(0, -1))) return 'skip';
  return 'copy';
}

/** The same decision for a path relative to a tablespace's version directory (PG_15_<catalog version>/...). */
export function tablespaceDecision(relativePath: string, isDirectory: boolean): EntryDecision {
  const parts = relativePath.split('/');
  const name = parts[parts.length - 1]!;
  if (name.startsWith('pgsql_tmp') || name.startsWith('pg_internal.init')) return 'skip';
  if (!isDirectory && TEMP_RELATION_FILE.test(name)) return 'skip';
  return 'copy';
}

/**
 * base/<oid> and global hold relation files in the data directory, and so does pg_tblspc/<oid>/PG_xx/<oid> for an
 * in-place tablespace (a directory rather than a link); in a tablespace's own directory, PG_xx/<oid>.
 */
function isDatabaseDirectory(parts: readonly string[]): boolean {
  if (parts.length === 1) return parts[0] === 'global';
  if (parts.length === 2) return parts[0] === 'base' && /^\d+$/.test(parts[1]!);
  return parts.length === 4 && parts[0] === 'pg_tblspc' && /^\d+$/.test(parts[1]!) && /^PG_\d+_\d+$/.test(parts[2]!) && /^\d+$/.test(parts[3]!);
}

/**
 * The files of unlogged relations a backup leaves out: every fork but the init fork of a relation that has one.
 * Recovery recreates the main fork from the init fork, so copying the rest would only waste space.
 */
export function unloggedRelationFiles(namesInDirectory: readonly string[]): Set<string> {
  const unlogged = new Set<string>();
  for (const name of namesInDirectory) {
    const m = RELATION_FILE.exec(name);
    if (m && m[2] === 'init') unlogged.add(m[1]!);
  }
  const skipped = new Set<string>();
  if (unlogged.size === 0) return skipped;
  for (const name of namesInDirectory) {
    const m = RELATION_FILE.exec(name);
    if (m && unlogged.has(m[1]!) && m[2] !== 'init') skipped.add(name);
  }
  return skipped;
}

export interface RelationFileInfo {
  /** The main fork (`<relfilenode>` or `<relfilenode>.<n>`): its pages carry the LSN of their last change. */
  mainFork: boolean;
  /** Block number of the file's first page within its relation (segment × 131072). */
  firstBlock: number;
}

/**
 * A relation file's place, when `relativePath` (in the data directory, or in a tablespace when `inTablespace`) is one:
 * its pages have PostgreSQL page headers and, on a cluster with data checksums, checksums.
 */
export function relationFileInfo(relativePath: string, inTablespace: boolean): RelationFileInfo | undefined {
  const parts = relativePath.split('/');
  const name = parts[parts.length - 1]!;
  const dir = parts.slice(0, -1);
  const inDatabase = inTablespace ? dir.length === 2 && /^PG_\d+_\d+$/.test(dir[0]!) && /^\d+$/.test(dir[1]!) : isDatabaseDirectory(dir);
  if (!inDatabase) return undefined;
  const m = RELATION_FILE.exec(name);
  if (!m) return undefined;
  return { mainFork: m[2] === undefined, firstBlock: Number(m[3] ?? 0) * RELATION_SEGMENT_BLOCKS };
}
