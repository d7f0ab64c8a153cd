import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
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

/**
 * Who is pushing a file right now: `<spool>/<cluster>/<name>.busy`, holding the pusher's pid. PostgreSQL's own
 * archive_command and the background pusher both claim a file before they push it, so a file is uploaded once,
 * not by both (and no marker is left for a file PostgreSQL has already seen archived). A claim whose process is
 * gone is taken over.
 */
export function claimPath(spoolDir: string, cluster: string, walFileName: string): string {
  return join(spoolDir, cluster, `${walFileName}.busy`);
}

export function tryClaim(spoolDir: string, cluster: string, walFileName: string): boolean {
  mkdirSync(join(spoolDir, cluster), { recursive: true, mode: 0o700 });
  const path = claimPath(spoolDir, cluster, walFileName);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (claimOwner(spoolDir, cluster, walFileName) !== undefined) return false;
      try {
        unlinkSync(path);
      } catch {
        // another process took it over first
      }
    }
  }
  return false;
}

/** The live process that claimed the file, if any. */
export function claimOwner(spoolDir: string, cluster: string, walFileName: string): number | undefined {
  try {
    const pid = Number(readFileSync(claimPath(spoolDir, cluster, walFileName), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? Number.NaN : undefined;
  }
}

export function releaseClaim(spoolDir: string, cluster: string, walFileName: string): void {
  try {
    unlinkSync(claimPath(spoolDir, cluster, walFileName));
  } catch {
    // already gone
  }
}

/** Names that have a marker in the spool. */
export function markedFiles(spoolDir: string, cluster: string): string[] {
  try {
    return readdirSync(join(spoolDir, cluster))
      .filter((f) => f.endsWith('.ok'))
      .map((f) => f.slice(0, -'.ok'.length));
  } catch {
    return [];
  }
}

/**
 * Removes markers and stored records PostgreSQL no longer needs: the file is not marked ready any more (it was
 * archived through another path, or recycled). Keeps the spool no larger than the server's own backlog of ready
 * files. `keep` is the file the caller is pushing right now.
 */
export function sweepMarkers(spoolDir: string, cluster: string, pgWalDir: string, keep?: string): number {
  let removed = 0;
  try {
    for (const entry of readdirSync(join(spoolDir, cluster))) {
      if (!entry.endsWith('.partial')) continue;
      const name = entry.slice(0, -'.partial'.length);
      if (name !== keep && !existsSync(join(pgWalDir, 'archive_status', `${name}.ready`))) removePartialPush(spoolDir, cluster, name);
    }
  } catch {
    // no spool yet
  }
  const gone = (name: string): boolean => name !== keep && !existsSync(join(pgWalDir, 'archive_status', `${name}.ready`));
  for (const name of markedFiles(spoolDir, cluster)) {
    if (!gone(name)) continue;
    removeMarker(spoolDir, cluster, name);
    removed++;
  }
  for (const name of recordedFiles(spoolDir, cluster)) {
    if (!gone(name)) continue;
    removeStoredRecord(spoolDir, cluster, name);
    removed++;
  }
  return removed;
}

/**
 * A push that reached some repositories and not others (one was down): `<spool>/<cluster>/<name>.partial` names
 * those that hold the file, with its sha256, so PostgreSQL's retry stores it only in the rest instead of sending it
 * to each again. Trusted like a marker: only for the same content, and never for a repository it does not name.
 */
export interface PartialPush {
  sha256: string;
  /** WalPushTarget ids (URL and endpoint) that hold the file. */
  stored: string[];
}

function partialPath(spoolDir: string, cluster: string, walFileName: string): string {
  return join(spoolDir, cluster, `${walFileName}.partial`);
}

export function readPartialPush(spoolDir: string, cluster: string, walFileName: string): PartialPush | null {
  try {
    const parsed = JSON.parse(readFileSync(partialPath(spoolDir, cluster, walFileName), 'utf8')) as Partial<PartialPush>;
    if (typeof parsed.sha256 !== 'string' || !Array.isArray(parsed.stored) || !parsed.stored.every((s) => typeof s === 'string')) return null;
    return { sha256: parsed.sha256, stored: parsed.stored };
  } catch {
    return null;
  }
}

export function writePartialPush(spoolDir: string, cluster: string, walFileName: string, partial: PartialPush): void {
  mkdirSync(join(spoolDir, cluster), { recursive: true, mode: 0o700 });
  const final = partialPath(spoolDir, cluster, walFileName);
  const temp = `${final}.tmp-${process.pid}`;
  writeFileSync(temp, JSON.stringify(partial));
  renameSync(temp, final);
}

export function removePartialPush(spoolDir: string, cluster: string, walFileName: string): void {
  try {
    unlinkSync(partialPath(spoolDir, cluster, walFileName));
  } catch {
    // already gone
  }
}

/**
 * Stored records, for encrypted WAL. A retried `wal push` compares the file with the copy already stored under its
 * name; an encrypted copy cannot be decrypted without the identity, which a writing host does not hold, and age
 * encrypts the same file to different bytes every time. So before each upload of an encrypted file, `wal push`
 * (and the background pusher) appends a line to `<spool>/<cluster>/<name>.stored` (mode 0600, fsync'd): the sha256
 * of the file as PostgreSQL wrote it, the sha256 of the exact bytes about to be uploaded, and the repository (URL and endpoint).
 * Recorded before the upload, so no moment of a kill -9 or a power loss leaves a stored object without its line. A
 * retry that finds an encrypted copy looks up the copy's sha256: a line with it says which file those bytes
 * encrypt (the same file: success; another: refused); no line, and pgdr cannot tell. An attempt whose upload was
 * refused because the name was taken takes its line back out. Records are swept with the markers.
 */
export interface StoredAttempt {
  /** sha256 of the WAL file's content. */
  sha256: string;
  /** sha256 of the stored (encrypted) bytes this attempt uploaded, or may have. */
  storedSha256: string;
  repo: string;
}

export function storedRecordPath(spoolDir: string, cluster: string, walFileName: string): string {
  return join(spoolDir, cluster, `${walFileName}.stored`);
}

/** The attempts recorded for a file; a line that does not parse (torn by a crash mid-append) is skipped. */
export function readStoredRecord(spoolDir: string, cluster: string, walFileName: string): StoredAttempt[] {
  let text: string;
  try {
    text = readFileSync(storedRecordPath(spoolDir, cluster, walFileName), 'utf8');
  } catch {
    return [];
  }
  const hex = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
  const attempts: StoredAttempt[] = [];
  for (const line of text.split('\n')) {
    try {
      const parsed = JSON.parse(line) as Partial<StoredAttempt>;
      if (hex(parsed.sha256) && hex(parsed.storedSha256) && typeof parsed.repo === 'string') {
        attempts.push({ sha256: parsed.sha256, storedSha256: parsed.storedSha256, repo: parsed.repo });
      }
    } catch {
      // not a record line
    }
  }
  return attempts;
}

/** Appends one attempt, durably: once this returns, the line survives a power loss. */
export function recordStoredAttempt(spoolDir: string, cluster: string, walFileName: string, attempt: StoredAttempt): void {
  const dir = join(spoolDir, cluster);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = storedRecordPath(spoolDir, cluster, walFileName);
  const created = !existsSync(path);
  const fd = openSync(path, 'a', 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ sha256: attempt.sha256, storedSha256: attempt.storedSha256, repo: attempt.repo })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDirectory(dir);
}

/** Takes back an attempt whose upload certainly stored nothing (the name was taken); the last one removes the file. */
export function forgetStoredAttempt(spoolDir: string, cluster: string, walFileName: string, storedSha256: string): void {
  const attempts = readStoredRecord(spoolDir, cluster, walFileName);
  const left = attempts.filter((a) => a.storedSha256 !== storedSha256);
  if (left.length === attempts.length) return;
  if (left.length === 0) {
    removeStoredRecord(spoolDir, cluster, walFileName);
    return;
  }
  const final = storedRecordPath(spoolDir, cluster, walFileName);
  const temp = `${final}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, left.map((a) => `${JSON.stringify(a)}\n`).join(''));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, final);
  fsyncDirectory(join(spoolDir, cluster));
}

function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function removeStoredRecord(spoolDir: string, cluster: string, walFileName: string): void {
  try {
    unlinkSync(storedRecordPath(spoolDir, cluster, walFileName));
  } catch {
    // already gone
  }
}

/** Names that have a stored record in the spool. */
export function recordedFiles(spoolDir: string, cluster: string): string[] {
  try {
    return readdirSync(join(spoolDir, cluster))
      .filter((f) => f.endsWith('.stored'))
      .map((f) => f.slice(0, -'.stored'.length));
  } catch {
    return [];
  }
}
