/**
 * The files-engine section of docs/benchmarks.md and its summary rows, from EngineResults (engine-bench.ts). Kept
 * apart from report-doc.ts: main.ts applies it to whichever page it wrote (a full run's, or the old page after
 * `--only ...`), and carries the old section and rows over when this run did not measure the engine.
 */
import type { EngineResults, EngineStep, EngineStepKind, EngineTool } from './engine-bench.js';
import type { MachineInfo } from './lib/machine.js';
import { fmtBytes, fmtMiB, fmtRatio, fmtSeconds, markdownTable, median, replaceSection, replaceTableRows, type Cell } from './lib/report.js';
import { SHAPE_DESCRIPTIONS, UPDATE_DESCRIPTIONS, type ShapeName } from './shapes.js';

export const ENGINE_SECTION = 'files-engine';

/** Targets of issue 10 for the files engine; "holds" is computed, never written by hand. */
export const ENGINE_TARGETS = {
  /** pgdr's full backup and restore against pgBackRest's (issue 10: the files engine must beat it on backup). */
  backupRatio: 0.8,
  restoreRatio: 1.0,
  /** An incremental after a 5% update: stored bytes and wall time, as a share of pgdr's own full. */
  incrStored: 0.15,
  incrTime: 0.35,
  /** A delta restore of a directory 1% behind, as a share of pgdr's own full restore. */
  deltaTime: 0.25,
  peakMiB: 300,
} as const;

/** Every summary row this section owns starts with this, so a later run replaces them and nothing else. */
const ROW_PREFIX = 'files engine';

const SUMMARY_HEADER = ['target', 'pgdr', 'pgBackRest', 'ratio', 'verdict'];

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'not measured' : ok ? '**holds**' : '**does not hold**';
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a';
}

function stepsOf(e: EngineResults, shape: ShapeName, tool: EngineTool, kind: EngineStepKind): EngineStep[] {
  return e.steps.filter((s) => s.shape === shape && s.tool === tool && s.kind === kind);
}

/** The step, or of a repeated step the run with the median wall time (the lower of the middle two for an even count). */
function find(e: EngineResults, shape: ShapeName, tool: EngineTool, kind: EngineStepKind): EngineStep | undefined {
  const runs = stepsOf(e, shape, tool, kind).sort((a, b) => a.wallSeconds - b.wallSeconds);
  return runs[Math.floor((runs.length - 1) / 2)];
}

/** pgdr's wall time over pgBackRest's in each round, pgdr's runs in order. */
function roundRatios(e: EngineResults, shape: ShapeName, kind: EngineStepKind): number[] {
  const theirs = stepsOf(e, shape, 'pgbackrest', kind);
  return stepsOf(e, shape, 'pgdr', kind).flatMap((a) => {
    const b = theirs.find((t) => t.round === a.round);
    return b ? [a.wallSeconds / b.wallSeconds] : [];
  });
}

/**
 * The verdict's ratio: the median of the rounds' own ratios. Both tools of a round ran minutes apart on the same
 * machine, so a disturbance that slows a whole round cancels out; medians of each tool's runs taken apart would not.
 */
function pairedRatio(e: EngineResults, shape: ShapeName, kind: EngineStepKind): number {
  return median(roundRatios(e, shape, kind));
}

/** "7.43 s (3 runs: 7.10, 7.43, 8.02 s)" for a repeated step, else its wall time. */
function wallCell(e: EngineResults, shape: ShapeName, tool: EngineTool, kind: EngineStepKind, suffix = ''): string {
  const runs = stepsOf(e, shape, tool, kind);
  const mid = find(e, shape, tool, kind);
  if (mid === undefined) return '–';
  if (runs.length < 2) return `${fmtSeconds(mid.wallSeconds)}${suffix}`;
  return `${fmtSeconds(mid.wallSeconds)}${suffix} (${runs.length} runs: ${runs.map((r) => r.wallSeconds.toFixed(2)).join(', ')} s)`;
}

interface ShapeFigures {
  full: Partial<Record<EngineTool, EngineStep>>;
  restore: Partial<Record<EngineTool, EngineStep>>;
  incr: Partial<Record<EngineTool, EngineStep>>;
  deltaBackup: Partial<Record<EngineTool, EngineStep>>;
  delta: Partial<Record<EngineTool, EngineStep>>;
}

function figures(e: EngineResults, shape: ShapeName): ShapeFigures {
  const both = (kind: EngineStepKind) => ({ pgdr: find(e, shape, 'pgdr', kind), pgbackrest: find(e, shape, 'pgbackrest', kind) });
  return { full: both('full-backup'), restore: both('full-restore'), incr: both('incr-backup'), deltaBackup: both('delta-backup'), delta: both('delta-restore') };
}

const share = (part: number | undefined, whole: number | undefined) => (part !== undefined && whole ? part / whole : NaN);

function measuredShapes(e: EngineResults): ShapeName[] {
  return [...new Set(e.steps.map((s) => s.shape))];
}

function pgdrPeaks(e: EngineResults): { main: number; tree: number; pgbrMain: number; pgbrTree: number } {
  const max = (tool: EngineTool, f: (s: EngineStep) => number) => Math.max(0, ...e.steps.filter((s) => s.tool === tool).map(f)) / 1024;
  return {
    main: max('pgdr', (s) => s.memory.mainKiB),
    tree: max('pgdr', (s) => s.memory.treeSumKiB),
    pgbrMain: max('pgbackrest', (s) => s.memory.mainKiB),
    pgbrTree: max('pgbackrest', (s) => s.memory.treeSumKiB),
  };
}

export function engineSummaryRows(e: EngineResults): Cell[][] {
  const rows: Cell[][] = [];
  for (const shape of measuredShapes(e)) {
    const f = figures(e, shape);
    const ratioRow = (label: string, target: number, kind: EngineStepKind): Cell[] => {
      const r = pairedRatio(e, shape, kind);
      const n = roundRatios(e, shape, kind).length;
      return [
        label,
        wallCell(e, shape, 'pgdr', kind),
        wallCell(e, shape, 'pgbackrest', kind),
        n > 1 ? `${fmtRatio(r)} (median of ${n} rounds' ratios)` : fmtRatio(r),
        verdict(Number.isFinite(r) ? r <= target : undefined),
      ];
    };
    rows.push(ratioRow(`${ROW_PREFIX} [${shape}] full backup wall time ≤ ${ENGINE_TARGETS.backupRatio}× pgBackRest`, ENGINE_TARGETS.backupRatio, 'full-backup'));
    rows.push(ratioRow(`${ROW_PREFIX} [${shape}] full restore wall time ≤ ${ENGINE_TARGETS.restoreRatio}× pgBackRest`, ENGINE_TARGETS.restoreRatio, 'full-restore'));
    const stored = (t: EngineTool) => share(f.incr[t]?.storedBytes, f.full[t]?.storedBytes);
    const sizeCell = (t: EngineTool) => (f.incr[t] ? `${fmtBytes(f.incr[t]!.storedBytes ?? 0)} (${pct(stored(t))} of its full)` : '–');
    rows.push([
      `${ROW_PREFIX} [${shape}] incr after a 5% update: stored ≤ ${ENGINE_TARGETS.incrStored * 100}% of pgdr's full`,
      sizeCell('pgdr'),
      sizeCell('pgbackrest'),
      fmtRatio(share(f.incr.pgdr?.storedBytes, f.incr.pgbackrest?.storedBytes)),
      verdict(Number.isFinite(stored('pgdr')) ? stored('pgdr') <= ENGINE_TARGETS.incrStored : undefined),
    ]);
    const time = (t: EngineTool) => share(f.incr[t]?.wallSeconds, f.full[t]?.wallSeconds);
    const timeCell = (t: EngineTool) => (f.incr[t] ? `${fmtSeconds(f.incr[t]!.wallSeconds)} (${pct(time(t))} of its full)` : '–');
    rows.push([
      `${ROW_PREFIX} [${shape}] incr after a 5% update: wall time ≤ ${ENGINE_TARGETS.incrTime * 100}% of pgdr's full`,
      timeCell('pgdr'),
      timeCell('pgbackrest'),
      fmtRatio(share(f.incr.pgdr?.wallSeconds, f.incr.pgbackrest?.wallSeconds)),
      verdict(Number.isFinite(time('pgdr')) ? time('pgdr') <= ENGINE_TARGETS.incrTime : undefined),
    ]);
    const delta = (t: EngineTool) => share(f.delta[t]?.wallSeconds, f.restore[t]?.wallSeconds);
    const deltaCell = (t: EngineTool) => (f.delta[t] ? wallCell(e, shape, t, 'delta-restore', `, ${pct(delta(t))} of its full restore`) : '–');
    rows.push([
      `${ROW_PREFIX} [${shape}] delta restore, directory 1% behind: wall time ≤ ${ENGINE_TARGETS.deltaTime * 100}% of pgdr's full restore`,
      deltaCell('pgdr'),
      deltaCell('pgbackrest'),
      fmtRatio(pairedRatio(e, shape, 'delta-restore')),
      verdict(Number.isFinite(delta('pgdr')) ? delta('pgdr') <= ENGINE_TARGETS.deltaTime : undefined),
    ]);
  }
  const peaks = pgdrPeaks(e);
  const anyPgdr = e.steps.some((s) => s.tool === 'pgdr');
  rows.push([
    `${ROW_PREFIX}: peak RSS of all of pgdr's processes at one moment < ${ENGINE_TARGETS.peakMiB} MB (node + zstd; every step, every shape)`,
    anyPgdr ? `${peaks.tree.toFixed(0)} MiB (node alone ${peaks.main.toFixed(0)} MiB)` : '–',
    `${peaks.pgbrTree.toFixed(0)} MiB`,
    '',
    verdict(anyPgdr ? peaks.tree * 1.048576 < ENGINE_TARGETS.peakMiB : undefined),
  ]);
  const checked = e.steps.filter((s) => s.verification);
  const good = checked.filter((s) => s.verification!.ok && (s.verification!.amcheck ?? 'clean') === 'clean');
  const byTool = (t: EngineTool) => `${good.filter((s) => s.tool === t).length} of ${checked.filter((s) => s.tool === t).length}`;
  rows.push([
    `${ROW_PREFIX}: every restore started and gave the source's fingerprint (delta restores also pg_amcheck)`,
    byTool('pgdr'),
    byTool('pgbackrest'),
    '',
    verdict(checked.length > 0 ? good.length === checked.length : undefined),
  ]);
  return rows;
}

export function engineSection(e: EngineResults, machine: MachineInfo, startedAt: string, only: boolean): string {
  const out: string[] = ['## Files engine: three shapes of data', ''];
  const loads = e.loads.length > 0 ? e.loads : [0];
  const when = `${startedAt.slice(0, 16).replace('T', ' ')} UTC`;
  out.push(
    `*Measured ${only ? 'on its own by `npm run bench -- --only engine`' : 'in the run named at the top'} on ${when}, scale ${e.scale}, ` +
      `in ${fmtSeconds(e.seconds)} (loads included); machine: ${machine.nproc} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ` +
      `${machine.postgres}, ${machine.pgbackrest}, Node.js ${machine.node}, pgdr ${machine.pgdr}; ` +
      `**1-minute load average before the steps: median ${median(loads).toFixed(1)}, max ${Math.max(...loads).toFixed(1)} on ${machine.nproc} cores**` +
      `${median(loads) > machine.nproc ? ' — a busy, shared machine: wall times are disturbed, CPU times less so; re-run on a quiet machine before drawing conclusions' : ''}.*`,
    '',
    'Each shape is loaded into its own throwaway PostgreSQL 15 (initdb --data-checksums; test/bench/shapes.ts, fixed seeds), ' +
      'then, with archive_command switched to the tool under test and the page cache dropped before every timed step, ' +
      `the steps below. Steps 1 and 2 run ${roundsOf(e)} time${roundsOf(e) === 1 ? '' : 's'}, and step 4's delta restore as often ` +
      '(each over a fresh copy), the tools taking turns at going first; a target on a wall-time ratio is judged on the median ' +
      'of the rounds\' own pgdr / pgBackRest ratios (single runs of the same code move 10-40% on this shared machine).',
    '',
    '1. **full backup**: pgdr `backup now --engine files --jobs 2` (zstd level 3, the default), pgBackRest `backup --type=full` ' +
      '(posix repository, `compress-type=zst`, `compress-level=3`, `process-max=2`);',
    '2. **full restore** of that backup into an empty directory (pgdr `restore --jobs 2`; pgBackRest `restore`);',
    '3. **incr**: 5% of the rows updated (see below; then VACUUM and CHECKPOINT), an incremental backup of each: pgdr ' +
      '`--type incr` (changed blocks of relation main forks, by page LSN; other changed files whole), pgBackRest 2.45 ' +
      '`--type=incr` (changed files, whole: its block incremental came in later releases);',
    '4. **delta restore**: the server stopped and its data directory copied (that copy is "1% behind"), started again, ' +
      '1% of the rows updated, a backup B of each (incr), then B restored with `--delta` over a fresh copy of the old ' +
      'directory (pgdr `restore --delta --jobs 2`: keeps files whose size and sha256 match; pgBackRest `restore --delta`: ' +
      'size and checksum). "Rewrote" counts the files whose inode or mtime changed (`find -printf`), i.e. what the restore wrote.',
    '',
    'Every restored copy is started (its own port, archive_mode off), recovers from its tool\'s archive and promotes, and ' +
      'must give the same fingerprint as the source had when the backup was taken (row counts and what the updates wrote, ' +
      'shapes.ts\'s FINGERPRINT_SQL); the delta-restored copies also pass `pg_amcheck --heapallindexed`. Wall and CPU are ' +
      'of the tool\'s process tree (/usr/bin/time); backup CPU also shows the server\'s; stored size is `du -sb` of the ' +
      'backup\'s directory in the repository (archived WAL not counted); peak RSS as in "Full backup and restore".',
    '',
  );

  const shapes = measuredShapes(e);
  out.push(
    markdownTable(
      ['shape', 'what', 'database size', 'rows', 'zstd -3 ratio', 'update (5% / 1%)', 'load time'],
      e.shapes.map((run): Cell[] => [
        run.info.shape,
        SHAPE_DESCRIPTIONS[run.info.shape],
        `${fmtBytes(run.info.bytes)} (${run.info.tables.map((t) => `${t.name} ${fmtBytes(t.bytes)}${t.toastBytes > 16384 ? `, TOAST ${fmtBytes(t.toastBytes)}` : ''}`).join('; ')})`,
        Object.entries(run.info.rows)
          .map(([t, n]) => `${t} ${n.toLocaleString('en')}`)
          .join(', '),
        `${run.info.zstd3.ratio.toFixed(2)}×`,
        `${UPDATE_DESCRIPTIONS[run.info.shape](0.05)}: ${run.update5.rows.toLocaleString('en')} rows, ${fmtBytes(run.update5.walBytes)} WAL / ` +
          `${run.update1.rows.toLocaleString('en')} rows, ${fmtBytes(run.update1.walBytes)} WAL`,
        fmtSeconds(run.info.loadSeconds),
      ]),
    ),
    '',
  );

  for (const shape of shapes) {
    const f = figures(e, shape);
    const run = e.shapes.find((s) => s.info.shape === shape);
    out.push(`### ${shape}${run ? ` (${fmtBytes(run.sourceBytes)} data directory without pg_wal)` : ''}`, '');
    const cell = (s: EngineStep | undefined, v: (s: EngineStep) => string) => (s ? v(s) : '–');
    const row = (label: string, pick: (f: ShapeFigures) => Partial<Record<EngineTool, EngineStep>>, value: (s: EngineStep) => number | undefined, fmt: (n: number) => string): Cell[] => {
      const a = pick(f).pgdr;
      const b = pick(f).pgbackrest;
      const va = a ? value(a) : undefined;
      const vb = b ? value(b) : undefined;
      return [label, va === undefined ? '–' : fmt(va), vb === undefined ? '–' : fmt(vb), va !== undefined && vb ? fmtRatio(va / vb) : ''];
    };
    const wall = (s: EngineStep) => s.wallSeconds;
    const cpu = (s: EngineStep) => s.cpuSeconds;
    const tree = (s: EngineStep) => s.memory.treeSumKiB;
    out.push(
      markdownTable(
        ['', 'pgdr', 'pgBackRest', 'pgdr / pgBackRest'],
        [
          row('full backup: wall', (x) => x.full, wall, fmtSeconds),
          row('full backup: CPU, tool', (x) => x.full, cpu, fmtSeconds),
          row('full backup: CPU, PostgreSQL server meanwhile', (x) => x.full, (s) => s.serverCpuSeconds, fmtSeconds),
          row('full backup: stored', (x) => x.full, (s) => s.storedBytes, fmtBytes),
          row('full restore: wall', (x) => x.restore, wall, fmtSeconds),
          row('full restore: CPU', (x) => x.restore, cpu, fmtSeconds),
          row('incr after 5%: wall', (x) => x.incr, wall, fmtSeconds),
          row('incr after 5%: CPU, tool', (x) => x.incr, cpu, fmtSeconds),
          row('incr after 5%: stored', (x) => x.incr, (s) => s.storedBytes, fmtBytes),
          [
            'incr after 5%: stored / its own full; wall / its own full',
            cell(f.incr.pgdr, (s) => `${pct(share(s.storedBytes, f.full.pgdr?.storedBytes))}; ${pct(share(s.wallSeconds, f.full.pgdr?.wallSeconds))}`),
            cell(f.incr.pgbackrest, (s) => `${pct(share(s.storedBytes, f.full.pgbackrest?.storedBytes))}; ${pct(share(s.wallSeconds, f.full.pgbackrest?.wallSeconds))}`),
            '',
          ],
          row('backup B after 1% more (incr): wall', (x) => x.deltaBackup, wall, fmtSeconds),
          row('backup B: stored', (x) => x.deltaBackup, (s) => s.storedBytes, fmtBytes),
          row('delta restore of B over the directory 1% behind: wall', (x) => x.delta, wall, fmtSeconds),
          row('delta restore: CPU', (x) => x.delta, cpu, fmtSeconds),
          [
            'delta restore: wall / its own full restore',
            cell(f.delta.pgdr, (s) => pct(share(s.wallSeconds, f.restore.pgdr?.wallSeconds))),
            cell(f.delta.pgbackrest, (s) => pct(share(s.wallSeconds, f.restore.pgbackrest?.wallSeconds))),
            '',
          ],
          [
            'delta restore: files (bytes) rewritten',
            cell(f.delta.pgdr, rewrittenText),
            cell(f.delta.pgbackrest, rewrittenText),
            '',
          ],
          row('peak RSS, whole tree (largest step)', (x) => ({ pgdr: largest(x, 'pgdr'), pgbackrest: largest(x, 'pgbackrest') }), tree, fmtMiB),
          [
            'restored copies started and checked',
            verificationText(f, 'pgdr'),
            verificationText(f, 'pgbackrest'),
            '',
          ],
        ],
      ),
      '',
    );
    const repeated = (['full-backup', 'full-restore', 'delta-restore'] as const).filter((k) => roundRatios(e, shape, k).length > 1);
    if (repeated.length > 0) {
      const text = repeated.map((k) => `${k.replace('-', ' ')} ${roundRatios(e, shape, k).map((r) => r.toFixed(2)).join(', ')} (median ${pairedRatio(e, shape, k).toFixed(2)})`);
      out.push(`Each round's own pgdr / pgBackRest wall-time ratio: ${text.join('; ')}. The table shows each tool's median run.`, '');
    }
    const note = f.delta.pgdr?.toolNote;
    if (note) out.push(`pgdr's delta restore reported: ${note}.`, '');
  }

  out.push(
    'Every step:',
    '',
    markdownTable(
      ['shape', 'tool', 'step', 'round', 'wall', 'CPU tool (+ server)', 'stored / restored', 'main RSS', 'tree RSS', 'check', 'load avg before'],
      e.steps.map((s) => [
        s.shape,
        s.tool,
        s.kind,
        s.round === undefined ? '' : String(s.round),
        fmtSeconds(s.wallSeconds),
        `${fmtSeconds(s.cpuSeconds)}${s.serverCpuSeconds === undefined ? '' : ` + ${fmtSeconds(s.serverCpuSeconds)}`}`,
        fmtBytes(s.storedBytes ?? s.restoredBytes ?? 0),
        fmtMiB(s.memory.mainKiB),
        fmtMiB(s.memory.treeSumKiB),
        s.verification ? `${s.verification.ok ? 'same fingerprint' : 'DIFFERENT fingerprint'}${s.verification.amcheck ? `, amcheck ${s.verification.amcheck}` : ''}, recovery ${fmtSeconds(s.verification.recoverySeconds)}` : '',
        s.load1.toFixed(2),
      ]),
    ),
    '',
    'Run it: `npm run bench -- --only engine [--shapes logs,json,static] [--rounds N] [--scale S | --quick]` (this section and its ' +
      'summary rows only; `--quick` writes .bench/benchmarks-quick.md). `npx tsx test/bench/shapes.ts --scale S` builds ' +
      'the shapes alone and prints their sizes.',
  );
  return out.join('\n');
}

function roundsOf(e: EngineResults): number {
  return Math.max(1, ...e.steps.map((s) => s.round ?? 1));
}

function largest(f: ShapeFigures, tool: EngineTool): EngineStep | undefined {
  const all = [f.full, f.restore, f.incr, f.deltaBackup, f.delta].map((x) => x[tool]).filter((s): s is EngineStep => s !== undefined);
  return all.sort((a, b) => b.memory.treeSumKiB - a.memory.treeSumKiB)[0];
}

function rewrittenText(s: EngineStep): string {
  const r = s.rewritten;
  if (!r) return '–';
  return `${r.files} of ${r.totalFiles} (${fmtBytes(r.bytes)} of ${fmtBytes(r.totalBytes)}, ${pct(r.bytes / r.totalBytes)})`;
}

function verificationText(f: ShapeFigures, tool: EngineTool): string {
  const checked = [f.restore[tool], f.delta[tool]].filter((s): s is EngineStep => s?.verification !== undefined);
  if (checked.length === 0) return '–';
  return checked.map((s) => `${s.kind === 'delta-restore' ? 'delta' : 'full'}: ${s.verification!.ok ? 'ok' : 'WRONG'}${s.verification!.amcheck ? ` (amcheck ${s.verification!.amcheck})` : ''}`).join('; ');
}

/** Where the section goes in a page that has none yet: before the WAL sections, else before "How to run". */
function insertSection(doc: string, content: string): string {
  if (doc.includes(`<!-- ${ENGINE_SECTION}:begin -->`)) return replaceSection(doc, ENGINE_SECTION, content);
  const block = `<!-- ${ENGINE_SECTION}:begin -->\n${content}\n<!-- ${ENGINE_SECTION}:end -->\n\n`;
  for (const anchor of ['<!-- wal-load:begin -->', '## How to run']) {
    const at = doc.indexOf(anchor);
    if (at >= 0) return doc.slice(0, at) + block + doc.slice(at);
  }
  return replaceSection(doc, ENGINE_SECTION, content);
}

/**
 * `doc` (the page this run wrote) with the files-engine section and summary rows: this run's when it measured them,
 * else the old page's, carried over unchanged.
 */
export function withEngine(doc: string, oldDoc: string, engine: EngineResults | undefined, machine: MachineInfo, startedAt: string, only: boolean): string {
  if (engine !== undefined) {
    const withRows = putRows(doc, engineSummaryRows(engine));
    return insertSection(withRows, engineSection(engine, machine, startedAt, only));
  }
  const begin = `<!-- ${ENGINE_SECTION}:begin -->`;
  const end = `<!-- ${ENGINE_SECTION}:end -->`;
  const from = oldDoc.indexOf(begin);
  const to = oldDoc.indexOf(end);
  if (from < 0 || to < from) return doc;
  const oldRows = oldDoc
    .split('\n')
    .filter((l) => l.startsWith(`| ${ROW_PREFIX}`))
    .map((l) => l.replace(/^\|\s?|\s?\|$/g, '').split(' | ').map((c) => c.trim()));
  const withRows = putRows(doc, oldRows);
  return insertSection(withRows, oldDoc.slice(from + begin.length + 1, to).replace(/\n$/, ''));
}

/** replaceTableRows, and a new table under the heading when the page has none there yet (a page started by --only). */
function putRows(doc: string, rows: Cell[][]): string {
  if (rows.length === 0) return doc;
  const replaced = replaceTableRows(doc, '## Summary', SUMMARY_HEADER, rows, rows.map((r) => keyOf(String(r[0]))));
  // Rows carried over unchanged leave the page as it was: the table is there already.
  const present = rows.every((r) => doc.includes(`| ${keyOf(String(r[0]))}`));
  if (replaced !== doc || present || !doc.includes('\n## Summary\n')) return replaced;
  return doc.replace('\n## Summary\n', `\n## Summary\n\n${markdownTable(SUMMARY_HEADER, rows)}\n`);
}

/** A row's key: its label up to the target ("files engine [logs] incr after a 5% update: stored"). */
function keyOf(label: string): string {
  const cut = label.search(/ ≤ | < /);
  return cut > 0 ? label.slice(0, cut) : label;
}
