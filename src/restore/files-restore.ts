import { mkdir, readlink, rm, symlink, truncate } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VerificationError } from '../errors.js';
import type { FileListEntry } from '../repo/file-list.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { FilesRestorePlan, ObjectExtract } from './files-plan.js';
import { applyBlockRuns } from './block-runs.js';
import { runOrdered } from './ordered-tasks.js';
import { unpackObject } from './unpack-object.js';

export interface FilesRestoreRun {
  store: ObjectStore;
  layout: RepositoryLayout;
  plan: FilesRestorePlan;
  /** Where each root is written: the data directory (key 0) and each tablespace by oid. */
  roots: ReadonlyMap<number, string>;
  jobs: number;
  untouched: string;
  /**
   * A member to hold back from its object (a delta restore's global/pg_control): not written here, but by the
   * `writeLast` returned, once the caller has made everything else durable.
   */
  last?: { path: string };
  onBytes?: (stored: number) => void;
  log: (message: string) => void;
  /** The identity file to decrypt a layer's objects with, when that backup is encrypted; undefined: stored plain. */
  identityFor?: (backupId: string) => string | undefined;
}

/**
 * Runs a files-engine restore plan: the directories and links first, then the objects of every layer (oldest backup
 * first) N at a time, an object of block runs once the objects holding the older parts of its files are in, and
 * finally every file rebuilt from block runs cut to its listed size.
 */
export async function runFilesRestore(run: FilesRestoreRun): Promise<{ writeLast?: () => Promise<void> }> {
  const rootOf = (tablespace: number | undefined): string => {
    const root = run.roots.get(tablespace ?? 0);
    if (root === undefined) throw new VerificationError(`the file list names tablespace ${tablespace} that the backup's objects do not`, 'the backup is damaged: run pgdr verify');
    return root;
  };
  await createStructure(run.plan.structure, rootOf);

  let storedDone = 0;
  const counted = new Map<ObjectExtract, number>();
  const report = (extract: ObjectExtract, bytes: number): void => {
    storedDone += bytes - (counted.get(extract) ?? 0);
    counted.set(extract, bytes);
    run.onBytes?.(storedDone);
  };

  let heldBack: ObjectExtract | undefined;
  const extracts = run.plan.layers.flatMap((layer) => layer.extracts);
  await runOrdered(extracts, run.jobs, (extract) => extract.after, async (extract) => {
    if (extract.object.content === 'blocks') {
      await applyBlockRuns({
        store: run.store,
        layout: run.layout,
        backupId: extract.backupId,
        object: extract.object,
        runs: extract.runs,
        rootOf,
        untouched: run.untouched,
        onBytes: (bytes) => report(extract, bytes),
        ...identity(run, extract.backupId),
      });
      return;
    }
    const directory = rootOf(extract.tablespace);
    let members = extract.members;
    if (run.last !== undefined && extract.tablespace === undefined && members !== 'all' && members.includes(run.last.path)) {
      heldBack = extract;
      members = members.filter((m) => m !== run.last!.path);
      if (members.length === 0) return;
    }
    await unpackObject({
      store: run.store,
      layout: run.layout,
      backupId: extract.backupId,
      object: extract.object,
      directory,
      ...(members === 'all' ? {} : { members }),
      untouched: run.untouched,
      onBytes: (bytes) => report(extract, bytes),
      ...identity(run, extract.backupId),
    });
  });
  for (const entry of run.plan.truncate) await truncate(join(rootOf(entry.tablespace), entry.path), entry.size);
  const last = heldBack;
  if (last === undefined) return {};
  return {
    writeLast: () =>
      unpackObject({
        store: run.store,
        layout: run.layout,
        backupId: last.backupId,
        object: last.object,
        directory: rootOf(undefined),
        members: [run.last!.path],
        untouched: run.untouched,
        ...identity(run, last.backupId),
      }),
  };
}

function identity(run: FilesRestoreRun, backupId: string): { identityFile?: string } {
  const file = run.identityFor?.(backupId);
  return file === undefined ? {} : { identityFile: file };
}

/** Directories with their modes, and links (a link already right is kept). */
async function createStructure(structure: readonly FileListEntry[], rootOf: (tablespace: number | undefined) => string): Promise<void> {
  for (const entry of structure) {
    const path = join(rootOf(entry.tablespace), entry.path);
    if (entry.type === 'dir') {
      await mkdir(path, { recursive: true, mode: entry.mode });
    } else if (entry.type === 'link') {
      const current = await readlink(path).catch(() => undefined);
      if (current === entry.target) continue;
      await rm(path, { force: true, recursive: true });
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await symlink(entry.target, path);
    }
  }
}
