import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, realpath, rename, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { PgdrError, UsageError, errorMessage } from '../errors.js';
import { describeCurrentAccount, describeOwnership } from '../os/accounts.js';
import { failpoint } from '../process/failpoint.js';
import { formatBytes } from '../stream/progress.js';

/**
 * A restore must never make a disaster worse. It unpacks into a staging directory on the same file system as its
 * target and swaps the result in only after every object passed its checksum and unpacked; until then the target is
 * exactly as it was. Replacing (`--force`) keeps the old directory aside, renamed, until the swap is done.
 *
 * Beside the target:   <parent>/.<name>.pgdr-restore-<id>   then rename over <parent>/<name>
 * Target is a mount point (a volume): the staging directory is inside it, <target>/.pgdr-restore-<id>, and the
 * swap moves entries, since a mount point cannot be renamed.
 */

export const STAGING_MARK = '.pgdr-restore-';
export const REPLACED_MARK = '.pgdr-replaced-';

export interface StagingOptions {
  /** Replace a non-empty target (after `replaceable` agrees). */
  force: boolean;
  /**
   * Work in a non-empty target itself instead of a staging directory (a delta restore, which rewrites only what
   * differs): swap and discard then do nothing. An empty or absent target is staged as usual.
   */
  inPlace?: boolean;
  /** What the directory is, for messages: "data directory", "tablespace ts1". */
  what: string;
  /** Bytes the restore writes into it, checked against the file system's free space; undefined skips the check. */
  expectedBytes?: number;
  /**
   * Why a non-empty target may not be replaced, or undefined when it may. Called only with --force; it sees the
   * target's entries (pgdr's own staging leftovers removed).
   */
  refuseReplace(target: string, entries: readonly string[]): string | undefined;
  /** Hint for refuseReplace's answer. */
  refuseHint: string;
  log(message: string): void;
}

export interface StagedDirectory {
  /** Where the restored directory ends up (symlinks resolved). */
  readonly target: string;
  /** Where to unpack now. */
  readonly staging: string;
  /** Whether the target held something the swap replaces. */
  readonly replacing: boolean;
  /** Moves the staged result into place; what was there is kept aside until finish(). */
  swap(log: (message: string) => void): Promise<void>;
  /** After a successful swap elsewhere failed: puts the old directory back (the restored one is removed). */
  undo(): Promise<void>;
  /** Removes the old directory kept aside by swap(). */
  finish(log: (message: string) => void): Promise<void>;
  /** Removes the staging directory; the target is untouched. Safe to call in any state before swap(). */
  discard(): Promise<void>;
}

type Existing = { kind: 'absent' } | { kind: 'directory'; entries: string[]; mountPoint: boolean };

export async function stageRestoreDirectory(path: string, options: StagingOptions): Promise<StagedDirectory> {
  const target = await resolveTarget(path, options.what);
  const existing = await inspect(target, options.what);
  const entries = existing.kind === 'directory' ? existing.entries.filter((e) => !isPgdrLeftover(e)) : [];
  const replacing = entries.length > 0;
  if (replacing) {
    if (!options.force) {
      throw new UsageError(
        `${options.what} ${target} is not empty`,
        'restore into an empty or new directory, or pass --force to replace it (the old one is kept until the new one is complete)',
      );
    }
    const refusal = options.refuseReplace(target, entries);
    if (refusal !== undefined) throw new UsageError(`${options.inPlace ? '--delta' : '--force'} refused for ${target}: ${refusal}; nothing was deleted`, options.refuseHint);
    if (options.inPlace) return inPlaceDirectory(target);
  }

  // The pid in the name tells a later restore whether the staging directory's writer is still alive.
  const id = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const inside = existing.kind === 'directory' && existing.mountPoint;
  const parent = dirname(target);
  await clearLeftovers(inside ? target : parent, inside ? '' : `.${basename(target)}`, existing.kind === 'absent', options);
  const staging = inside ? join(target, `${STAGING_MARK}${id}`) : join(parent, `.${basename(target)}${STAGING_MARK}${id}`);
  if (!inside) await makeDirectory(parent, options.what, { recursive: true });
  if (options.expectedBytes !== undefined) await checkFreeSpace(inside ? target : parent, options, replacing);
  await makeDirectory(staging, options.what, { recursive: false });

  let replaced: string | undefined;
  let swapped = false;
  return {
    target,
    staging,
    replacing,
    async swap(log) {
      if (inside) {
        replaced = replacing ? join(target, `${REPLACED_MARK}${id}`) : undefined;
        await swapInside(target, staging, replaced, entries, options.what, log);
      } else {
        if (replacing) {
          replaced = join(parent, `.${basename(target)}${REPLACED_MARK}${id}`);
          await rename(target, replaced);
          log(`the old ${options.what} is kept at ${replaced} until the new one is in place`);
          await failpoint('restore:mid-swap', target);
          try {
            await rename(staging, target);
          } catch (err) {
            await rename(replaced, target);
            replaced = undefined;
            throw err;
          }
        } else {
          // rename() replaces an empty directory atomically; a target that is absent is simply created.
          await rename(staging, target);
        }
        await syncDirectory(parent);
      }
      swapped = true;
    },
    async undo() {
      if (!swapped) return;
      if (inside) {
        await unswapInside(target, staging, replaced, entries);
      } else {
        await rename(target, staging);
        if (replaced !== undefined) await rename(replaced, target);
        await syncDirectory(parent);
      }
      replaced = undefined;
      swapped = false;
      await rm(staging, { recursive: true, force: true });
    },
    async finish(log) {
      if (replaced === undefined) return;
      await rm(replaced, { recursive: true, force: true, maxRetries: 3 });
      log(`removed the old ${options.what} (${replaced})`);
      replaced = undefined;
    },
    async discard() {
      if (swapped) return;
      await rm(staging, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

function inPlaceDirectory(target: string): StagedDirectory {
  const nothing = async (): Promise<void> => undefined;
  return { target, staging: target, replacing: true, swap: nothing, undo: nothing, finish: nothing, discard: nothing };
}

/**
 * Swaps several staged directories in (a data directory and its tablespaces) as one step: if any swap fails, the
 * ones already done are undone, so the targets are all old or all new.
 */
export async function swapRestoreDirectories(dirs: readonly StagedDirectory[], log: (message: string) => void): Promise<void> {
  const done: StagedDirectory[] = [];
  try {
    for (const dir of dirs) {
      await dir.swap(log);
      done.push(dir);
    }
  } catch (err) {
    for (const dir of done.reverse()) await dir.undo().catch(() => undefined);
    throw err;
  }
  for (const dir of dirs) await dir.finish(log);
}

/**
 * What a killed restore left: a staging directory whose writer is gone is removed; a directory kept aside during a
 * swap holds the old data itself and is never removed by pgdr. If the target is missing too, the swap was cut in
 * the middle: the operator decides which copy to keep.
 */
async function clearLeftovers(dir: string, prefix: string, targetAbsent: boolean, options: StagingOptions): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const staging = new RegExp(`^${escapeRegExp(STAGING_MARK)}(\\d+)-`).exec(rest);
    if (staging && !isAlive(Number(staging[1]))) {
      await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
      options.log(`removed ${join(dir, name)}, left by an interrupted restore`);
      continue;
    }
    if (!rest.startsWith(REPLACED_MARK)) continue;
    const kept = join(dir, name);
    if (targetAbsent) {
      throw new UsageError(
        `${kept} holds the ${options.what} that an interrupted restore was replacing, and the target is missing`,
        `move it back (mv ${kept} <target>) to keep the old data, or remove it, then restore again`,
      );
    }
    options.log(`note: ${kept} holds an older ${options.what} kept aside by an interrupted restore; remove it once you do not need it`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function isPgdrLeftover(entry: string): boolean {
  return entry.startsWith(STAGING_MARK) || entry.startsWith(REPLACED_MARK);
}

async function resolveTarget(path: string, what: string): Promise<string> {
  const absolute = resolve(path);
  try {
    const info = await lstat(absolute);
    // A symlinked data directory (/var/lib/postgresql/15/main -> /data/pg) is restored where it points, not by
    // replacing the link with a directory on another file system.
    if (info.isSymbolicLink()) return await realpath(absolute);
    if (!info.isDirectory()) throw new UsageError(`${what} ${absolute} exists and is not a directory`, 'give the path of a directory (new, empty, or with --force a data directory to replace)');
    return absolute;
  } catch (err) {
    if (err instanceof PgdrError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return absolute;
    throw permissionOrUsage(err, absolute, what, 'inspect');
  }
}

async function inspect(target: string, what: string): Promise<Existing> {
  let info;
  try {
    info = await stat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    throw permissionOrUsage(err, target, what, 'inspect');
  }
  if (!info.isDirectory()) throw new UsageError(`${what} ${target} exists and is not a directory`, 'give the path of a directory');
  let entries: string[];
  try {
    entries = await readdir(target);
  } catch (err) {
    throw permissionOrUsage(err, target, what, 'read');
  }
  const parentInfo = await stat(dirname(target)).catch(() => undefined);
  return { kind: 'directory', entries, mountPoint: parentInfo !== undefined && parentInfo.dev !== info.dev };
}

async function makeDirectory(path: string, what: string, options: { recursive: boolean }): Promise<void> {
  try {
    await mkdir(path, { recursive: options.recursive, mode: 0o700 });
  } catch (err) {
    throw permissionOrUsage(err, path, what, 'create');
  }
}

/** EACCES and friends are the operator's to fix (exit 2): say who owns what and who pgdr runs as. */
function permissionOrUsage(err: unknown, path: string, what: string, action: string): PgdrError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') {
    return new UsageError(
      `cannot ${action} ${path} for the ${what}: permission denied (${describeOwnership(path)}; pgdr runs as ${describeCurrentAccount()})`,
      'run pgdr as the owner of the directory (usually the PostgreSQL OS user), or give that user write access to its parent',
      err,
    );
  }
  if (code === 'EROFS') return new UsageError(`cannot ${action} ${path}: the file system is read-only`, 'restore onto a writable file system', err);
  if (code === 'ENOSPC') return new UsageError(`cannot ${action} ${path}: no space left on the file system`, 'free space there, or restore elsewhere', err);
  return new UsageError(`cannot ${action} ${path} for the ${what}: ${errorMessage(err)}`, 'check the path and its permissions', err);
}

async function checkFreeSpace(dir: string, options: StagingOptions, replacing: boolean): Promise<void> {
  let free: number;
  try {
    const info = await statfs(dir);
    free = info.bavail * info.bsize;
  } catch {
    return; // a file system that cannot say: the unpack itself reports ENOSPC
  }
  const needed = options.expectedBytes ?? 0;
  if (free >= needed) return;
  throw new UsageError(
    `not enough free space for the ${options.what}: the restore needs about ${formatBytes(needed)} on the file system of ${dir}, which has ${formatBytes(free)} free` +
      (replacing ? ' (the old directory is kept until the new one is complete)' : ''),
    replacing
      ? 'free space, or move the old directory away yourself and restore into an empty one'
      : 'free space, or restore onto a larger file system',
  );
}

async function swapInside(
  target: string,
  staging: string,
  replaced: string | undefined,
  oldEntries: readonly string[],
  what: string,
  log: (message: string) => void,
): Promise<void> {
  if (replaced !== undefined) {
    await mkdir(replaced, { mode: 0o700 });
    log(`the old ${what} is kept in ${replaced} until the new one is in place`);
    for (const entry of oldEntries) await rename(join(target, entry), join(replaced, entry));
  }
  for (const entry of await readdir(staging)) await rename(join(staging, entry), join(target, entry));
  await rmdir(staging);
  await syncDirectory(target);
}

async function unswapInside(target: string, staging: string, replaced: string | undefined, oldEntries: readonly string[]): Promise<void> {
  await mkdir(staging, { recursive: true, mode: 0o700 });
  const keep = new Set([basename(staging), ...(replaced === undefined ? [] : [basename(replaced)])]);
  for (const entry of await readdir(target)) {
    if (!keep.has(entry)) await rename(join(target, entry), join(staging, entry));
  }
  if (replaced !== undefined) {
    for (const entry of oldEntries) await rename(join(replaced, entry), join(target, entry));
    await rmdir(replaced);
  }
  await syncDirectory(target);
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
