import type { Dirent } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ServiceError } from '../../../errors.js';
import { dataDirectoryDecision, tablespaceDecision, unloggedRelationFiles } from './data-directory.js';

/** One thing found in the data directory or a tablespace, before it is read. */
export interface FoundEntry {
  /** Relative to the data directory, or to the tablespace's location when `tablespace` is set. */
  path: string;
  tablespace?: number;
  type: 'file' | 'dir' | 'link';
  /** Where it is on this host. */
  absolute: string;
  mode: number;
  size: number;
  /** Nanoseconds since 1970. */
  mtimeNs: bigint;
  target?: string;
}

export interface FoundTablespace {
  oid: number;
  /** The link's target: where the tablespace lives. */
  location: string;
}

export interface WalkResult {
  entries: FoundEntry[];
  tablespaces: FoundTablespace[];
}

/**
 * Every entry a backup copies: the data directory (pg_tblspc links followed into each tablespace's version
 * directory, `PG_<major>_<catalog version>`, the only one that belongs to this server), minus what
 * data-directory.ts leaves out. A file that vanishes while the walk runs (a dropped table) is simply not there.
 */
export async function walkDataDirectory(pgdata: string, tablespaceVersionDirectory: string): Promise<WalkResult> {
  const entries: FoundEntry[] = [];
  const tablespaces: FoundTablespace[] = [];

  async function walk(root: string, relative: string, tablespace: number | undefined): Promise<void> {
    const directory = relative === '' ? root : join(root, relative);
    let children: Dirent[];
    try {
      children = await readdir(directory, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw unreadable(directory, err);
    }
    const unlogged = unloggedRelationFiles(children.map((c) => c.name));
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const child of children) {
      const path = relative === '' ? child.name : `${relative}/${child.name}`;
      const absolute = join(root, path);
      if (unlogged.has(child.name)) continue;
      if (tablespace === undefined && path.startsWith('pg_tblspc/') && path.split('/').length === 2 && child.isSymbolicLink()) {
        tablespaces.push(await tablespaceOf(child.name, absolute));
        continue;
      }
      const info = await lstat(absolute, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw unreadable(absolute, err);
      });
      if (info === undefined) continue;
      // pg_wal may be a link to another disk (initdb -X): the backup keeps it as an empty directory.
      const isDirectory = info.isDirectory() || (tablespace === undefined && path === 'pg_wal' && info.isSymbolicLink());
      const decision = tablespace === undefined ? dataDirectoryDecision(path, isDirectory) : tablespaceDecision(path, isDirectory);
      if (decision === 'skip') continue;
      const common = { path, ...(tablespace === undefined ? {} : { tablespace }), absolute, mode: Number(info.mode & 0o7777n), mtimeNs: info.mtimeNs };
      if (isDirectory) {
        entries.push({ ...common, type: 'dir', mode: info.isSymbolicLink() ? 0o700 : common.mode, size: 0 });
        if (decision === 'empty-directory') {
          // pg_wal/archive_status must exist for the archiver to start.
          if (path === 'pg_wal') entries.push({ ...common, path: 'pg_wal/archive_status', absolute: join(absolute, 'archive_status'), type: 'dir', mode: 0o700, size: 0 });
          continue;
        }
        await walk(root, path, tablespace);
      } else if (info.isSymbolicLink()) {
        entries.push({ ...common, type: 'link', size: 0, target: await readlink(absolute) });
      } else if (info.isFile()) {
        entries.push({ ...common, type: 'file', size: Number(info.size) });
      }
      // Sockets, pipes and devices have no place in a data directory; PostgreSQL makes none there.
    }
  }

  await walk(pgdata, '', undefined);
  for (const ts of tablespaces) {
    const versionDirectory = join(ts.location, tablespaceVersionDirectory);
    const info = await stat(versionDirectory).catch(() => undefined);
    if (info === undefined || !info.isDirectory()) {
      throw new ServiceError(
        `tablespace ${ts.oid} at ${ts.location} has no ${tablespaceVersionDirectory} directory`,
        'check that the tablespace location is mounted on this host as it is for the server',
      );
    }
    entries.push({ path: tablespaceVersionDirectory, tablespace: ts.oid, absolute: versionDirectory, type: 'dir', mode: info.mode & 0o7777, size: 0, mtimeNs: BigInt(Math.round(info.mtimeMs)) * 1_000_000n });
    await walk(ts.location, tablespaceVersionDirectory, ts.oid);
  }
  return { entries, tablespaces };
}

async function tablespaceOf(name: string, link: string): Promise<FoundTablespace> {
  const oid = Number(name);
  if (!/^\d+$/.test(name) || !Number.isSafeInteger(oid) || oid <= 0) {
    throw new ServiceError(`pg_tblspc/${name} is a link but not a tablespace oid`, 'remove what is not PostgreSQL\'s from pg_tblspc');
  }
  const location = await readlink(link);
  if (!location.startsWith('/')) {
    throw new ServiceError(`tablespace ${oid} links to the relative path ${location}`, 'PostgreSQL makes tablespace links absolute: check pg_tblspc');
  }
  return { oid, location };
}

function unreadable(path: string, err: unknown): ServiceError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ServiceError(
    `cannot read ${path}${code ? ` (${code})` : ''}`,
    code === 'EACCES' ? 'run pgdr as the PostgreSQL OS user (postgres), or use --engine basebackup' : 'check the data directory and its tablespaces',
    err,
  );
}
