import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pushReadyFiles, type WalPushOptions } from './push.js';
import { pusherPidFile as pidFile, runningPusher, sweepMarkers } from './spool.js';

/**
 * One background process per cluster and spool that archives WAL ahead of PostgreSQL. PostgreSQL runs
 * archive_command one file at a time and waits for each, so a Node start-up plus an upload per segment would cap
 * a busy server's archiving; instead the first `wal push` that finds no pusher starts one, detached, and the pusher
 * keeps storing every file marked ready (two at a time) until the archive has been idle for a few seconds. Each
 * `wal push` still stores or verifies its own file: the pusher only makes that the fast path.
 */
const IDLE_EXIT_MS = 5_000;
const POLL_MS = 100;
const BATCH = 16;

/**
 * Whether PostgreSQL has marked any file besides `name` ready in `pgWalDir`: only then is there work for a pusher.
 * Starting one for nothing costs a Node start-up and its CPU on a core the next archive_command may need.
 */
export function readyBesides(pgWalDir: string, name: string): boolean {
  try {
    return readdirSync(join(pgWalDir, 'archive_status')).some((f) => f.endsWith('.ready') && f !== `${name}.ready`);
  } catch {
    return false;
  }
}

/** Starts a detached pusher unless one is running; `argv` is this pgdr's own command line for `wal push-ahead`. */
export function ensurePusher(spoolDir: string, cluster: string, argv: readonly string[], env: NodeJS.ProcessEnv): void {
  if (runningPusher(spoolDir, cluster) !== undefined) return;
  const log = openPusherLog(spoolDir, cluster);
  const child = spawn(process.execPath, [...argv], { detached: true, stdio: ['ignore', 'ignore', log ?? 'ignore'], env });
  if (log !== undefined) closeSync(log);
  child.unref();
}

/** The pusher's own log, <spool>/<cluster>/pusher.log (the previous one kept as pusher.log.1 past 1 MiB). */
export function pusherLogPath(spoolDir: string, cluster: string): string {
  return join(spoolDir, cluster, 'pusher.log');
}

function openPusherLog(spoolDir: string, cluster: string): number | undefined {
  try {
    mkdirSync(join(spoolDir, cluster), { recursive: true, mode: 0o700 });
    const path = pusherLogPath(spoolDir, cluster);
    try {
      if (statSync(path).size > 1024 * 1024) renameSync(path, `${path}.1`);
    } catch {
      // no log yet
    }
    return openSync(path, 'a', 0o600);
  } catch {
    return undefined;
  }
}

/** Claims the pid file (exclusive create; a stale one from a dead pusher is replaced). False: another pusher runs. */
function claim(spoolDir: string, cluster: string): boolean {
  mkdirSync(join(spoolDir, cluster), { recursive: true, mode: 0o700 });
  const path = pidFile(spoolDir, cluster);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (runningPusher(spoolDir, cluster) !== undefined) return false;
      try {
        unlinkSync(path);
      } catch {
        // someone else cleared it first
      }
    }
  }
  return false;
}

/** The pusher's body (`pgdr wal push-ahead PG_WAL_DIR`): push until idle, then release the pid file. */
export async function runPusher(pgWalDir: string, options: WalPushOptions): Promise<void> {
  const { spoolDir } = options;
  const cluster = options.layout.cluster;
  if (!claim(spoolDir, cluster)) return;
  try {
    let idleSince = Date.now();
    const failed = new Set<string>();
    while (Date.now() - idleSince < IDLE_EXIT_MS) {
      const stored = await pushReadyFiles(pgWalDir, options, BATCH, failed);
      if (stored > 0) idleSince = Date.now();
      else await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    // What PostgreSQL took meanwhile through its own calls: no marker outlives its file's ready state.
    sweepMarkers(spoolDir, cluster, pgWalDir);
  } finally {
    try {
      if (Number(readFileSync(pidFile(spoolDir, cluster), 'utf8').trim()) === process.pid) unlinkSync(pidFile(spoolDir, cluster));
    } catch {
      // already gone
    }
  }
}
