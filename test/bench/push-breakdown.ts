/**
 * `npx tsx test/bench/push-breakdown.ts`: where the time of one cold `pgdr wal push` of a real 16 MiB segment goes,
 * written into docs/benchmarks.md between the push-breakdown markers (the section the per-segment latency table and
 * docs/architecture.md point to). Needs `npm run build` first; runs as root, like the bench.
 *
 * Each measured push is the real one (node bin/pgdr wal push, the bundle in dist/) with test/bench/push-probe.cjs
 * preloaded, which timestamps its moments on the wall clock this process shares: Node.js running its first line of
 * JavaScript, the bundle loaded, zstd spawned and exited, the store write begun and its last fsync done, the exit
 * event. Interleaved with them, call by call: the same push without the probe (what the probe costs), the same push
 * with its settings in a config file instead of environment variables (what --config costs, the figure
 * docs/configuration.md quotes), Node.js starting and exiting alone, zstd alone on the segment, and the sha256 of the
 * segment in Node.js (which a cold push does not take: see src/wal/push.ts).
 *
 * Flags: --n N (calls of each, default 21), --segment FILE (a 16 MiB WAL segment to copy; default: a segment pgbench
 * writes on a throwaway PostgreSQL 15, as in the latency step of `npm run bench`), --doc PATH (default
 * docs/benchmarks.md; `-` prints the section only).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCHIVE_SETTINGS, LOAD_SETTINGS } from './dataset.js';
import { runWithCleanup } from './lib/cleanup.js';
import { machineInfo } from './lib/machine.js';
import { BenchServer } from './lib/pg.js';
import { scratchDir } from './lib/proc.js';
import { fmtBytes, markdownTable, median, replaceSection, type Cell } from './lib/report.js';
import { PUSH_BREAKDOWN_SECTION } from './report-doc.js';
import { initPgbench, runPgbench, WAL_LOAD_SETTINGS } from './wal-load.js';

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const PGDR_BIN = join(REPO_ROOT, 'bin', 'pgdr');
const PROBE = join(REPO_ROOT, 'test', 'bench', 'push-probe.cjs');
const CLUSTER = 'bench';
const log = (s: string) => process.stderr.write(`${s}\n`);

/** Wall clock in milliseconds, the same one push-probe.cjs reads in the child. */
const now = () => performance.timeOrigin + performance.now();

interface ProbeMarks {
  jsStart: number;
  bundleStart?: number;
  bundleEnd?: number;
  zstdSpawn?: number;
  zstdExit?: number;
  writeStart?: number;
  storeEnd?: number;
  fsyncMs: number;
  fsyncs: number;
  exit: number;
  nodeCpuMs: number;
}

interface Run {
  spawnAt: number;
  exitSeen: number;
  stdout: string;
}

function run(cmd: string, args: string[], env: Record<string, string>, cwd: string): Promise<Run> {
  return new Promise((done, fail) => {
    const spawnAt = now();
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('exit', (code) => {
      const exitSeen = now();
      if (code === 0) done({ spawnAt, exitSeen, stdout });
      else fail(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-1000)}`));
    });
  });
}

/** A real segment: the oldest in pg_wal of a server pgbench has written to with the bench's WAL settings. */
async function segmentFromServer(pgbenchSeconds: number): Promise<{ path: string; server: BenchServer }> {
  const server = await BenchServer.create({ label: 'push-breakdown', settings: LOAD_SETTINGS });
  server.appendConf(ARCHIVE_SETTINGS);
  await server.start();
  await initPgbench(server, 50);
  await server.setConf(WAL_LOAD_SETTINGS);
  await runPgbench(server, pgbenchSeconds);
  await server.query('CHECKPOINT');
  const walDir = join(server.pgdata, 'pg_wal');
  const name = readdirSync(walDir).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort()[0];
  if (!name) throw new Error('no WAL segment in pg_wal');
  return { path: join(walDir, name), server };
}

function copies(source: string, dir: string, n: number, timelineHex: string): string[] {
  mkdirSync(dir, { recursive: true });
  return Array.from({ length: n }, (_, i) => {
    const path = join(dir, `${timelineHex}000000EE${(i + 1).toString(16).toUpperCase().padStart(8, '0')}`);
    copyFileSync(source, path);
    return path;
  });
}

const SHA256_SCRIPT = `
const { createHash } = require('node:crypto');
const { createReadStream } = require('node:fs');
const t0 = performance.now();
const hash = createHash('sha256');
createReadStream(process.argv[1], { highWaterMark: 1024 * 1024 })
  .on('data', (chunk) => hash.update(chunk))
  .on('end', () => { hash.digest('hex'); process.stdout.write(String(performance.now() - t0)); });
`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const n = Number(value('--n') ?? 21);
  const docPath = value('--doc') ?? join(REPO_ROOT, 'docs', 'benchmarks.md');
  const startedAt = new Date().toISOString();

  let source = value('--segment');
  let server: BenchServer | undefined;
  if (!source) {
    log('== a real segment: PostgreSQL 15, pgbench -s 50, 10 s of load');
    ({ path: source, server } = await segmentFromServer(10));
  }
  if (statSync(source).size !== 16 * 1024 * 1024) throw new Error(`${source} is not a 16 MiB WAL segment`);
  const work = scratchDir('push-breakdown');
  const segment = join(work, 'segment');
  copyFileSync(source, segment);
  // Measured on an idle server (or none): nothing else of ours competes for the two cores.
  await server?.stop();

  const repo = join(work, 'repo');
  const spool = join(work, 'spool');
  const configFile = join(work, 'pgdr.yaml');
  writeFileSync(configFile, `repo: file://${repo}\ncluster: ${CLUSTER}\nspoolDir: ${spool}\n`);
  const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work };
  const env = { ...baseEnv, PGDR_REPO: `file://${repo}`, PGDR_CLUSTER: CLUSTER, PGDR_SPOOL_DIR: spool };
  const probed = copies(segment, join(work, 'probed', 'pg_wal'), n + 1, '000000FD');
  const plain = copies(segment, join(work, 'plain', 'pg_wal'), n, '000000FC');
  const configured = copies(segment, join(work, 'config', 'pg_wal'), n + 1, '000000FB');
  const marksFile = join(work, 'marks.json');
  const push = (path: string, probe: boolean) =>
    run(process.execPath, [...(probe ? ['--require', PROBE] : []), PGDR_BIN, 'wal', 'push', path], { ...env, PUSH_PROBE_OUT: marksFile, PUSH_PROBE_REPO: repo }, work);
  // Probed too, for Node.js's own CPU time, which a busy machine does not inflate as it does wall time.
  const pushWithConfig = (path: string) =>
    run(process.execPath, ['--require', PROBE, PGDR_BIN, 'wal', 'push', path, '--config', configFile], { ...baseEnv, PUSH_PROBE_OUT: marksFile, PUSH_PROBE_REPO: repo }, work);

  // Not counted: the first push writes cluster.json and the store-probe cache, which every later push only reads;
  // the first --config push brings the YAML reader into the page cache.
  await push(probed[n]!, true);
  await pushWithConfig(configured[n]!);

  const marks: (ProbeMarks & Run)[] = [];
  const totals = { plain: [] as number[], config: [] as number[], configCpu: [] as number[], node: [] as number[], zstd: [] as number[], sha: [] as number[] };
  const candidates: (() => Promise<void>)[] = [
    async () => {
      const i = marks.length;
      rmSync(marksFile, { force: true });
      const r = await push(probed[i]!, true);
      marks.push({ ...(JSON.parse(readFileSync(marksFile, 'utf8')) as ProbeMarks), ...r });
    },
    async () => {
      const r = await push(plain[totals.plain.length]!, false);
      totals.plain.push(r.exitSeen - r.spawnAt);
    },
    async () => {
      rmSync(marksFile, { force: true });
      const r = await pushWithConfig(configured[totals.config.length]!);
      totals.config.push(r.exitSeen - r.spawnAt);
      totals.configCpu.push((JSON.parse(readFileSync(marksFile, 'utf8')) as ProbeMarks).nodeCpuMs);
    },
    async () => {
      const r = await run(process.execPath, ['-e', '0'], baseEnv, work);
      totals.node.push(r.exitSeen - r.spawnAt);
    },
    async () => {
      const r = await run('zstd', ['-3', '-c', '-q', '--check', '--', segment], baseEnv, work);
      totals.zstd.push(r.exitSeen - r.spawnAt);
    },
    async () => {
      const r = await run(process.execPath, ['-e', SHA256_SCRIPT, segment], baseEnv, work);
      totals.sha.push(Number(r.stdout));
    },
  ];
  const loadBefore = loadavg()[0]!;
  log(`== ${n} rounds of ${candidates.length} cold calls, interleaved (load average ${loadBefore.toFixed(2)})`);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < candidates.length; k++) await candidates[(i + k) % candidates.length]!();
  }
  const loadAfter = loadavg()[0]!;

  const phase = (f: (m: ProbeMarks & Run) => number | undefined): number[] =>
    marks.map(f).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const missing = marks.filter((m) => [m.bundleEnd, m.zstdSpawn, m.zstdExit, m.writeStart, m.storeEnd].some((v) => v === undefined));
  if (missing.length > 0) throw new Error(`${missing.length} probed push(es) lack a moment (did the push path change?): ${JSON.stringify(missing[0])}`);
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const row = (label: string, values: number[]): Cell[] => [label, ms(median(values)), ms(Math.min(...values)), ms(Math.max(...values))];
  const rows: Cell[][] = [
    row('exec and Node.js start-up, to the first line of JavaScript', phase((m) => m.jsStart - m.spawnAt)),
    row('loading bin/pgdr and the bundle (dist/cli/wal-push.cjs)', phase((m) => m.bundleEnd! - m.jsStart)),
    row('settings (environment), spool look-up, until zstd is spawned', phase((m) => m.zstdSpawn! - m.bundleEnd!)),
    row('zstd -3 compressing the segment in its own process (spawn → exit); meanwhile pgdr checks the header, cluster.json, the store probe', phase((m) => m.zstdExit! - m.zstdSpawn!)),
    row('zstd exited → the store write begins', phase((m) => m.writeStart! - m.zstdExit!)),
    row('store write: temp file, fsync, link, fsync of the directory', phase((m) => m.storeEnd! - m.writeStart!)),
    row('… of which in fsync', phase((m) => m.fsyncMs)),
    row('after the write: spool clean-up, look for more ready files', phase((m) => m.exit - m.storeEnd!)),
    row('Node.js exiting (exit event → the parent sees the exit)', phase((m) => m.exitSeen - m.exit)),
    row('**total** (spawn → exit, with the probe)', phase((m) => m.exitSeen - m.spawnAt)),
  ];
  const reference: Cell[][] = [
    row('the same push without the probe', totals.plain),
    row('the same push with its settings in a config file (`--config`, YAML) instead of environment variables (probed)', totals.config),
    row('Node.js starting and exiting alone (`node -e 0`)', totals.node),
    row('zstd -3 of the segment alone (spawn → exit)', totals.zstd),
    row('sha256 of the segment in Node.js (1 MiB reads; not taken by a cold push)', totals.sha),
  ];
  const configCost = median(totals.config) - median(phase((m) => m.exitSeen - m.spawnAt));
  const cpuEnv = median(phase((m) => m.nodeCpuMs));
  const cpuConfig = median(totals.configCpu);
  const medianTotal = median(phase((m) => m.exitSeen - m.spawnAt));
  const nodeShare = median(phase((m) => m.jsStart - m.spawnAt + (m.exitSeen - m.exit)));
  const moments = rows.slice(0, -1).filter((r) => !String(r[0]).startsWith('…'));
  const largest = moments
    .map((r) => ({ label: String(r[0]).split(' (')[0]!.split(';')[0]!, median: Number.parseFloat(String(r[1])) }))
    .reduce((a, b) => (b.median > a.median ? b : a));
  const machine = await machineInfo(work, REPO_ROOT);
  const frame = readdirSync(join(repo, CLUSTER, 'wal'), { recursive: true })
    .map((f) => join(repo, CLUSTER, 'wal', String(f)))
    .find((f) => f.endsWith('.zst') && statSync(f).isFile());
  const section = [
    '## Where the time of a push goes',
    '',
    `*Measured by \`npx tsx test/bench/push-breakdown.ts\` on ${startedAt.slice(0, 16).replace('T', ' ')} UTC (${machine.nproc} × ${machine.cpuModel}, ` +
      `Node.js ${machine.node}, pgdr ${machine.pgdr}); 1-minute load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after, ` +
      'on a machine shared with other work.*',
    '',
    `One cold \`pgdr wal push\` of a real 16 MiB segment written by pgbench${frame ? ` (${fmtBytes(statSync(frame).size)} at zstd level 3)` : ''} ` +
      `into a \`file://\` repository, settings in the environment, ${n} calls, each on its own copy of the segment, with nothing ` +
      'else waiting (no background pusher). The push is the real one; test/bench/push-probe.cjs, preloaded into it, notes the ' +
      'time of each moment by wrapping the Node.js functions pgdr calls, without changing pgdr. The moments follow one another, ' +
      'so in each call they add up to its total; the medians of the rows need not. The reference rows are their own cold ' +
      'processes, interleaved call by call with the pushes. Node.js\'s own CPU per push (user + system, zstd not counted): ' +
      `median ${ms(cpuEnv)} with the settings in the environment, ${ms(cpuConfig)} with \`--config\`.`,
    '',
    markdownTable(['moment of the push', 'median', 'min', 'max'], rows),
    '',
    markdownTable(['reference (own processes)', 'median', 'min', 'max'], reference),
    '',
    `The largest moment is "${largest.label}": ${ms(largest.median)} of the ${ms(medianTotal)} median total. Node.js ` +
      `starting and exiting (the first and the last moment) take ${ms(nodeShare)} of it, which any Node.js archive_command pays. ` +
      `A config file costs ${ms(configCost)} more per call here (the difference of the probed medians), ${ms(cpuConfig - cpuEnv)} ` +
      'of CPU: the YAML reader and the config schema (zod) are loaded only when one is named.',
  ].join('\n');
  process.stdout.write(`${section}\n`);
  if (docPath !== '-') {
    writeFileSync(docPath, replaceSection(readFileSync(docPath, 'utf8'), PUSH_BREAKDOWN_SECTION, section));
    log(`wrote ${docPath}`);
  }
}

process.exitCode = await runWithCleanup(main);
