/**
 * Renders docs/benchmarks.md from one run's results. Kept apart from main.ts so a saved run can be re-rendered
 * without re-running it: `tsx test/bench/report-doc.ts .bench/results-full.json > docs/benchmarks.md`.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { DatasetInfo, RatioInfo } from './dataset.js';
import type { MachineInfo } from './lib/machine.js';
import type { MemoryPeaks } from './lib/proc.js';
import { fmtBytes, fmtMiB, fmtRatio, fmtSeconds, markdownTable, median, replaceSection, replaceTableRows, type Cell } from './lib/report.js';
import type { LatencyResult, WalLoadResult } from './wal-load.js';
import { zstdTable, type ZstdBenchResult, type ZstdRow } from './zstd-bindings.js';

export interface StepResult {
  tool: 'pgdr' | 'pgbackrest';
  kind: 'backup' | 'restore';
  round: number;
  wallSeconds: number;
  /** CPU of the tool's own process tree (user + system). */
  cpuSeconds?: number;
  /** CPU the PostgreSQL server spent during a backup (walsender/backends, archive_command runs). */
  serverCpuSeconds?: number;
  storedBytes?: number;
  restoredBytes?: number;
  memory?: MemoryPeaks;
  /** 1-minute load average just before the step: a shared machine shows here. */
  load1: number;
  id?: string;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  options: Record<string, unknown>;
  machine: MachineInfo;
  pgdrAvailable: boolean;
  errors: string[];
  dataset?: DatasetInfo & { zstd3: RatioInfo };
  sourceBytes?: number;
  zstd?: ZstdBenchResult;
  steps: StepResult[];
  wal: (WalLoadResult & { load1: number })[];
  latency: LatencyResult[];
  /** The segment the latency step pushed: its size at zstd level 3. */
  latencySegment?: { zstd3Bytes: number };
  /** 1-minute load average before and after the latency step: on a busy machine every call waits for a core. */
  latencyLoad?: { before: number; after: number };
}

/** Targets from the design brief; "holds" is computed, never written by hand. */
const TARGETS = {
  wallRatio: 1.25,
  peakMiB: 300,
  /** A backlog growing by less than this many segments per second over the load counts as not growing. */
  slope: 0.05,
  /** One cold `wal push` (a fresh process, nothing queued) against one synchronous pgBackRest archive-push (issue 10). */
  pushRatio: 2,
};

/**
 * Sections of the page that `npm run bench -- --only ...` rewrites on their own (between markers), and the one
 * test/bench/push-breakdown.ts writes (where the time of a push goes), which every run carries over.
 */
export const WAL_LOAD_SECTION = 'wal-load';
export const PUSH_LATENCY_SECTION = 'push-latency';
export const PUSH_BREAKDOWN_SECTION = 'push-breakdown';

/** Summary rows a partial run replaces, found by how their first cell starts. */
const SUMMARY_ROW_KEYS = {
  wal: 'no growing WAL backlog',
  latency: 'one archive push',
  peak: 'pgdr peak memory',
  treePeak: "… the same, all of pgdr's processes",
} as const;

function steps(r: BenchResults, tool: string, kind: string): StepResult[] {
  return r.steps.filter((s) => s.tool === tool && s.kind === kind);
}

function med(list: StepResult[], f: (s: StepResult) => number | undefined): number {
  return median(list.map(f).filter((v): v is number => v !== undefined));
}

function maxOf(list: StepResult[], f: (m: MemoryPeaks) => number): number {
  return Math.max(0, ...list.map((s) => (s.memory ? f(s.memory) : 0)));
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'not measured' : ok ? '**holds**' : '**does not hold**';
}

export function renderDoc(r: BenchResults): string {
  const out: string[] = [];
  const pgdrB = steps(r, 'pgdr', 'backup');
  const pgbrB = steps(r, 'pgbackrest', 'backup');
  const pgdrR = steps(r, 'pgdr', 'restore');
  const pgbrR = steps(r, 'pgbackrest', 'restore');
  const backupRatio = med(pgdrB, (s) => s.wallSeconds) / med(pgbrB, (s) => s.wallSeconds);
  const restoreRatio = med(pgdrR, (s) => s.wallSeconds) / med(pgbrR, (s) => s.wallSeconds);
  const storedRatio = med(pgdrB, (s) => s.storedBytes) / med(pgbrB, (s) => s.storedBytes);
  const { pgdr: pgdrLatency, pgbr: pgbrLatency } = latencyPair(r);
  const { walPgdr } = walRuns(r);
  // The memory target covers every pgdr command measured: backup, restore, and wal push (alone and under load).
  const pgdrMainPeak =
    Math.max(maxOf([...pgdrB, ...pgdrR], (m) => m.mainKiB), pgdrLatency?.maxRssKiB ?? 0, walPgdr?.memory?.maxProcessKiB ?? 0) / 1024;
  const pgdrTreePeak = Math.max(maxOf([...pgdrB, ...pgdrR], (m) => m.treeSumKiB), walPgdr?.memory?.maxTreeSumKiB ?? 0) / 1024;
  const pgbrMainPeak =
    Math.max(maxOf([...pgbrB, ...pgbrR], (m) => m.mainKiB), pgbrLatency?.maxRssKiB ?? 0, ...r.wal.filter((w) => w !== walPgdr).map((w) => w.memory?.maxProcessKiB ?? 0)) / 1024;
  const pgbrTreePeak = Math.max(maxOf([...pgbrB, ...pgbrR], (m) => m.treeSumKiB), ...r.wal.filter((w) => w !== walPgdr).map((w) => w.memory?.maxTreeSumKiB ?? 0)) / 1024;
  const measured = (n: number) => Number.isFinite(n) && n > 0;

  out.push('# Benchmarks: pgdr side by side with pgBackRest', '');
  out.push(
    `Generated by \`npm run bench\` (test/bench/main.ts) on ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC` +
      `${r.quick ? ' — **a --quick smoke run: small dataset, short load; not for conclusions**' : ''}. ` +
      'Every figure below comes from that one run, pgdr and pgBackRest on the same server, the same data and the same machine; ' +
      'ratios are pgdr / pgBackRest (below 1 is pgdr faster or smaller). The scale section at the end comes from its own run ' +
      '(`npm run bench:scale`) and is kept as it was; a section re-measured on its own (`npm run bench -- --only ...`) says so ' +
      'at its top, and the summary rows it feeds are updated with it.',
    '',
  );
  if (r.errors.length > 0) {
    out.push('**Steps that failed in this run** (their rows are missing below):', '', ...r.errors.map((e) => `- ${e}`), '');
  }

  out.push('## Summary', '');
  const loads = [...r.steps.map((s) => s.load1), ...r.wal.map((w) => w.load1)];
  const busy = median(loads);
  if (loads.length > 0 && busy > r.machine.nproc) {
    out.push(
      `> **This run was taken on a busy machine**: the median 1-minute load average before the measured steps was ` +
        `${busy.toFixed(1)} on ${r.machine.nproc} cores (other work was running beside the bench). Wall times swing ` +
        'between rounds (see "Every step"); the CPU-time rows are the steadier comparison. Re-run `npm run bench` on a quiet ' +
        'machine before drawing conclusions from the wall-time ratios.',
      '',
    );
  }
  out.push(
    markdownTable(
      ['target', 'pgdr', 'pgBackRest', 'ratio', 'verdict'],
      [
        [
          `full backup wall time ≤ ${TARGETS.wallRatio}× pgBackRest`,
          measured(backupRatio) ? fmtSeconds(med(pgdrB, (s) => s.wallSeconds)) : '–',
          fmtSeconds(med(pgbrB, (s) => s.wallSeconds)),
          fmtRatio(backupRatio),
          verdict(measured(backupRatio) ? backupRatio <= TARGETS.wallRatio : undefined),
        ],
        [
          `restore wall time ≤ ${TARGETS.wallRatio}× pgBackRest`,
          measured(restoreRatio) ? fmtSeconds(med(pgdrR, (s) => s.wallSeconds)) : '–',
          fmtSeconds(med(pgbrR, (s) => s.wallSeconds)),
          fmtRatio(restoreRatio),
          verdict(measured(restoreRatio) ? restoreRatio <= TARGETS.wallRatio : undefined),
        ],
        [
          `pgdr peak memory < ${TARGETS.peakMiB} MB (RSS of one pgdr node process: backup, restore, wal push)`,
          pgdrMainPeak > 0 ? `${pgdrMainPeak.toFixed(0)} MiB` : '–',
          `${pgbrMainPeak.toFixed(0)} MiB`,
          '',
          verdict(pgdrMainPeak > 0 ? pgdrMainPeak * 1.048576 < TARGETS.peakMiB : undefined),
        ],
        [
          `… the same, all of pgdr's processes at one moment (node + pg_basebackup + zstd; concurrent archive_commands)`,
          pgdrTreePeak > 0 ? `${pgdrTreePeak.toFixed(0)} MiB` : '–',
          `${pgbrTreePeak.toFixed(0)} MiB`,
          '',
          verdict(pgdrTreePeak > 0 ? pgdrTreePeak * 1.048576 < TARGETS.peakMiB : undefined),
        ],
        walSummaryRow(r),
        [
          'stored size of a full backup (no target)',
          measured(storedRatio) ? fmtBytes(med(pgdrB, (s) => s.storedBytes)) : '–',
          fmtBytes(med(pgbrB, (s) => s.storedBytes)),
          fmtRatio(storedRatio),
          '',
        ],
        latencySummaryRow(r),
      ],
    ),
    '',
  );

  out.push('## Machine', '');
  const m = r.machine;
  out.push(
    markdownTable(
      ['', ''],
      [
        ['CPU', `${m.nproc} × ${m.cpuModel}`],
        ['memory', `${m.memoryGiB} GiB`],
        ['disk', m.disk],
        ['kernel', m.kernel],
        ['PostgreSQL', m.postgres],
        ['pgBackRest', m.pgbackrest],
        ['zstd', m.zstd],
        ['Node.js', m.node],
        ['pgdr', m.pgdr],
      ],
    ),
    '',
    'The machine may be shared with other work (CI, other sessions); the 1-minute load average before each step is in the ' +
      'per-step tables, so a disturbed step can be told apart. Rounds alternate which tool goes first.',
    '',
  );

  if (r.dataset) {
    const d = r.dataset;
    out.push('## Dataset', '');
    out.push(
      `test/bench/dataset.ts, scale ${d.scale}: an orders/customers/events schema generated in SQL with a fixed setseed() — ` +
        `${d.rows.customers.toLocaleString('en')} customers (names, emails, addresses, phone, tags, a bcrypt-shaped hash), ` +
        `${d.rows.orders.toLocaleString('en')} orders (numerics, a JSONB list of line items, free-text notes on a quarter, tracking numbers), ` +
        `${d.rows.events.toLocaleString('en')} events (timestamps, inet, user agents, paths, random request UUIDs, a JSONB payload); ` +
        'word picks are skewed (Zipf-like) as real data is; primary keys and four secondary indexes; VACUUM FREEZE after the load. ' +
        `Loaded with wal_level=minimal in ${fmtSeconds(d.loadSeconds)} (two connections in parallel).`,
      '',
      markdownTable(
        ['', ''],
        [
          ['pg_database_size', `${fmtBytes(d.bytes)} (${(d.bytes / 1e9).toFixed(2)} GB)`],
          ...d.tables.map((t): Cell[] => [`${t.name} (with indexes)`, fmtBytes(t.bytes)]),
          ['data directory without pg_wal (what a backup reads)', r.sourceBytes ? fmtBytes(r.sourceBytes) : '–'],
          ['zstd -3 -T2 of the database directory (tar)', `${fmtBytes(d.zstd3.zstdBytes)}, ratio ${d.zstd3.ratio.toFixed(2)}×`],
        ],
      ),
      '',
    );
  }

  out.push('## Full backup and restore', '');
  out.push(
    '- **pgdr**: `pgdr backup now --json` against the bench server over its Unix socket (PGHOST/PGPORT/PGUSER; pgBackRest uses the same socket), repository `file://` in a temp dir, ' +
      'archive_command `pgdr wal push %p` into the same repository; `pgdr restore --pgdata <empty dir> --target latest`. ' +
      'The backup joins pg_basebackup to zstd with a kernel pipe (Node reads only the compressed stream); the restore joins ' +
      'zstd -d to tar -x the same way. ' +
      'Run as postgres: `runuser -u postgres -- node bin/pgdr …`, compiled CLI from dist/.',
    '- **pgBackRest**: posix repository in a temp dir, `compress-type=zst`, `compress-level=3`, `process-max=2`, `start-fast=y`, ' +
      'archive_command `pgbackrest archive-push %p` (sync); `pgbackrest backup --type=full`; `pgbackrest restore` into an empty dir.',
    '- Both: the page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`) before every backup and restore; archive_command is ' +
      'switched to the tool under test with ALTER SYSTEM + pg_reload_conf() and the archiver drained before the step; restores ' +
      'write files and recovery settings only (neither starts the server); stored size is `du -sb` of the backup\'s directory ' +
      '(WAL archived separately is not counted for either).',
    '- CPU: user + system seconds of the tool\'s process tree (/usr/bin/time %U + %S), and for backups also what the ' +
      'PostgreSQL server spent meanwhile (its process tree\'s utime/stime/cutime/cstime from /proc: the walsender that ' +
      'streams pg_basebackup\'s tar, the archive_command runs). On a shared machine CPU time is the steadier comparison; ' +
      'wall time is what the targets are about.',
    '- Memory: **main** = peak RSS (VmHWM) of the tool\'s own process (pgdr\'s node; pgBackRest\'s main process); **largest child** = ' +
      'the largest peak of any one descendant (pg_basebackup, zstd, pgBackRest\'s local workers); **tree** = the peak of the summed ' +
      'RSS of the whole tree, sampled every 100 ms. `/usr/bin/time -f %M` reports the max RSS of the single largest process of the ' +
      'tree, which is shown as a cross-check.',
    '',
  );
  const sideRow = (label: string, f: (list: StepResult[]) => string, ratio?: (a: StepResult[], b: StepResult[]) => number): Cell[][] => [
    [label, f(pgdrB), f(pgbrB), ratio ? fmtRatio(ratio(pgdrB, pgbrB)) : ''],
  ];
  const sideRowR = (label: string, f: (list: StepResult[]) => string, ratio?: (a: StepResult[], b: StepResult[]) => number): Cell[][] => [
    [label, f(pgdrR), f(pgbrR), ratio ? fmtRatio(ratio(pgdrR, pgbrR)) : ''],
  ];
  const wall = (l: StepResult[]) => (l.length ? fmtSeconds(med(l, (s) => s.wallSeconds)) : '–');
  const mem = (f: (m: MemoryPeaks) => number) => (l: StepResult[]) => (l.some((s) => s.memory) ? fmtMiB(maxOf(l, f)) : '–');
  const sumCpu = (x: StepResult) => (x.cpuSeconds === undefined ? undefined : x.cpuSeconds + (x.serverCpuSeconds ?? 0));
  const cpu = (f: (s: StepResult) => number | undefined) => (l: StepResult[]) => (l.some((s) => f(s) !== undefined) ? fmtSeconds(med(l, f)) : '–');
  const cpuRatio = (f: (s: StepResult) => number | undefined) => (a: StepResult[], b: StepResult[]) => med(a, f) / med(b, f);
  const wallRatio = (a: StepResult[], b: StepResult[]) => med(a, (s) => s.wallSeconds) / med(b, (s) => s.wallSeconds);
  const memRatio = (f: (m: MemoryPeaks) => number) => (a: StepResult[], b: StepResult[]) => maxOf(a, f) / maxOf(b, f);
  out.push(
    markdownTable(
      ['', 'pgdr', 'pgBackRest', 'pgdr / pgBackRest'],
      [
        ...sideRow(`backup wall time (median of ${Math.max(pgdrB.length, pgbrB.length)})`, wall, wallRatio),
        ...sideRow('backup CPU: tool processes (median)', cpu((x) => x.cpuSeconds), cpuRatio((x) => x.cpuSeconds)),
        ...sideRow('backup CPU: tool + PostgreSQL server (median)', cpu((x) => sumCpu(x)), cpuRatio((x) => sumCpu(x))),
        ...sideRow('backup stored size', (l) => (l.length ? fmtBytes(med(l, (s) => s.storedBytes)) : '–'), (a, b) => med(a, (s) => s.storedBytes) / med(b, (s) => s.storedBytes)),
        ...sideRow('backup peak RSS: main process', mem((x) => x.mainKiB), memRatio((x) => x.mainKiB)),
        ...sideRow('backup peak RSS: largest child', mem((x) => x.largestChildKiB), memRatio((x) => x.largestChildKiB)),
        ...sideRow('backup peak RSS: whole tree', mem((x) => x.treeSumKiB), memRatio((x) => x.treeSumKiB)),
        ...sideRowR(`restore wall time (median of ${Math.max(pgdrR.length, pgbrR.length)})`, wall, wallRatio),
        ...sideRowR('restore CPU: tool processes (median)', cpu((x) => x.cpuSeconds), cpuRatio((x) => x.cpuSeconds)),
        ...sideRowR('restored size on disk', (l) => (l.length ? fmtBytes(med(l, (s) => s.restoredBytes)) : '–')),
        ...sideRowR('restore peak RSS: main process', mem((x) => x.mainKiB), memRatio((x) => x.mainKiB)),
        ...sideRowR('restore peak RSS: largest child', mem((x) => x.largestChildKiB), memRatio((x) => x.largestChildKiB)),
        ...sideRowR('restore peak RSS: whole tree', mem((x) => x.treeSumKiB), memRatio((x) => x.treeSumKiB)),
      ],
    ),
    '',
    'Every step:',
    '',
    markdownTable(
      ['tool', 'step', 'round', 'wall', 'CPU tool + server', 'stored / restored', 'main RSS', 'largest child', 'tree RSS', '/usr/bin/time %M', 'load avg before'],
      r.steps.map((s) => [
        s.tool,
        s.kind,
        s.round,
        fmtSeconds(s.wallSeconds),
        s.cpuSeconds === undefined ? '–' : `${fmtSeconds(s.cpuSeconds)}${s.serverCpuSeconds === undefined ? '' : ` + ${fmtSeconds(s.serverCpuSeconds)}`}`,
        fmtBytes(s.storedBytes ?? s.restoredBytes ?? 0),
        s.memory ? fmtMiB(s.memory.mainKiB) : '–',
        s.memory ? `${fmtMiB(s.memory.largestChildKiB)} (${s.memory.largestChildName})` : '–',
        s.memory ? fmtMiB(s.memory.treeSumKiB) : '–',
        s.memory ? fmtMiB(s.memory.timeMaxKiB) : '–',
        s.load1.toFixed(2),
      ]),
    ),
    '',
  );

  if (r.wal.length > 0) out.push(`<!-- ${WAL_LOAD_SECTION}:begin -->`, walSection(r), `<!-- ${WAL_LOAD_SECTION}:end -->`, '');
  if (r.latency.length > 0) out.push(`<!-- ${PUSH_LATENCY_SECTION}:begin -->`, latencySection(r), `<!-- ${PUSH_LATENCY_SECTION}:end -->`, '');
  // Written by test/bench/push-breakdown.ts (main.ts carries it over from the old page); an empty slot keeps its place.
  out.push(`<!-- ${PUSH_BREAKDOWN_SECTION}:begin -->`, `<!-- ${PUSH_BREAKDOWN_SECTION}:end -->`, '');

  if (r.zstd) {
    out.push('## Choosing the zstd binding', '');
    out.push(
      `test/bench/zstd-bindings.ts; input: ${r.zstd.inputDescription}. Level 3; each candidate and chunk size in its own Node ` +
        'process (so peak RSS is its own: VmHWM, not ru_maxrss, which Linux carries over from the parent); best of ' +
        `${String((r.options as { quick?: boolean }).quick ? 1 : 2)} runs; MiB/s of uncompressed data, wall time of the whole loop ` +
        '(read from page cache → compress → write). "zstd -d reads it": the output decompressed with the zstd CLI equals the ' +
        'input byte for byte. The npm candidates are installed outside the project (npm install --prefix /tmp/pgdr-zstd-bench), ' +
        'zstd-napi built from source by node-gyp after approving its install script (allowScripts). Node peak RSS includes ' +
        'tsx and execa (the baseline row); the figure in parentheses is the difference to the baseline.',
      '',
      zstdTable(r.zstd.rows),
      '',
      zstdDecision(r.zstd.rows),
      '',
    );
  }

  out.push(
    '## How to run',
    '',
    '```',
    'npm run bench                         # full run: ~2.4 GB dataset, 3 rounds, 60 s loads; writes docs/benchmarks.md',
    'npm run bench -- --quick              # smoke run: ~200 MB, 1 round, 20 s loads; writes .bench/benchmarks-quick.md',
    'npm run bench -- --only push-latency  # only the per-segment latency (no dataset): its section and summary row here',
    'npm run bench -- --only wal-load,push-latency   # the WAL load too (add --load-seconds S, --latency-n N)',
    'npx tsx test/bench/push-breakdown.ts  # where the time of a cold wal push goes (and what --config adds): its section here',
    'npx tsx test/bench/zstd-bindings.ts   # the zstd table alone (generated input, or --input DIR|FILE)',
    'npx tsx test/bench/age-implementations.ts --doc docs/benchmarks.md   # the age CLI against the npm package (its section here)',
    'npm run bench -- --only encryption --quick --doc docs/benchmarks.md  # the cost of encryption: backup and restore, plain against encrypted',
    'npx tsx test/bench/dataset.ts         # build the dataset alone and print its size and zstd ratio',
    'npx tsx test/bench/pgbackrest.ts --quick   # pgBackRest backup + restore smoke test',
    '```',
    '',
    'Needs root (drop_caches, runuser), postgresql-15, pgbackrest, zstd, GNU time, and, for the zstd table, a C++ toolchain ' +
      '(node-gyp) and the npm registry. Raw results of the last run are kept in .bench/results-*.json; ' +
      '`npx tsx test/bench/report-doc.ts .bench/results-full.json > docs/benchmarks.md` re-renders this page.',
    '',
  );
  return out.join('\n');
}

/**
 * The decision and the figures it rests on, taken from the table of the same run (never typed in by hand), with
 * the comparison sentences chosen by what the figures say.
 */
function zstdDecision(rows: ZstdRow[]): string {
  const get = (id: string, mib: number) => rows.find((r) => r.id === id && r.chunkMiB === mib);
  const speed = (id: string, mib: number) => {
    const r = get(id, mib);
    return r?.ok ? r.compressMiBs : NaN;
  };
  const f = (n: number) => (Number.isFinite(n) ? `${n.toFixed(0)} MiB/s` : 'n/a');
  const codec16 = get('zstd-codec', 16);
  const napi1 = speed('zstd-napi', 1);
  const napi16 = speed('zstd-napi', 16);
  const t1 = speed('cli-T1', 16);
  const t2 = speed('cli-T2', 16);
  const t2at1 = speed('cli-T2', 1);
  const perChunk = speed('cli-T1-per-chunk', 16);
  const bestInProcess = Math.max(...['zstd-napi', 'zstd-napi-stream', 'mongodb-zstd'].flatMap((id) => [speed(id, 1), speed(id, 16)]).filter(Number.isFinite));
  const lines: string[] = [];
  lines.push(
    '**Decision: pgdr compresses with the zstd CLI in a child process** (src/stream/zstd.ts): `-3 --check`, `-T2` for base ' +
      'backups, one thread per WAL segment. What this run measured:',
    '',
  );
  lines.push(
    `- zstd-codec (Emscripten): ${codec16 && !codec16.ok ? `**fails on a 16 MiB buffer** (${codec16.error ?? 'error'})` : 'did not fail on 16 MiB in this run'} ` +
      `— one WAL segment — and manages ${f(speed('zstd-codec', 1))} on 1 MiB chunks: out.`,
  );
  lines.push(
    `- In-process native bindings: zstd-napi ${f(napi1)} (1 MiB) / ${f(napi16)} (16 MiB), @mongodb-js/zstd ` +
      `${f(speed('mongodb-zstd', 1))} / ${f(speed('mongodb-zstd', 16))}; the CLI at one thread ${f(speed('cli-T1', 1))} / ${f(t1)}, ` +
      `at two threads ${f(t2at1)} / ${f(t2)}. ` +
      (Number.isFinite(bestInProcess) && Number.isFinite(t2)
        ? Math.max(t2, t2at1) >= bestInProcess
          ? `The two-thread CLI is the fastest here (${fmtRatio(Math.max(t2, t2at1) / bestInProcess)} the best in-process binding).`
          : `The best in-process binding is ${fmtRatio(bestInProcess / Math.max(t2, t2at1))} the two-thread CLI here: one core ` +
            'of native zstd without a pipe in between beats two CLI threads that share the same two cores with Node. The ' +
            'bindings still lose on what pgdr needs besides speed: zstd-napi compresses on the Node thread (a base backup ' +
            'would block the event loop that also drives the upload), and both need a native build or a platform binary at ' +
            'install time.'
        : ''),
  );
  lines.push(
    '- Install cost: zstd-napi builds from source with node-gyp (a C++ toolchain, and npm 11 runs its install script only ' +
      'once approved through allowScripts); @mongodb-js/zstd 2+ downloads its binary from GitHub at install time, which ' +
      'fails without that network (1.2.2, used here, ships it as an npm package). The zstd CLI is one apt package, already ' +
      'on PostgreSQL hosts, and its frames are what `zstd -d` reads by definition.',
  );
  const msPerSegment = (mibs: number) => (Number.isFinite(mibs) ? `${((16 / mibs) * 1000).toFixed(0)} ms` : 'n/a');
  lines.push(
    `- A fresh zstd process per 16 MiB segment (spawn, pipe the whole segment, collect the frame) takes ${msPerSegment(perChunk)} ` +
      `per segment against ${msPerSegment(t1)} inside one long-running zstd: the per-process cost is real but smaller than ` +
      'starting a Node process per segment (see the per-segment latency table).',
  );
  return lines.join('\n');
}

function latencyPair(r: BenchResults): { pgdr?: LatencyResult; pgbr?: LatencyResult } {
  return { pgdr: r.latency.find((l) => l.tool.startsWith('pgdr')), pgbr: r.latency.find((l) => l.tool.startsWith('pgBackRest')) };
}

function walRuns(r: BenchResults) {
  return {
    walPgdr: r.wal.find((w) => w.archiver.startsWith('pgdr')),
    walSync: r.wal.find((w) => w.archiver.includes('sync') && !w.archiver.includes('async')),
    walAsync: r.wal.find((w) => w.archiver.includes('async')),
  };
}

function walSummaryRow(r: BenchResults): Cell[] {
  const { walPgdr, walSync, walAsync } = walRuns(r);
  return [
    `${SUMMARY_ROW_KEYS.wal} under pgbench load (slope < ${TARGETS.slope} segments/s, drained after)`,
    walPgdr ? `${walPgdr.backlogSlope.toFixed(3)}/s, max ${walPgdr.backlogMax}` : '–',
    walSync ? `sync ${walSync.backlogSlope.toFixed(3)}/s, async ${walAsync ? walAsync.backlogSlope.toFixed(3) : '–'}/s` : '–',
    '',
    verdict(walPgdr ? walPgdr.backlogSlope < TARGETS.slope && walPgdr.drainSeconds !== null : undefined),
  ];
}

function latencySummaryRow(r: BenchResults): Cell[] {
  const { pgdr, pgbr } = latencyPair(r);
  const ratio = pgdr && pgbr ? pgdr.medianSeconds / pgbr.medianSeconds : NaN;
  return [
    `${SUMMARY_ROW_KEYS.latency} of a 16 MiB segment (cold: a fresh process, nothing queued), median ≤ ${TARGETS.pushRatio}× pgBackRest`,
    pgdr ? fmtSeconds(pgdr.medianSeconds) : '–',
    pgbr ? fmtSeconds(pgbr.medianSeconds) : '–',
    Number.isFinite(ratio) ? fmtRatio(ratio) : '',
    verdict(Number.isFinite(ratio) ? ratio <= TARGETS.pushRatio : undefined),
  ];
}

function walSection(r: BenchResults, note = ''): string {
  const out: string[] = [];
  const { walPgdr, walSync, walAsync } = walRuns(r);
  const w0 = r.wal[0]!;
  out.push('## WAL archiving under write load', '');
  if (note) out.push(note, '');
  out.push(
    `pgbench (scale ${String(r.options.pgbenchScale)}, in its own database) \`-c 4 -j 2 -T ${Math.round(w0.loadSeconds)}\` with ` +
      'synchronous_commit=off, wal_compression=off, max_wal_size=128MB (frequent checkpoints, many full-page images), ' +
      'once per archiver, each starting after a CHECKPOINT with nothing waiting. Produced = WAL distance / 16 MiB; ' +
      'archived = pg_stat_archiver.archived_count; backlog = .ready files in pg_wal/archive_status, sampled every second ' +
      '(files a tool has already sent ahead still count until PostgreSQL asks for them). Slope = least-squares growth of the ' +
      'backlog over the load; drain = time after the load until nothing was waiting. Archiver memory: every process whose ' +
      'command line is the archive command (and its children, e.g. zstd), sampled every 100 ms during load and drain.',
    '',
    markdownTable(
      [
        'archiver',
        'pgbench tps',
        'produced seg/s',
        'archived seg/s',
        'backlog max',
        'backlog at end',
        'slope seg/s',
        'drain',
        'failed calls',
        'archiver peak RSS: one process / all at once',
        'load avg after',
      ],
      r.wal.map((w) => [
        w.archiver,
        w.tps.toFixed(0),
        w.producedPerSecond.toFixed(2),
        w.archivedPerSecond.toFixed(2),
        w.backlogMax,
        w.backlogEnd,
        w.backlogSlope.toFixed(3),
        w.drainSeconds === null ? 'not drained' : fmtSeconds(w.drainSeconds),
        w.failedAttempts,
        w.memory ? `${fmtMiB(w.memory.maxProcessKiB)} / ${fmtMiB(w.memory.maxTreeSumKiB)}` : '–',
        w.load1.toFixed(2),
      ]),
    ),
    '',
  );
  if (walPgdr && (walSync || walAsync)) {
    out.push(
      `Archived segments per second, pgdr / pgBackRest: ${walSync ? `${fmtRatio(walPgdr.archivedPerSecond / walSync.archivedPerSecond)} against sync` : ''}` +
        `${walAsync ? `, ${fmtRatio(walPgdr.archivedPerSecond / walAsync.archivedPerSecond)} against async` : ''}.`,
      '',
    );
  }
  return out.join('\n').replace(/\n+$/, '');
}

function latencySection(r: BenchResults, note = ''): string {
  const out: string[] = ['## Per-segment archive latency', ''];
  if (note) out.push(note, '');
  const { pgdr, pgbr } = latencyPair(r);
  out.push(
    `One cold archive call per copy of a real 16 MiB segment of the bench server (written by pgbench` +
      `${r.latencySegment ? `; ${fmtBytes(r.latencySegment.zstd3Bytes)} at zstd level 3` : ''}; copied under ${r.latency[0]!.n} ` +
      'distinct names in a directory without archive_status, so nothing else is waiting and nothing is pushed ahead), timed ' +
      'from spawn to exit: what PostgreSQL waits for per segment when it archives one at a time. pgdr and pgBackRest take ' +
      'turns call by call (the order rotates), so a busy moment of a shared machine falls on both; CPU is user + system of ' +
      'the call\'s process tree. The reference rows are not tools: they show what any Node.js archive_command pays before ' +
      'it does anything (Node.js starting and exiting) and what compressing this segment at zstd level 3 takes by itself.',
    '',
    markdownTable(
      ['command', 'median', 'min', 'max', 'CPU median', 'max RSS (/usr/bin/time %M)'],
      r.latency.map((l) => [
        l.tool,
        fmtSeconds(l.medianSeconds),
        fmtSeconds(l.minSeconds),
        fmtSeconds(l.maxSeconds),
        l.cpuMedianSeconds === undefined ? '–' : fmtSeconds(l.cpuMedianSeconds),
        fmtMiB(l.maxRssKiB),
      ]),
    ),
  );
  if (pgdr && pgbr) {
    const cpu = pgdr.cpuMedianSeconds !== undefined && pgbr.cpuMedianSeconds ? `; median CPU: ${fmtRatio(pgdr.cpuMedianSeconds / pgbr.cpuMedianSeconds)}` : '';
    out.push('', `pgdr / pgBackRest, median wall time: ${fmtRatio(pgdr.medianSeconds / pgbr.medianSeconds)} (target ≤ ${TARGETS.pushRatio}×)${cpu}.`);
  }
  if (r.latencyLoad) {
    const { before, after } = r.latencyLoad;
    const busy = Math.max(before, after) > r.machine.nproc;
    out.push(
      '',
      `1-minute load average ${before.toFixed(2)} before the calls, ${after.toFixed(2)} after, on ${r.machine.nproc} cores` +
        (busy
          ? ': **a busy machine**. Every call also waited for a core, so the wall times are well above what a quiet ' +
            'machine gives and their ratio is less steady than the CPU ratio, which leaves the waiting out.'
          : '.'),
    );
  }
  return out.join('\n');
}

/**
 * The memory rows of the summary cover every step of every run shown (backups and restores come from the full run):
 * a partial run can only raise them, so each keeps the larger of its old figure and what this run measured.
 */
function memoryRowsAfter(r: BenchResults, doc: string): Cell[][] {
  const old = (key: string, column: number): number => {
    const line = doc.split('\n').find((l) => l.startsWith(`| ${key}`));
    const cell = line?.split(' | ')[column]?.trim() ?? '';
    return /^\d+ MiB$/.test(cell) ? Number(cell.slice(0, -4)) : 0;
  };
  const { pgdr, pgbr } = latencyPair(r);
  const { walPgdr } = walRuns(r);
  const others = r.wal.filter((w) => w !== walPgdr);
  const mib = (kib: number) => kib / 1024;
  const peak = (key: string, ours: number[], theirs: number[], what: string): Cell[] => {
    const p = Math.max(old(key, 1), ...ours);
    const b = Math.max(old(key, 2), ...theirs);
    return [what, `${p.toFixed(0)} MiB`, `${b.toFixed(0)} MiB`, '', verdict(p * 1.048576 < TARGETS.peakMiB)];
  };
  return [
    peak(
      SUMMARY_ROW_KEYS.peak,
      [mib(pgdr?.maxRssKiB ?? 0), mib(walPgdr?.memory?.maxProcessKiB ?? 0)],
      [mib(pgbr?.maxRssKiB ?? 0), ...others.map((w) => mib(w.memory?.maxProcessKiB ?? 0))],
      `${SUMMARY_ROW_KEYS.peak} < ${TARGETS.peakMiB} MB (RSS of one pgdr node process: backup, restore, wal push)`,
    ),
    peak(
      SUMMARY_ROW_KEYS.treePeak,
      [mib(walPgdr?.memory?.maxTreeSumKiB ?? 0)],
      others.map((w) => mib(w.memory?.maxTreeSumKiB ?? 0)),
      `${SUMMARY_ROW_KEYS.treePeak} at one moment (node + pg_basebackup + zstd; concurrent archive_commands)`,
    ),
  ];
}

/**
 * The page after a partial run (`--only push-latency`, `--only wal-load`): the old page with the measured sections and
 * their summary rows replaced, each section saying when and where it was measured, since the rest is another run's.
 */
export function renderPartialDoc(r: BenchResults, oldDoc: string): string {
  const when = `${r.startedAt.slice(0, 16).replace('T', ' ')} UTC`;
  const m = r.machine;
  const note = (flag: string) =>
    `*Measured on its own by \`npm run bench -- --only ${flag}\` on ${when} (${m.nproc} × ${m.cpuModel}, Node.js ${m.node}, ` +
    `pgdr ${m.pgdr}), on a server without the dataset; the other sections come from the run named at the top.*`;
  let doc = oldDoc.trim() === '' ? '# Benchmarks: pgdr side by side with pgBackRest\n\n## Summary\n\n## Machine\n' : oldDoc;
  const rows: Cell[][] = [...memoryRowsAfter(r, doc)];
  if (r.wal.length > 0) {
    doc = replaceSection(doc, WAL_LOAD_SECTION, walSection(r, note('wal-load')));
    rows.push(walSummaryRow(r));
  }
  if (r.latency.length > 0) {
    doc = replaceSection(doc, PUSH_LATENCY_SECTION, latencySection(r, note('push-latency')));
    rows.push(latencySummaryRow(r));
  }
  return replaceTableRows(doc, '## Summary', ['target', 'pgdr', 'pgBackRest', 'ratio', 'verdict'], rows, Object.values(SUMMARY_ROW_KEYS));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: tsx test/bench/report-doc.ts RESULTS.json > docs/benchmarks.md\n');
    process.exitCode = 2;
  } else {
    process.stdout.write(renderDoc(JSON.parse(readFileSync(file, 'utf8')) as BenchResults));
  }
}
