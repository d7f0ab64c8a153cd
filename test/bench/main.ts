/**
 * `npm run bench`: pgdr against pgBackRest, side by side, on the same server and dataset in the same run.
 *
 *   1. A throwaway PostgreSQL 15 (initdb --data-checksums) gets the ~2.4 GB orders/customers/events dataset.
 *   2. zstd candidates compress a 256 MiB sample of its relation files (test/bench/zstd-bindings.ts).
 *   3. Rounds of full backups and restores, alternating which tool goes first; archive_command is switched to the
 *      tool being measured (ALTER SYSTEM + pg_reload_conf()) because each backup needs its WAL archived; the page
 *      cache is dropped before every measured step, so both read from disk.
 *   4. WAL archiving under pgbench load: pgdr, pgBackRest sync, pgBackRest async; backlog sampled every second.
 *   5. Per-segment archive latency: one push of a real 16 MiB segment, median of N.
 *   6. docs/benchmarks.md written from the results (and the raw JSON kept under .bench/).
 *
 * Flags: --quick (200 MB dataset, 20 s load: a smoke run, written to .bench/ not docs/), --scale S, --rounds N,
 * --load-seconds S, --pgbench-scale N, --latency-n N, --zstd-mib N, --settle S (wait up to S seconds before each step
 * for the load average to drop below nproc; default 30, 0 with --quick), --skip-zstd, --skip-wal, --doc PATH.
 *
 * --only push-latency|wal-load (comma-separated for both): just those steps, on a server without the dataset (pgbench
 * makes the WAL); the doc keeps everything else and gets only those sections and their summary rows replaced.
 *
 * --only engine: just the files-engine comparison on three shapes of data (test/bench/engine-bench.ts; --shapes
 * logs,json,static to pick, --scale/--quick for their size, --rounds N for how often its full backup, full restore
 * and delta restore repeat); --skip-engine leaves it out of a full run.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCHIVE_SETTINGS, databaseDir, LOAD_SETTINGS, loadDataset, measureRatio } from './dataset.js';
import { runWithCleanup } from './lib/cleanup.js';
import { load1, machineInfo } from './lib/machine.js';
import { BenchServer } from './lib/pg.js';
import { execa } from 'execa';
import { asPg, duBytes, pgTempDir, timedAsPg } from './lib/proc.js';
import { carrySection, fmtBytes, fmtSeconds } from './lib/report.js';
import { PgBackRestSide } from './pgbackrest.js';
import { PGDR_BIN, PgdrSide, pgdrAvailable } from './pgdr.js';
import { PUSH_BREAKDOWN_SECTION, renderDoc, renderPartialDoc, type BenchResults, type StepResult } from './report-doc.js';
import { SCALE_SECTION } from './scale-doc.js';
import {
  initPgbench,
  interleavedLatency,
  runPgbench,
  runWalLoad,
  segmentCopies,
  WAL_LOAD_SETTINGS,
  waitForArchiveIdle,
  type LatencyCandidate,
  type LatencyResult,
} from './wal-load.js';
import { runZstdBindingsBench, zstdTable } from './zstd-bindings.js';
import { AGE_SECTION } from './age-implementations.js';
import { ENCRYPTION_SECTION, encryptionSection, encryptionStep, type EncryptionBenchResult } from './encryption.js';
import { replaceSection } from './lib/report.js';
import { runEngineBench, type EngineResults } from './engine-bench.js';
import { withEngine } from './engine-doc.js';
import { SHAPE_NAMES, type ShapeName } from './shapes.js';

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

interface Options {
  quick: boolean;
  scale: number;
  rounds: number;
  loadSeconds: number;
  pgbenchScale: number;
  latencyN: number;
  zstdMiB: number;
  skipZstd: boolean;
  skipWal: boolean;
  /** Before each measured step, wait up to this many seconds for the 1-minute load average to fall below nproc. */
  settleSeconds: number;
  doc: string;
  /** Only these steps (--only), on a server without the dataset; empty: the whole bench. */
  only: Set<OnlyStep>;
  /** Shapes of the files-engine part (--shapes), and whether a full run leaves that part out (--skip-engine). */
  shapes: ShapeName[];
  skipEngine: boolean;
}

const ONLY_STEPS = ['push-latency', 'wal-load', 'encryption', 'engine'] as const;
type OnlyStep = (typeof ONLY_STEPS)[number];

function parseOnly(text: string | undefined): Set<OnlyStep> {
  const steps = new Set<OnlyStep>();
  for (const word of (text ?? '').split(',').filter((w) => w !== '')) {
    if (!(ONLY_STEPS as readonly string[]).includes(word)) throw new Error(`--only ${word}: expected ${ONLY_STEPS.join(', ')} (comma-separated)`);
    steps.add(word as OnlyStep);
  }
  return steps;
}

function parseOptions(argv: string[]): Options {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  return {
    quick,
    scale: Number(value('--scale') ?? (quick ? 0.08 : 1)),
    rounds: Number(value('--rounds') ?? (quick ? 1 : 3)),
    loadSeconds: Number(value('--load-seconds') ?? (quick ? 20 : 60)),
    pgbenchScale: Number(value('--pgbench-scale') ?? (quick ? 10 : 50)),
    latencyN: Number(value('--latency-n') ?? (quick ? 5 : 15)),
    zstdMiB: Number(value('--zstd-mib') ?? (quick ? 64 : 256)),
    skipZstd: argv.includes('--skip-zstd'),
    skipWal: argv.includes('--skip-wal'),
    settleSeconds: Number(value('--settle') ?? (quick ? 0 : 30)),
    // A smoke run must not overwrite the real figures.
    doc: resolve(REPO_ROOT, value('--doc') ?? (quick ? '.bench/benchmarks-quick.md' : 'docs/benchmarks.md')),
    only: parseOnly(value('--only')),
    shapes: parseShapes(value('--shapes')),
    skipEngine: argv.includes('--skip-engine'),
  };
}

function parseShapes(text: string | undefined): ShapeName[] {
  if (text === undefined) return [...SHAPE_NAMES];
  const shapes = text.split(',').filter((w) => w !== '');
  for (const s of shapes) if (!(SHAPE_NAMES as readonly string[]).includes(s)) throw new Error(`--shapes ${s}: expected ${SHAPE_NAMES.join(', ')} (comma-separated)`);
  return shapes as ShapeName[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const startedAt = new Date().toISOString();
  const results: BenchResults & { engine?: EngineResults } = {
    startedAt,
    finishedAt: '',
    quick: opts.quick,
    options: { ...opts, only: [...opts.only] },
    machine: await machineInfo(process.env.BENCH_TMPDIR ?? process.env.TMPDIR ?? '/var/tmp', REPO_ROOT),
    pgdrAvailable: pgdrAvailable(),
    errors: [],
    steps: [],
    wal: [],
    latency: [],
  };
  if (!results.pgdrAvailable) {
    results.errors.push('pgdr is not built (no dist/bundle/entry.js): run `npm run build`; only the pgBackRest side was measured');
  }
  const resultsName = opts.only.size > 0 ? [...opts.only].sort().join('+') : opts.quick ? 'quick' : 'full';
  const save = () => {
    results.finishedAt = new Date().toISOString();
    mkdirSync(join(REPO_ROOT, '.bench'), { recursive: true });
    writeFileSync(join(REPO_ROOT, '.bench', `results-${resultsName}.json`), JSON.stringify(results, null, 2));
  };
  const attempt = async (tool: string, what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      const message = `${tool} ${what} failed: ${(err as Error).message.split('\n').slice(0, 6).join(' | ')}`;
      results.errors.push(message);
      log(`  ${message}`);
    }
  };
  // A shared machine: give a busy neighbour (or our own previous step) a moment to calm down before measuring.
  const settle = async () => {
    const deadline = Date.now() + opts.settleSeconds * 1000;
    while (load1() >= cpus().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2000));
  };

  // 6. The report.
  // The cost of encryption (--only encryption), set by its step below; the report writes its section.
  let encryption: EncryptionBenchResult | undefined;
  const report = () => {
    mkdirSync(resolve(opts.doc, '..'), { recursive: true });
    const oldDoc = existsSync(opts.doc) ? readFileSync(opts.doc, 'utf8') : '';
    // The files-engine section and its summary rows: this run's, or the old page's carried over.
    const engineDoc = (doc: string) => withEngine(doc, oldDoc, results.engine, results.machine, results.startedAt, opts.only.size > 0);
    let summary: string;
    if (opts.only.size > 0) {
      let doc = engineDoc(renderPartialDoc(results, oldDoc));
      if (encryption) {
        const note = `*Measured on its own by \`npm run bench -- --only encryption${opts.quick ? ' --quick' : ''}\` on ${startedAt.slice(0, 16).replace('T', ' ')} UTC.*`;
        doc = replaceSection(doc, ENCRYPTION_SECTION, encryptionSection(encryption, note));
      }
      writeFileSync(opts.doc, doc);
      summary = doc.slice(doc.indexOf('## Summary'), doc.indexOf('## Machine'));
    } else {
      // Sections from their own runs (npm run bench:scale, test/bench/push-breakdown.ts, the age choice) stay as they were.
      const carried = [SCALE_SECTION, PUSH_BREAKDOWN_SECTION, AGE_SECTION, ENCRYPTION_SECTION].reduce((d, name) => carrySection(d, oldDoc, name), renderDoc(results));
      const doc = engineDoc(carried);
      writeFileSync(opts.doc, doc);
      summary = doc.slice(doc.indexOf('## Summary'), doc.indexOf('## Machine'));
    }
    log(`\nwrote ${opts.doc}`);
    process.stdout.write(summary);
    if (results.errors.length > 0) {
      process.stdout.write(`\nerrors:\n${results.errors.map((e) => `- ${e}`).join('\n')}\n`);
      throw new Error(`${results.errors.length} step(s) failed; see above`);
    }
  };

  // The files engine on three shapes of data, each on its own server (test/bench/engine-bench.ts).
  if (opts.only.size === 0 ? !opts.skipEngine : opts.only.has('engine')) {
    results.engine = { scale: opts.scale, shapes: [], steps: [], loads: [], seconds: 0 };
    await runEngineBench(results.engine, { scale: opts.scale, shapes: opts.shapes, jobs: 2, rounds: opts.rounds, settle, attempt, save, log });
    if (opts.only.size > 0 && [...opts.only].every((step) => step === 'engine')) {
      save();
      report();
      return;
    }
  }

  const server = await BenchServer.create({ label: 'main', settings: LOAD_SETTINGS });
  await server.start();
  if (opts.only.size === 0) {
    // 1. Dataset.
    log(`== dataset (scale ${opts.scale})`);
    const dataset = await loadDataset(server, opts.scale, 'bench', log);
    const ratio = await measureRatio(server, dataset.database);
    results.dataset = { ...dataset, zstd3: ratio };
    log(`dataset: ${fmtBytes(dataset.bytes)} (pg_database_size) in ${fmtSeconds(dataset.loadSeconds)}; zstd -3 ratio ${ratio.ratio.toFixed(2)}`);

    // 2. zstd bindings, on the dataset's own relation files.
    if (!opts.skipZstd) {
      log('== zstd bindings');
      results.zstd = await runZstdBindingsBench({
        input: join(server.pgdata, await databaseDir(server, dataset.database)),
        sizeMiB: opts.zstdMiB,
        repeat: opts.quick ? 1 : 2,
        log,
      });
      log(zstdTable(results.zstd.rows));
    }
    save();
  }

  server.appendConf(ARCHIVE_SETTINGS);
  await server.restart();
  const pgbr = await PgBackRestSide.create(server);
  const pgdr = results.pgdrAvailable ? PgdrSide.create(server) : undefined;
  const useArchiver = async (command: string) => {
    await server.setConf({ archive_command: command });
    const left = await waitForArchiveIdle(server, 120);
    if (left > 0) throw new Error(`archiver still has ${left} WAL files waiting after switching to ${command}`);
  };

  if (opts.only.size === 0) {
    // 3. Backups and restores.
    log('== backups and restores');
    results.sourceBytes = (await duBytes(server.pgdata)) - (await duBytes(join(server.pgdata, 'pg_wal')));
    await backupsAndRestores(server, pgbr, pgdr, opts, { results, save, attempt, settle, useArchiver });
  }

  // The cost of encryption (--only encryption): its own dataset at this scale, plain against encrypted repositories.
  if (opts.only.has('encryption')) {
    log(`== encryption cost (dataset at scale ${opts.scale})`);
    const dataset = await loadDataset(server, opts.scale, 'bench', log);
    await attempt('pgdr', 'encryption', async () => {
      encryption = await encryptionStep(server, dataset.bytes, { rounds: opts.rounds, settle, useArchiver, log });
    });
    Object.assign(results, { encryption });
    save();
  }

  const wantWal = opts.only.size === 0 ? !opts.skipWal : opts.only.has('wal-load');
  const wantLatency = opts.only.size === 0 ? !opts.skipWal : opts.only.has('push-latency');
  if (wantWal || wantLatency) {
    await useArchiver('/bin/true');
    await initPgbench(server, opts.pgbenchScale);
    await server.setConf(WAL_LOAD_SETTINGS);
  }
  if (wantWal) {
    // 4. WAL archiving under load.
    log(`== WAL archiving under pgbench load (${opts.loadSeconds} s each)`);
    await walLoadStep(server, pgbr, pgdr, opts, { attempt, settle, useArchiver, results, save });
  } else if (wantLatency) {
    // The latency step copies a segment pgbench wrote, as in the full run, where it follows the WAL load.
    await useArchiver('/bin/true');
    await runPgbench(server, 10);
    await server.query('CHECKPOINT');
  }
  if (wantLatency) {
    // 5. Per-segment latency, with the server idle.
    log(`== per-segment archive latency (median of ${opts.latencyN}, interleaved)`);
    await useArchiver('/bin/true');
    await settle();
    await attempt('push latency', 'step', async () => {
      const before = load1();
      ({ latency: results.latency, segment: results.latencySegment } = await latencyStep(server, pgbr, pgdr, opts.latencyN));
      results.latencyLoad = { before, after: load1() };
    });
    for (const l of results.latency) {
      log(`  ${l.tool}: median ${fmtSeconds(l.medianSeconds)} (min ${fmtSeconds(l.minSeconds)}, max ${fmtSeconds(l.maxSeconds)}), CPU ${fmtSeconds(l.cpuMedianSeconds ?? 0)}`);
    }
  }

  await server.stop();
  save();

  report();
}

interface StepContext {
  attempt: (tool: string, what: string, fn: () => Promise<void>) => Promise<void>;
  settle: () => Promise<void>;
  useArchiver: (command: string) => Promise<void>;
}

async function backupsAndRestores(
  server: BenchServer,
  pgbr: PgBackRestSide,
  pgdr: PgdrSide | undefined,
  opts: Options,
  ctx: StepContext & { results: BenchResults; save: () => void },
): Promise<void> {
  const { results, save, attempt, settle, useArchiver } = ctx;
  const record = (step: StepResult) => {
    results.steps.push(step);
    save();
    const m = step.memory;
    log(
      `  ${step.tool} ${step.kind} round ${step.round}: ${fmtSeconds(step.wallSeconds)}, CPU ${fmtSeconds(step.cpuSeconds ?? 0)}` +
        (step.serverCpuSeconds !== undefined ? ` + server ${fmtSeconds(step.serverCpuSeconds)}` : '') +
        (step.storedBytes ? `, stored ${fmtBytes(step.storedBytes)}` : '') +
        (m ? `, RSS main ${(m.mainKiB / 1024).toFixed(0)} MiB, largest child ${(m.largestChildKiB / 1024).toFixed(0)} MiB (${m.largestChildName}), tree ${(m.treeSumKiB / 1024).toFixed(0)} MiB` : '') +
        `, load ${step.load1.toFixed(2)}`,
    );
  };
  const backupWith = async (tool: 'pgdr' | 'pgbackrest', round: number) => {
    if (tool === 'pgbackrest') {
      await useArchiver(pgbr.archiveCommand(false));
      await settle();
      const before = load1();
      const cpu0 = server.cpuSeconds();
      const b = await pgbr.backupFull();
      const serverCpuSeconds = server.cpuSeconds() - cpu0;
      record({ tool, kind: 'backup', round, wallSeconds: b.wallSeconds, cpuSeconds: b.cpuSeconds, serverCpuSeconds, storedBytes: b.storedBytes, memory: b.memory, load1: before, id: b.label });
    } else if (pgdr) {
      await attempt('pgdr', 'backup', async () => {
        await useArchiver(pgdr.archiveCommand());
        await settle();
        const before = load1();
        const cpu0 = server.cpuSeconds();
        const b = await pgdr.backupFull();
        const serverCpuSeconds = server.cpuSeconds() - cpu0;
        record({ tool, kind: 'backup', round, wallSeconds: b.wallSeconds, cpuSeconds: b.cpuSeconds, serverCpuSeconds, storedBytes: b.storedBytes, memory: b.memory, load1: before, id: b.label });
      });
    }
  };
  const restoreWith = async (tool: 'pgdr' | 'pgbackrest', round: number) => {
    const target = join(pgTempDir(`${tool}-restore`), 'pgdata');
    await asPg('mkdir', ['-m', '700', target]);
    try {
      await settle();
      if (tool === 'pgbackrest') {
        const before = load1();
        const r = await pgbr.restore(target);
        record({ tool, kind: 'restore', round, wallSeconds: r.wallSeconds, cpuSeconds: r.cpuSeconds, restoredBytes: r.restoredBytes, memory: r.memory, load1: before });
      } else if (pgdr) {
        await attempt('pgdr', 'restore', async () => {
          const before = load1();
          const r = await pgdr.restore(target);
          record({ tool, kind: 'restore', round, wallSeconds: r.wallSeconds, cpuSeconds: r.cpuSeconds, restoredBytes: r.restoredBytes, memory: r.memory, load1: before });
        });
      }
    } finally {
      // Restored copies are 2+ GB each: remove them at once, not at the end.
      await asPg('rm', ['-rf', target]);
    }
  };

  for (let round = 1; round <= opts.rounds; round++) {
    // Alternate who goes first, so neither always gets the quieter moment or the warmer disk.
    const order: ('pgdr' | 'pgbackrest')[] = round % 2 === 1 ? ['pgbackrest', 'pgdr'] : ['pgdr', 'pgbackrest'];
    for (const tool of order) await backupWith(tool, round);
    for (const tool of order) await restoreWith(tool, round);
  }

}

async function walLoadStep(
  server: BenchServer,
  pgbr: PgBackRestSide,
  pgdr: PgdrSide | undefined,
  opts: Options,
  ctx: StepContext & { results: BenchResults; save: () => void },
): Promise<void> {
  const { attempt, settle, useArchiver, results, save } = ctx;
  const archivers: { name: string; command: string; processes: RegExp }[] = [];
  // Only this run's processes: on a shared machine other checkouts run `bin/pgdr wal push` and pgBackRest too (their
  // tests, their benches), and counting theirs inflated the memory columns. pgdr's pushes and background pusher name
  // this checkout's bin/pgdr; pgBackRest's carry this run's --config.
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const ownPgdr = new RegExp(`${escape(PGDR_BIN)} wal push`);
  const ownPgbr = new RegExp(`pgbackrest .*--config=${escape(pgbr.conf)} .*archive-push`);
  if (pgdr) archivers.push({ name: 'pgdr wal push', command: pgdr.archiveCommand(), processes: ownPgdr });
  // Sync pushes are children of the archiver; async ones also leave a background archive-push:async process.
  archivers.push({ name: 'pgBackRest archive-push (sync)', command: pgbr.archiveCommand(false), processes: ownPgbr });
  archivers.push({ name: 'pgBackRest archive-push (async)', command: pgbr.archiveCommand(true), processes: ownPgbr });
  for (const a of archivers) {
    await attempt(a.name, 'WAL load', async () => {
      await useArchiver(a.command);
      // Start each archiver from the same state: a checkpoint just done, nothing waiting.
      await server.query('CHECKPOINT');
      await settle();
      const r = await runWalLoad(server, a.name, opts.loadSeconds, Math.max(120, opts.loadSeconds * 3), a.processes, log);
      results.wal.push({ ...r, load1: load1() });
      save();
      log(
        `  ${a.name}: produced ${r.producedPerSecond.toFixed(2)}/s, archived ${r.archivedPerSecond.toFixed(2)}/s, backlog max ${r.backlogMax}, end ${r.backlogEnd}, slope ${r.backlogSlope.toFixed(3)}/s, drained in ${r.drainSeconds === null ? 'NOT drained' : fmtSeconds(r.drainSeconds)}, tps ${r.tps.toFixed(0)}, archiver RSS max ${(r.memory.maxProcessKiB / 1024).toFixed(0)} MiB per process, ${(r.memory.maxTreeSumKiB / 1024).toFixed(0)} MiB at once`,
      );
    });
  }
}

/**
 * One cold archive call per copy of a real segment, pgdr and pgBackRest interleaved, with two reference rows that
 * show what a Node.js archive_command cannot go below: Node.js starting and exiting, and zstd compressing the segment.
 */
async function latencyStep(
  server: BenchServer,
  pgbr: PgBackRestSide,
  pgdr: PgdrSide | undefined,
  n: number,
): Promise<{ latency: LatencyResult[]; segment: { zstd3Bytes: number } }> {
  const dir = pgTempDir('segments');
  const candidates: LatencyCandidate[] = [];
  if (pgdr) {
    const paths = segmentCopies(server, join(dir, 'pgdr'), n, '000000FE');
    candidates.push({ tool: 'pgdr wal push', pushOne: (i) => pgdr.pushOne(paths[i]!) });
  }
  const pgbrPaths = segmentCopies(server, join(dir, 'pgbackrest'), n, '000000FE');
  candidates.push({ tool: 'pgBackRest archive-push (sync)', pushOne: (i) => pgbr.pushOne(pgbrPaths[i]!) });
  const reference = pgbrPaths[0]!;
  const env = pgdr?.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const timed = async (cmd: string, args: string[]) => {
    const t = await timedAsPg(cmd, args, env, dir);
    return { seconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, rssKiB: t.memory.timeMaxKiB };
  };
  candidates.push({ tool: 'reference: Node.js start and exit (node -e 0)', reference: true, pushOne: () => timed(process.execPath, ['-e', '0']) });
  candidates.push({
    tool: 'reference: zstd -3 of the segment alone (to /dev/null)',
    reference: true,
    pushOne: () => timed('sh', ['-c', `zstd -3 -c -q --check '${reference}' > /dev/null`]),
  });
  const latency = await interleavedLatency(candidates, n);
  // How compressible the segment is decides much of a push's time: say it beside the figures.
  const frame = await execa('zstd', ['-3', '-c', '-q', reference], { encoding: 'buffer' });
  return { latency, segment: { zstd3Bytes: frame.stdout.length } };
}

process.exitCode = await runWithCleanup(main);
