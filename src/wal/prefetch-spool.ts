import { closeSync, copyFileSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';

/**
 * Where `wal fetch` keeps WAL segments it downloaded ahead of PostgreSQL asking for them. One directory per
 * restoring data directory (restore_command runs with the data directory as its working directory), so two
 * restores on one host never share files; a `.source` file names the repository and cluster the files came from,
 * and files from anywhere else are never served. Like spool.ts, this module loads only node built-ins: the fast
 * path runs it before anything else.
 */
export interface PrefetchSource {
  repo: string;
  cluster: string;
}

export function prefetchDir(spoolDir: string, cluster: string, dataDirectory: string): string {
  const id = createHash('sha256').update(dataDirectory).digest('hex').slice(0, 16);
  return join(spoolDir, cluster, 'fetch', id);
}

function sourceMatches(dir: string, source: PrefetchSource): boolean {
  try {
    const recorded = JSON.parse(readFileSync(join(dir, '.source'), 'utf8')) as Partial<PrefetchSource>;
    return recorded.repo === source.repo && recorded.cluster === source.cluster;
  } catch {
    return false;
  }
}

/**
 * Moves a prefetched file to PostgreSQL's destination if there is one; true when it did. The file is copied next
 * to the destination, fsynced and renamed, because the spool may be on another filesystem.
 */
export function takePrefetched(dir: string, source: PrefetchSource, walFileName: string, destination: string): boolean {
  if (!sourceMatches(dir, source)) return false;
  const file = join(dir, walFileName);
  const temp = `${destination}.pgdr-${process.pid}`;
  try {
    copyFileSync(file, temp);
  } catch {
    return false;
  }
  const fd = openSync(temp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, destination);
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
  return true;
}

/** Starts a fresh prefetch directory for `source`, dropping whatever an earlier pass left. */
export function resetPrefetchDir(dir: string, source: PrefetchSource): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, '.source'), JSON.stringify(source));
}

export function prefetchedNames(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => !name.startsWith('.'));
  } catch {
    return [];
  }
}

/** A temp path inside the prefetch directory for a download in progress (never served: it starts with a dot). */
export function prefetchTempPath(dir: string, walFileName: string): string {
  return join(dir, `.${walFileName}.part-${process.pid}`);
}

export function publishPrefetched(tempPath: string, walFileName: string): void {
  renameSync(tempPath, join(dirname(tempPath), walFileName));
}
