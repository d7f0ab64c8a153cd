import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Look-ahead markers. When `wal push` archives files PostgreSQL has not asked for yet (their .ready files
 * already exist), it leaves `<spool>/<cluster>/<name>.ok` holding the sha256 it stored. When PostgreSQL then asks
 * for that file, the fast path compares the local file's sha256 with the marker and answers without touching
 * the repository or loading the storage drivers. A marker that does not match is ignored, never trusted.
 * This module imports only node:fs and node:path because the fast path runs before anything else is loaded.
 */
export interface SpoolMarker {
  sha256: string;
  repo: string;
}

export function markerPath(spoolDir: string, cluster: string, walFileName: string): string {
  return join(spoolDir, cluster, `${walFileName}.ok`);
}

export function writeMarker(spoolDir: string, cluster: string, walFileName: string, marker: SpoolMarker): void {
  const dir = join(spoolDir, cluster);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const final = markerPath(spoolDir, cluster, walFileName);
  const temp = `${final}.tmp-${process.pid}`;
  writeFileSync(temp, JSON.stringify(marker));
  renameSync(temp, final);
}

export function readMarker(spoolDir: string, cluster: string, walFileName: string): SpoolMarker | null {
  try {
    const parsed = JSON.parse(readFileSync(markerPath(spoolDir, cluster, walFileName), 'utf8')) as Partial<SpoolMarker>;
    if (typeof parsed.sha256 !== 'string' || typeof parsed.repo !== 'string') return null;
    return { sha256: parsed.sha256, repo: parsed.repo };
  } catch {
    return null;
  }
}

export function removeMarker(spoolDir: string, cluster: string, walFileName: string): void {
  try {
    unlinkSync(markerPath(spoolDir, cluster, walFileName));
  } catch {
    // already gone
  }
}

/** Where the background pusher (src/wal/background-pusher.ts) records its pid. */
export function pusherPidFile(spoolDir: string, cluster: string): string {
  return join(spoolDir, cluster, 'pusher.pid');
}

/** The pid of a live background pusher for this spool and cluster, if any. */
export function runningPusher(spoolDir: string, cluster: string): number | undefined {
  try {
    const pid = Number(readFileSync(pusherPidFile(spoolDir, cluster), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? Number.NaN : undefined;
  }
}
