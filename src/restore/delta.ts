import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PageReaderPool } from '../postgres/page-reader.js';
import { UsageError } from '../errors.js';
import { mapConcurrently } from '../repo/concurrent-reads.js';
import { entryKey, type FileListEntry } from '../repo/file-list.js';
import { sha256Hex } from '../stream/checksum.js';

/**
 * `restore --delta`: what an existing data directory (a stopped former primary, a lagging replica) already holds right.
 * A file is kept when it has the listed size and sha256; everything the list does not name is removed, as PostgreSQL
 * would find it otherwise (old WAL in pg_wal, relations dropped since, a stale postmaster.pid).
 */
export interface DeltaScan {
  /** entryKeys of files that are already right. */
  keep: Set<string>;
  /** Bytes of those files. */
  keptBytes: number;
  /** Paths removed because the backup does not have them. */
  removed: number;
}

/** Files below this size are hashed on the main thread, SMALL_FILES_AT_ONCE of them read at a time. */
const SMALL_FILE_BYTES = 256 * 1024;
const SMALL_FILES_AT_ONCE = 16;
const LSTATS_AT_ONCE = 32;

/** Names at the top of a data directory that belong to the file system, not to PostgreSQL. */
const NOT_POSTGRES = new Set(['lost+found']);

/** The control file: removed before anything else changes and written last, so that a delta cut short cannot start. */
export const CONTROL_FILE = 'global/pg_control';

/**
 * Refuses a delta restore over a directory of another cluster: its pg_control must carry the backup's system
 * identifier (a data directory of another cluster would be turned into a mix of both).
 */
export async function checkDeltaTarget(pgdata: string, systemIdentifier: string, pgMajor: number): Promise<void> {
  const version = (await readFile(join(pgdata, 'PG_VERSION'), 'utf8').catch(() => '')).trim();
  if (version !== String(pgMajor)) {
    throw new UsageError(`--delta: ${pgdata} holds a PostgreSQL ${version || '?'} data directory, the backup is of PostgreSQL ${pgMajor}`, 'restore into an empty directory, or replace it with --force');
  }
  const control = await readFile(join(pgdata, CONTROL_FILE)).catch(() => undefined);
  // A delta cut short leaves no pg_control: the directory is then still this cluster's, half restored.
  if (control === undefined) return;
  const found = control.length >= 8 ? control.readBigUInt64LE(0).toString() : '?';
  if (found !== systemIdentifier) {
    throw new UsageError(
      `--delta: ${pgdata} belongs to another cluster (system identifier ${found}, the backup's is ${systemIdentifier})`,
      'a delta restore only brings a data directory of the same cluster up to date: restore into an empty directory, or replace it with --force',
    );
  }
}

export async function scanForDelta(list: readonly FileListEntry[], roots: ReadonlyMap<number, string>, jobs: number, log: (m: string) => void): Promise<DeltaScan> {
  const wanted = new Map(list.map((e) => [entryKey(e), e]));
  const candidates: { key: string; path: string; size: number; sha256: string }[] = [];
  let removed = 0;

  const remove = async (path: string): Promise<void> => {
    await rm(path, { recursive: true, force: true });
    removed++;
  };

  for (const [oid, root] of roots) {
    const tablespace = oid === 0 ? undefined : oid;
    // In a tablespace's location only this cluster's version directories are ours to clean.
    const tops = tablespace === undefined ? undefined : new Set(list.filter((e) => e.tablespace === tablespace).map((e) => e.path.split('/')[0]!));
    const walk = async (relative: string): Promise<void> => {
      const directory = relative === '' ? root : join(root, relative);
      const names = (await readdir(directory).catch(() => [] as string[])).filter((name) => relative !== '' || (!NOT_POSTGRES.has(name) && (tops === undefined || tops.has(name))));
      // A database directory holds thousands of files: their lstat calls go out together (cold metadata is a disk read).
      const infos = await mapConcurrently(names, LSTATS_AT_ONCE, (name) => lstat(join(directory, name)));
      for (const [index, name] of names.entries()) {
        const path = relative === '' ? name : `${relative}/${name}`;
        const absolute = join(root, path);
        const info = infos[index]!;
        const entry = wanted.get(entryKey({ path, ...(tablespace === undefined ? {} : { tablespace }) }));
        // pg_wal may be a link to another disk: keep the link, clean what is behind it.
        const isDirectory = info.isDirectory() || (tablespace === undefined && path === 'pg_wal' && info.isSymbolicLink() && entry?.type === 'dir');
        if (entry === undefined || (entry.type === 'dir') !== isDirectory || (entry.type === 'file' && !info.isFile()) || (entry.type === 'link' && !info.isSymbolicLink())) {
          await remove(absolute);
          continue;
        }
        if (entry.type === 'dir') await walk(path);
        else if (entry.type === 'file' && info.size === entry.size && path !== CONTROL_FILE) candidates.push({ key: entryKey(entry), path: absolute, size: entry.size, sha256: entry.sha256 });
      }
    };
    await walk('');
  }

  const keep = new Set<string>();
  let keptBytes = 0;
  let checked = 0;
  const check = (candidate: (typeof candidates)[number], sha256: string): void => {
    if (sha256 === candidate.sha256) {
      keep.add(candidate.key);
      keptBytes += candidate.size;
    }
    checked++;
  };
  // Hashing is most of a delta restore's work on a directory that is nearly right. Large files are hashed on `jobs`
  // reader threads, largest first (a 1 GiB segment left to the end would be hashed by one thread while the others
  // wait). The many small ones (catalogs, SLRUs, free space maps: most of the files, a few % of the bytes) wait on the
  // disk more than they hash: many are read at once beside them, and hashed here.
  const large = candidates.filter((c) => c.size >= SMALL_FILE_BYTES).sort((a, b) => b.size - a.size);
  const small = candidates.filter((c) => c.size < SMALL_FILE_BYTES);
  const readers = new PageReaderPool(jobs);
  try {
    await Promise.all([
      mapConcurrently(large, jobs, async (candidate) => check(candidate, await readers.hash(candidate.path))),
      mapConcurrently(small, SMALL_FILES_AT_ONCE, async (candidate) => check(candidate, sha256Hex(await readFile(candidate.path)))),
    ]);
  } finally {
    await readers.close();
  }
  log(`restore --delta: ${keep.size} of ${checked} same-size files already match the backup; ${removed} entries the backup does not have were removed`);
  return { keep, keptBytes, removed };
}
