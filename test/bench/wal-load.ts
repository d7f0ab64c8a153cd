/**
 * WAL archiving under write load: does the archiver keep up? pgbench writes as fast as it can (4 clients,
 * synchronous_commit=off, small max_wal_size so checkpoints and full-page images come often), while a sampler
 * counts, every second, the .ready files in pg_wal/archive_status (the backlog PostgreSQL sees) and
 * pg_stat_archiver's archived_count. Produced WAL is measured by LSN distance, not by file count.
 */
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { BenchServer } from './lib/pg.js';
import { chownToPg, PG_BIN, PG_OS_USER, ProcessWatcher, type WatchedPeaks } from './lib/proc.js';
import { median } from './lib/report.js';

const SEGMENT = 16 * 1024 * 1024;

/** Settings for the WAL phase: produce WAL fast (frequent checkpoints → full-page images), do not wait on fsync. */
export const WAL_LOAD_SETTINGS: Record<string, string> = {
  max_wal_size: '128MB',
  min_wal_size: '64MB',
  wal_compression: 'off',
  checkpoint_completion_target: '0.9',
};

/**
 * Waits until PostgreSQL has no WAL file waiting for the archiver. Returns the backlog left when the time ran out
 * (0 when idle). A failing archive_command keeps its file .ready, so this also catches a broken archiver.
 */
export async function waitForArchiveIdle(server: BenchServer, timeoutSeconds: number): Promise<number> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const ready = server.readyCount();
    if (ready === 0 || Date.now() > deadline) return ready;
    await sleep(250);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** pg_current_wal_lsn() and pg_stat_archiver in one round trip. */
async function archiverState(server: BenchServer): Promise<{ lsn: string; archived: number; failed: number }> {
  const rows = await server.query<{ lsn: string; archived: string; failed: string }>(
    `SELECT pg_current_wal_lsn()::text AS lsn, archived_count AS archived, failed_count AS failed FROM pg_stat_archiver`,
  );
  const row = rows[0]!;
  return { lsn: row.lsn, archived: Number(row.archived), failed: Number(row.failed) };
}

export interface WalSample {
  t: number;
  ready: number;
  archived: number;
}

export interface WalLoadResult {
  archiver: string;
  loadSeconds: number;
  tps: number;
  segmentsProduced: number;
  producedPerSecond: number;
  segmentsArchived: number;
  archivedPerSecond: number;
  failedAttempts: number;
  backlogMax: number;
  backlogEnd: number;
  /** Least-squares slope of the backlog over the load, segments per second: > 0 means it grows. */
  backlogSlope: number;
  /** After the load stopped: seconds until the backlog was 0, or null if it was not within the limit. */
  drainSeconds: number | null;
  /** Memory of the archive_command processes (and their children), watched during the load and the drain. */
  memory: WatchedPeaks;
  samples: WalSample[];
}

function slope(samples: WalSample[]): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const mr = samples.reduce((a, s) => a + s.ready, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (s.ready - mr);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Creates the pgbench database (scale 50 ≈ 750 MB) once; archive_command should be cheap while it runs. */
export async function initPgbench(server: BenchServer, scale: number): Promise<void> {
  await server.query('CREATE DATABASE pgbench');
  await execa('runuser', ['-u', PG_OS_USER, '--', join(PG_BIN, 'pgbench'), '-i', '-q', '-s', String(scale), 'pgbench'], {
    env: { ...process.env, ...server.env },
  });
  await server.query('CHECKPOINT');
}

/** pgbench's TPC-B-like load for `seconds`, unmeasured: WAL as the load step writes it. */
export async function runPgbench(server: BenchServer, seconds: number): Promise<void> {
  await execa('runuser', ['-u', PG_OS_USER, '--', join(PG_BIN, 'pgbench'), '-n', '-c', '4', '-j', '2', '-T', String(seconds), 'pgbench'], {
    env: { ...process.env, ...server.env, PGOPTIONS: '-c synchronous_commit=off' },
  });
}

/**
 * Runs pgbench for `seconds` with `archiveCommand` in force, then waits (up to `drainLimitSeconds`) for the
 * backlog to clear. The caller has set archive_command already and waited for the archiver to be idle.
 */
export async function runWalLoad(
  server: BenchServer,
  archiver: string,
  seconds: number,
  drainLimitSeconds: number,
  processPattern: RegExp,
  log: (s: string) => void = console.error,
): Promise<WalLoadResult> {
  const watcher = new ProcessWatcher(processPattern);
  watcher.start();
  const start = await archiverState(server);
  const samples: WalSample[] = [];
  const t0 = Date.now();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const state = await archiverState(server);
      samples.push({ t: (Date.now() - t0) / 1000, ready: server.readyCount(), archived: state.archived - start.archived });
      await sleep(1000);
    }
  })();
  const bench = await execa(
    'runuser',
    ['-u', PG_OS_USER, '--', join(PG_BIN, 'pgbench'), '-n', '-c', '4', '-j', '2', '-T', String(seconds), 'pgbench'],
    { env: { ...process.env, ...server.env, PGOPTIONS: '-c synchronous_commit=off' }, reject: false },
  );
  sampling = false;
  await sampler;
  if (bench.exitCode !== 0) throw new Error(`pgbench failed: ${String(bench.stderr).slice(-1000)}`);
  const loadSeconds = (Date.now() - t0) / 1000;
  const end = await archiverState(server);
  const produced = Number(await server.scalar(`SELECT pg_wal_lsn_diff('${end.lsn}', '${start.lsn}')`)) / SEGMENT;
  const backlogEnd = server.readyCount();
  const tps = Number(/tps = ([\d.]+)/.exec(String(bench.stdout))?.[1] ?? NaN);
  log(`  ${archiver}: ${produced.toFixed(0)} segments produced, ${end.archived - start.archived} archived, backlog at end ${backlogEnd}; draining...`);
  const drainStart = Date.now();
  const left = await waitForArchiveIdle(server, drainLimitSeconds);
  const drainSeconds = left === 0 ? (Date.now() - drainStart) / 1000 : null;
  const memory = watcher.stop();
  return {
    archiver,
    loadSeconds,
    tps,
    segmentsProduced: produced,
    producedPerSecond: produced / loadSeconds,
    segmentsArchived: end.archived - start.archived,
    archivedPerSecond: (end.archived - start.archived) / loadSeconds,
    failedAttempts: end.failed - start.failed,
    backlogMax: Math.max(0, ...samples.map((s) => s.ready)),
    backlogEnd,
    backlogSlope: slope(samples),
    drainSeconds,
    memory,
    samples,
  };
}

/**
 * A real 16 MiB segment of this server, copied `n` times under distinct names of an unused timeline into
 * `dir`/pg_wal (no archive_status beside it, so a tool that archives ahead finds nothing to add).
 */
export function segmentCopies(server: BenchServer, dir: string, n: number, timelineHex: string): string[] {
  const walDir = join(server.pgdata, 'pg_wal');
  const source = readdirSync(walDir)
    .filter((f) => /^[0-9A-F]{24}$/.test(f))
    .sort()[0];
  if (!source) throw new Error('no WAL segment in pg_wal to copy');
  const out = join(dir, 'pg_wal');
  mkdirSync(out, { recursive: true });
  chownToPg(out);
  const paths: string[] = [];
  for (let i = 1; i <= n; i++) {
    const name = `${timelineHex}000000EE${i.toString(16).toUpperCase().padStart(8, '0')}`;
    const path = join(out, name);
    copyFileSync(join(walDir, source), path);
    chownToPg(path);
    paths.push(path);
  }
  return paths;
}

export interface PushTiming {
  seconds: number;
  /** User + system CPU of the push's process tree (/usr/bin/time %U + %S). */
  cpuSeconds: number;
  /** Max RSS of the largest process of the push (/usr/bin/time %M), KiB. */
  rssKiB: number;
}

export interface LatencyResult {
  tool: string;
  n: number;
  medianSeconds: number;
  minSeconds: number;
  maxSeconds: number;
  /** Median CPU (user + system) per call; absent in results from before it was recorded. */
  cpuMedianSeconds?: number;
  maxRssKiB: number;
  /** A reference row (Node.js start alone, zstd alone): what a push is made of, not a tool under test. */
  reference?: boolean;
}

export interface LatencyCandidate {
  tool: string;
  reference?: boolean;
  /** One call on the i-th copy of the segment. */
  pushOne: (i: number) => Promise<PushTiming>;
}

/**
 * n calls of every candidate, interleaved: call i of each candidate runs back to back, in an order that rotates with
 * i, so a busy moment on a shared machine falls on all of them rather than on whichever ran during it.
 */
export async function interleavedLatency(candidates: LatencyCandidate[], n: number): Promise<LatencyResult[]> {
  const timings = candidates.map(() => [] as PushTiming[]);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < candidates.length; k++) {
      const c = (i + k) % candidates.length;
      timings[c]!.push(await candidates[c]!.pushOne(i));
    }
  }
  return candidates.map((c, k) => {
    const list = timings[k]!;
    const seconds = list.map((t) => t.seconds);
    return {
      tool: c.tool,
      n: list.length,
      medianSeconds: median(seconds),
      minSeconds: Math.min(...seconds),
      maxSeconds: Math.max(...seconds),
      cpuMedianSeconds: median(list.map((t) => t.cpuSeconds)),
      maxRssKiB: Math.max(...list.map((t) => t.rssKiB)),
      ...(c.reference ? { reference: true } : {}),
    };
  });
}
