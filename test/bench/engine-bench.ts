/**
 * The files-engine part of `npm run bench` (issue 10): pgdr's files engine against pgBackRest on the three shapes of
 * test/bench/shapes.ts, each on its own throwaway PostgreSQL 15 (page checksums on), in the same run:
 *
 *   1. full backup of each tool (pgdr: `--engine files --jobs 2`, zstd 3; pgBackRest: process-max=2, zstd 3);
 *   2. full restore of each into an empty directory, started and checked; steps 1 and 2 run `rounds` times, the
 *      order of the tools alternating from round to round (single runs of the same code move 10-40% here);
 *   3. 5% of the rows updated (shapes.ts's UPDATE_DESCRIPTIONS), then an incremental backup of each
 *      (pgdr `--type incr`: changed blocks of relation main forks; pgBackRest 2.45 `--type=incr`: changed files);
 *   4. the server stopped and its data directory copied (the state "1% behind"), started again, 1% updated, a
 *      backup B of each (incr), then `restore --delta` of B over a fresh copy of the old data directory, started and
 *      checked, `rounds` times (each over a fresh copy), alternating the order; what the delta restore rewrote is
 *      counted by comparing inodes and mtimes before and after.
 *
 * Every restored copy is started (archive_mode off, its own port) and must give the fingerprint the source gave when
 * its backup was taken (shapes.ts's FINGERPRINT_SQL); the delta-restored copies also get pg_amcheck (heap and
 * B-tree checks of the shape's database). A step that fails is recorded as an error, not retried.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { ARCHIVE_SETTINGS, LOAD_SETTINGS } from './dataset.js';
import { onCleanup } from './lib/cleanup.js';
import { load1 } from './lib/machine.js';
import { BenchServer } from './lib/pg.js';
import { asPg, duBytes, PG_BIN, pgTempDir, type MemoryPeaks, type TimedResult } from './lib/proc.js';
import { fmtBytes, fmtSeconds } from './lib/report.js';
import { PgBackRestSide } from './pgbackrest.js';
import { PgdrSide } from './pgdr.js';
import { FINGERPRINT_SQL, loadShape, updateShape, type ShapeInfo, type ShapeName, type UpdateResult } from './shapes.js';
import { waitForArchiveIdle } from './wal-load.js';
import { freePort } from '../harness/ports.js';

export type EngineTool = 'pgdr' | 'pgbackrest';
export type EngineStepKind = 'full-backup' | 'full-restore' | 'incr-backup' | 'delta-backup' | 'delta-restore';

export interface Verification {
  expected: string;
  got: string;
  ok: boolean;
  /** pg_amcheck's verdict, when it ran: 'clean' or its first lines of complaint. */
  amcheck?: string;
  /** Seconds from pg_ctl start to the end of recovery (promotion). */
  recoverySeconds: number;
}

export interface EngineStep {
  shape: ShapeName;
  tool: EngineTool;
  kind: EngineStepKind;
  wallSeconds: number;
  cpuSeconds: number;
  /** CPU the PostgreSQL server spent during a backup. */
  serverCpuSeconds?: number;
  storedBytes?: number;
  restoredBytes?: number;
  memory: MemoryPeaks;
  load1: number;
  id?: string;
  /** For a delta restore: files and bytes the restore wrote (inode or mtime changed), of the directory's total. */
  rewritten?: { files: number; bytes: number; totalFiles: number; totalBytes: number };
  /** pgdr's own account of a delta restore ("N of M same-size files already match"). */
  toolNote?: string;
  verification?: Verification;
  /** For the repeated steps (full backup, full restore, delta restore): which round, from 1. */
  round?: number;
}

export interface EngineShapeRun {
  info: ShapeInfo;
  /** The data directory without pg_wal after the load: what a full backup reads. */
  sourceBytes: number;
  update5: UpdateResult;
  update1: UpdateResult;
}

export interface EngineResults {
  scale: number;
  shapes: EngineShapeRun[];
  steps: EngineStep[];
  /** 1-minute load average before each step, and the whole part's duration. */
  loads: number[];
  seconds: number;
}

export interface EngineOptions {
  scale: number;
  shapes: ShapeName[];
  jobs: number;
  /** How many times the full backup, full restore and delta restore run for each tool. */
  rounds: number;
  settle: () => Promise<void>;
  attempt: (tool: string, what: string, fn: () => Promise<void>) => Promise<void>;
  save: () => void;
  log: (line: string) => void;
}

export async function runEngineBench(results: EngineResults, opts: EngineOptions): Promise<void> {
  const started = Date.now();
  for (const [index, shape] of opts.shapes.entries()) {
    opts.log(`== files engine: ${shape} (scale ${opts.scale})`);
    await runShape(shape, index, results, opts);
    results.seconds = (Date.now() - started) / 1000;
    opts.save();
  }
  results.seconds = (Date.now() - started) / 1000;
}

async function runShape(shape: ShapeName, index: number, results: EngineResults, opts: EngineOptions): Promise<void> {
  const { log, attempt, settle } = opts;
  const server = await BenchServer.create({ label: `engine-${shape}`, settings: LOAD_SETTINGS });
  await server.start();
  const info = await loadShape(server, shape, opts.scale, shape, log);
  log(`  ${shape}: ${fmtBytes(info.bytes)} in ${fmtSeconds(info.loadSeconds)}; zstd -3 ratio ${info.zstd3.ratio.toFixed(2)}`);
  server.appendConf(ARCHIVE_SETTINGS);
  await server.restart();
  const sourceBytes = (await duBytes(server.pgdata)) - (await duBytes(join(server.pgdata, 'pg_wal')));
  const pgbr = await PgBackRestSide.create(server);
  const pgdr = PgdrSide.create(server);
  const jobs = String(opts.jobs);
  const fingerprint = () => server.scalar(FINGERPRINT_SQL[shape], shape);
  // Alternate who goes first from shape to shape and round to round, so neither always gets the warmer disk.
  const order = (round = 1): EngineTool[] => ((index + round) % 2 === 1 ? ['pgbackrest', 'pgdr'] : ['pgdr', 'pgbackrest']);
  const rounds = Array.from({ length: Math.max(1, opts.rounds) }, (_, i) => i + 1);

  const useArchiver = async (tool: EngineTool) => {
    await server.setConf({ archive_command: tool === 'pgdr' ? pgdr.archiveCommand() : pgbr.archiveCommand(false) });
    const left = await waitForArchiveIdle(server, 180);
    if (left > 0) throw new Error(`archiver still has ${left} WAL files waiting after switching to ${tool}`);
  };
  const record = (step: EngineStep) => {
    results.steps.push(step);
    results.loads.push(step.load1);
    opts.save();
    const m = step.memory;
    log(
      `  ${shape} ${step.tool} ${step.kind}: ${fmtSeconds(step.wallSeconds)}, CPU ${fmtSeconds(step.cpuSeconds)}` +
        (step.serverCpuSeconds !== undefined ? ` + server ${fmtSeconds(step.serverCpuSeconds)}` : '') +
        (step.storedBytes !== undefined ? `, stored ${fmtBytes(step.storedBytes)}` : '') +
        (step.rewritten ? `, rewrote ${step.rewritten.files}/${step.rewritten.totalFiles} files, ${fmtBytes(step.rewritten.bytes)} of ${fmtBytes(step.rewritten.totalBytes)}` : '') +
        (step.toolNote ? ` (${step.toolNote})` : '') +
        `, RSS main ${(m.mainKiB / 1024).toFixed(0)} MiB, tree ${(m.treeSumKiB / 1024).toFixed(0)} MiB, load ${step.load1.toFixed(2)}` +
        (step.verification ? `; restored copy ${step.verification.ok ? 'matches' : 'DIFFERS'}${step.verification.amcheck ? `, pg_amcheck ${step.verification.amcheck}` : ''}` : ''),
    );
  };
  const backup = async (tool: EngineTool, kind: EngineStepKind, type: 'full' | 'incr', round?: number): Promise<string | undefined> => {
    let id: string | undefined;
    await attempt(tool, `${shape} ${kind}`, async () => {
      await useArchiver(tool);
      await settle();
      const before = load1();
      const cpu0 = server.cpuSeconds();
      const b =
        tool === 'pgdr'
          ? await pgdr.backupFull(['--engine', 'files', '--jobs', jobs, '--type', type])
          : await pgbr.backupFull(type);
      const serverCpuSeconds = server.cpuSeconds() - cpu0;
      id = b.label;
      record({ shape, tool, kind, ...timing(b), serverCpuSeconds, storedBytes: b.storedBytes, load1: before, id, ...(round === undefined ? {} : { round }) });
    });
    return id;
  };

  try {
    // 1. and 2. Full backups, then each restored into an empty directory, started and checked; `rounds` times.
    const f0 = await fingerprint();
    for (const round of rounds) {
      const fullIds: Partial<Record<EngineTool, string>> = {};
      for (const tool of order(round)) fullIds[tool] = await backup(tool, 'full-backup', 'full', round);
      for (const tool of order(round)) {
        if (fullIds[tool] === undefined) continue;
        await attempt(tool, `${shape} full restore`, async () => {
          const root = pgTempDir(`engine-${tool}-restore`);
          const target = join(root, 'pgdata');
          await asPg('mkdir', ['-m', '700', target]);
          try {
            await settle();
            const before = load1();
            const r = tool === 'pgdr' ? await pgdr.restore(target, fullIds[tool], ['--jobs', jobs]) : await pgbr.restore(target, fullIds[tool]);
            const verification = await verifyRestored(root, target, shape, f0, false);
            record({ shape, tool, kind: 'full-restore', ...timing(r), restoredBytes: r.restoredBytes, load1: before, verification, round });
            failUnlessVerified(verification);
          } finally {
            await asPg('rm', ['-rf', target]);
          }
        });
      }
    }

    // 3. 5% of the rows updated, then an incremental backup of each.
    const update5 = await updateShape(server, shape, 0.05, 'upd5', 1);
    log(`  ${shape}: updated ${update5.rows} rows (5%) in ${fmtSeconds(update5.seconds)}, ${fmtBytes(update5.walBytes)} of WAL`);
    for (const tool of order()) await backup(tool, 'incr-backup', 'incr');

    // 4. The data directory as it is now (stopped cleanly), then 1% more, a backup B, and B delta-restored over it.
    const behindRoot = pgTempDir(`engine-${shape}-behind`);
    const behind = join(behindRoot, 'pgdata');
    await server.stop();
    await asPg('cp', ['-a', server.pgdata, behind]);
    await server.start();
    const update1 = await updateShape(server, shape, 0.01, 'upd1', 2);
    log(`  ${shape}: updated ${update1.rows} rows (1%) in ${fmtSeconds(update1.seconds)}, ${fmtBytes(update1.walBytes)} of WAL`);
    const f2 = await fingerprint();
    const deltaIds: Partial<Record<EngineTool, string>> = {};
    for (const tool of order()) deltaIds[tool] = await backup(tool, 'delta-backup', 'incr');
    for (const [round, tool] of rounds.flatMap((r) => order(r).map((t) => [r, t] as const))) {
      if (deltaIds[tool] === undefined) continue;
      await attempt(tool, `${shape} delta restore`, async () => {
        const root = pgTempDir(`engine-${tool}-delta`);
        const target = join(root, 'pgdata');
        await asPg('cp', ['-a', behind, target]);
        try {
          const snapshot = await fileStates(target);
          await settle();
          const before = load1();
          const r =
            tool === 'pgdr'
              ? await pgdr.restore(target, deltaIds[tool], ['--delta', '--jobs', jobs])
              : await pgbr.restore(target, deltaIds[tool], ['--delta']);
          const rewritten = compareStates(snapshot, await fileStates(target));
          const note = /restore --delta: (\d+ of \d+ same-size files already match the backup)/.exec(r.stderr)?.[1];
          const verification = await verifyRestored(root, target, shape, f2, true);
          record({ shape, tool, kind: 'delta-restore', ...timing(r), restoredBytes: r.restoredBytes, load1: before, rewritten, ...(note ? { toolNote: note } : {}), verification, round });
          failUnlessVerified(verification);
        } finally {
          await asPg('rm', ['-rf', target]);
        }
      });
    }
    await asPg('rm', ['-rf', behind]);
    results.shapes.push({ info, sourceBytes, update5, update1 });
  } finally {
    await server.stop();
    // The repositories and copies are removed at cleanup; the server's own directory (GBs) can go now.
    await asPg('rm', ['-rf', server.pgdata]);
  }
}

/** A wrong restore is recorded with its figures, and also as a failed step: a benchmark of it is worthless. */
function failUnlessVerified(v: Verification): void {
  if (!v.ok) throw new Error(`the restored copy differs from the source: expected "${v.expected}", got "${v.got}"`);
  if (v.amcheck !== undefined && v.amcheck !== 'clean') throw new Error(`pg_amcheck on the restored copy: ${v.amcheck}`);
}

function timing(t: TimedResult): Pick<EngineStep, 'wallSeconds' | 'cpuSeconds' | 'memory'> {
  return { wallSeconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, memory: t.memory };
}

interface FileState {
  inode: string;
  mtime: string;
  size: number;
}

/** Every regular file under `dir` with its inode, mtime and size (find -printf, as root). */
async function fileStates(dir: string): Promise<Map<string, FileState>> {
  const { stdout } = await execa('find', [dir, '-type', 'f', '-printf', '%i %T@ %s %P\\n']);
  const states = new Map<string, FileState>();
  for (const line of stdout.split('\n')) {
    const m = /^(\d+) (\S+) (\d+) (.+)$/.exec(line);
    if (m) states.set(m[4]!, { inode: m[1]!, mtime: m[2]!, size: Number(m[3]) });
  }
  return states;
}

/** Files of `after` that are new or were written (another inode or mtime) since `before`. */
function compareStates(before: Map<string, FileState>, after: Map<string, FileState>): NonNullable<EngineStep['rewritten']> {
  let files = 0;
  let bytes = 0;
  let totalBytes = 0;
  for (const [path, state] of after) {
    totalBytes += state.size;
    const old = before.get(path);
    if (old === undefined || old.inode !== state.inode || old.mtime !== state.mtime) {
      files++;
      bytes += state.size;
    }
  }
  return { files, bytes, totalFiles: after.size, totalBytes };
}

/**
 * Starts the restored copy in `pgdata` on its own port with archiving off, waits for recovery to end (both tools
 * write recovery settings that replay the archive and promote), and compares its fingerprint with `expected`; with
 * `amcheck`, also runs pg_amcheck on the shape's database. The copy is stopped again before this returns.
 */
async function verifyRestored(root: string, pgdata: string, shape: ShapeName, expected: string, amcheck: boolean): Promise<Verification> {
  const port = await freePort();
  const pgCtl = join(PG_BIN, 'pg_ctl');
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${root} -c archive_mode=off -c shared_buffers=128MB`;
  const started = Date.now();
  await asPg(pgCtl, ['-D', pgdata, '-o', options, '-l', join(root, 'restored.log'), '-w', '-t', '900', 'start']);
  const stop = onCleanup(`restored copy on port ${port}`, async () => {
    await asPg(pgCtl, ['-D', pgdata, '-m', 'fast', '-w', '-t', '120', 'stop']).catch(() => undefined);
  });
  try {
    const psql = async (sql: string, database = 'postgres') =>
      (await asPg(join(PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-XAtq', '-c', sql])).stdout.trim();
    const deadline = Date.now() + 900_000;
    while ((await psql('SELECT pg_is_in_recovery()')) !== 'f') {
      if (Date.now() > deadline) throw new Error(`the restored copy in ${pgdata} was still recovering after 15 min`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const recoverySeconds = (Date.now() - started) / 1000;
    const got = await psql(FINGERPRINT_SQL[shape].replace(/\s+/g, ' '), shape);
    const verification: Verification = { expected, got, ok: got === expected, recoverySeconds };
    if (amcheck) {
      const r = await execa(
        'runuser',
        ['-u', 'postgres', '--', join(PG_BIN, 'pg_amcheck'), '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', shape, '--install-missing', '--heapallindexed'],
        { reject: false },
      );
      verification.amcheck = r.exitCode === 0 && r.stdout.trim() === '' ? 'clean' : `exit ${r.exitCode}: ${`${r.stdout}\n${r.stderr}`.trim().split('\n').slice(0, 3).join(' | ')}`;
    }
    return verification;
  } finally {
    await stop();
  }
}
