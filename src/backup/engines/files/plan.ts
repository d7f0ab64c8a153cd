import type { FileEntry } from '../../../repo/file-list.js';
import { BLOCK_SIZE } from '../../../postgres/page.js';
import { relationFileInfo } from './data-directory.js';
import type { FoundEntry } from './walk.js';

/**
 * What the files engine does with each file, decided before anything is read:
 *
 * - `whole`: read it and store it (a full backup stores every file this way).
 * - `reference`: unchanged since the reference backup, so the file list points at the bytes already stored.
 * - `blocks`: a relation's main fork that changed: read it and store only the pages whose LSN is at or after the
 *   reference backup's start, or that the reference did not have. A page with an older LSN has not been written since
 *   before the reference began (PostgreSQL stamps every WAL-logged change on the page, and a backup's start
 *   checkpoint flushes everything older), so the reference's copy is the page as it is now, up to hint bits.
 */
export type FileAction =
  | { kind: 'whole' }
  | { kind: 'reference'; base: FileEntry }
  | { kind: 'blocks'; base: FileEntry; sinceLsn: bigint };

export interface ReferenceBackup {
  backupId: string;
  /** When the reference began reading files (its manifest's startTime). */
  startTime: Date;
  startLsn: bigint;
  /** The reference's file list, by entryKey. */
  files: ReadonlyMap<string, FileEntry>;
}

/**
 * How far before the reference's start a file's mtime must lie for "same size, same mtime" to prove it unchanged.
 * A write in the same clock tick as the reference's read would leave the mtime as it was; 2 s covers coarse file
 * system timestamps and a small step of the clock.
 */
export const MTIME_MARGIN_NS = 2_000_000_000n;

export function planFileAction(found: FoundEntry, reference: ReferenceBackup | undefined): FileAction {
  if (reference === undefined || found.type !== 'file') return { kind: 'whole' };
  const base = reference.files.get(`${found.tablespace ?? 0}:${found.path}`);
  if (base === undefined) return { kind: 'whole' };
  const referenceStartNs = BigInt(reference.startTime.getTime()) * 1_000_000n;
  if (base.size === found.size && base.mtime === String(found.mtimeNs) && found.mtimeNs < referenceStartNs - MTIME_MARGIN_NS) {
    return { kind: 'reference', base };
  }
  const relation = relationFileInfo(found.path, found.tablespace !== undefined);
  if (relation?.mainFork && found.size % BLOCK_SIZE === 0 && base.size % BLOCK_SIZE === 0) {
    return { kind: 'blocks', base, sinceLsn: reference.startLsn };
  }
  return { kind: 'whole' };
}

/** One object the engine writes: whole files (and the root's directories and links) or changed blocks. */
export interface BundleTask {
  content: 'files' | 'blocks';
  tablespace?: number;
  entries: FoundEntry[];
  /** Bytes the task reads. */
  bytes: number;
}

export interface BundlePlanOptions {
  jobs: number;
}

const MIN_BUNDLE = 8 * 1024 * 1024;
const MAX_BUNDLE = 128 * 1024 * 1024;

/**
 * Groups the entries to read into objects: small files together (a repository of a database with 100,000 small
 * relation files then holds hundreds of objects, not 100,000), a large file on its own, directories and links in the
 * first object of their root (so a tar of that object recreates the empty ones). Bundles are sized so that every
 * worker has several, and returned largest first, so the workers finish together.
 */
export function planBundles(entries: readonly FoundEntry[], actions: ReadonlyMap<FoundEntry, FileAction>, options: BundlePlanOptions): BundleTask[] {
  const readBytes = entries.reduce((sum, e) => sum + (e.type === 'file' && actions.get(e)?.kind !== 'reference' ? e.size : 0), 0);
  const target = Math.min(MAX_BUNDLE, Math.max(MIN_BUNDLE, Math.ceil(readBytes / Math.max(1, options.jobs * 4))));
  const tasks: BundleTask[] = [];
  const open = new Map<string, BundleTask>();
  const firstOfRoot = new Map<number, BundleTask>();
  const structure: FoundEntry[] = [];

  for (const entry of entries) {
    if (entry.type !== 'file') {
      structure.push(entry);
      continue;
    }
    const action = actions.get(entry) ?? { kind: 'whole' };
    if (action.kind === 'reference') continue;
    const content = action.kind === 'blocks' ? 'blocks' : 'files';
    const slot = `${content}:${entry.tablespace ?? 0}`;
    if (entry.size >= target) {
      tasks.push({ content, ...(entry.tablespace === undefined ? {} : { tablespace: entry.tablespace }), entries: [entry], bytes: entry.size });
      continue;
    }
    let task = open.get(slot);
    if (task === undefined || task.bytes + entry.size > target) {
      task = { content, ...(entry.tablespace === undefined ? {} : { tablespace: entry.tablespace }), entries: [], bytes: 0 };
      tasks.push(task);
      open.set(slot, task);
    }
    task.entries.push(entry);
    task.bytes += entry.size;
  }
  for (const task of tasks) {
    if (task.content === 'files' && !firstOfRoot.has(task.tablespace ?? 0)) firstOfRoot.set(task.tablespace ?? 0, task);
  }
  for (const entry of structure) {
    const root = entry.tablespace ?? 0;
    let task = firstOfRoot.get(root);
    if (task === undefined) {
      task = { content: 'files', ...(entry.tablespace === undefined ? {} : { tablespace: entry.tablespace }), entries: [], bytes: 0 };
      tasks.push(task);
      firstOfRoot.set(root, task);
    }
    task.entries.push(entry);
  }
  // Directories before what they hold, within each object.
  for (const task of tasks) task.entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return tasks.sort((a, b) => b.bytes - a.bytes);
}
