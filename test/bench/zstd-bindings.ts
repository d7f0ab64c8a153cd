/**
 * How should pgdr compress? Every candidate compresses the same ≥ 256 MiB of realistic data at zstd level 3 in
 * 1 MiB and 16 MiB chunks (16 MiB = one WAL segment), then decompresses it. Each candidate × chunk size runs in
 * its own Node process, so its peak RSS is its own and one candidate crashing (zstd-codec's Emscripten heap)
 * does not take the others down. Every compressed output is checked with the zstd CLI (`zstd -dc | sha256`),
 * which proves the frames are standard: an operator must be able to `zstd -d` any object pgdr stores.
 *
 * The npm candidates are installed into a scratch directory outside the project (BENCH_ZSTD_DIR, default
 * /tmp/pgdr-zstd-bench), so pgdr's package.json never depends on them.
 *
 * Run alone: `tsx test/bench/zstd-bindings.ts [--input FILE|DIR] [--size MiB] [--repeat N] [--quick] [--json]`.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { runWithCleanup } from './lib/cleanup.js';
import { scratchDir } from './lib/proc.js';
import { fmtBytes, fmtMiB, markdownTable } from './lib/report.js';

const MiB = 1024 * 1024;
const LEVEL = 3;
const SCRATCH = process.env.BENCH_ZSTD_DIR ?? '/tmp/pgdr-zstd-bench';

/** Pinned so the table is reproducible; @mongodb-js/zstd 2+ fetches its prebuilt binary from GitHub at install
 * time (no network here), while 1.2.x ships it as an npm package (@mongodb-js/zstd-linux-x64-gnu). */
const PACKAGES = ['zstd-codec@0.1.5', 'zstd-napi@0.0.13', '@mongodb-js/zstd@1.2.2'];

type CandidateId =
  | 'baseline'
  | 'zstd-codec'
  | 'zstd-napi'
  | 'zstd-napi-stream'
  | 'mongodb-zstd'
  | 'cli-T1'
  | 'cli-T2'
  | 'cli-T1-per-chunk';

interface Candidate {
  id: CandidateId;
  label: string;
  chunks: number[];
  /** npm package it needs, if any. */
  pkg?: string;
}

const CANDIDATES: Candidate[] = [
  { id: 'baseline', label: 'baseline: read only, no compression', chunks: [MiB, 16 * MiB] },
  { id: 'zstd-codec', label: 'zstd-codec 0.1.5 (Emscripten), Simple API', chunks: [MiB, 16 * MiB], pkg: 'zstd-codec' },
  { id: 'zstd-napi', label: 'zstd-napi 0.0.13 (native), Compressor', chunks: [MiB, 16 * MiB], pkg: 'zstd-napi' },
  { id: 'zstd-napi-stream', label: 'zstd-napi 0.0.13, CompressStream (one frame)', chunks: [MiB, 16 * MiB], pkg: 'zstd-napi' },
  { id: 'mongodb-zstd', label: '@mongodb-js/zstd 1.2.2 (prebuilt, async)', chunks: [MiB, 16 * MiB], pkg: '@mongodb-js/zstd' },
  { id: 'cli-T1', label: 'zstd CLI -T1, stdin→stdout (one process)', chunks: [MiB, 16 * MiB] },
  { id: 'cli-T2', label: 'zstd CLI -T2, stdin→stdout (one process)', chunks: [MiB, 16 * MiB] },
  { id: 'cli-T1-per-chunk', label: 'zstd CLI -T1, one process per chunk', chunks: [16 * MiB] },
];

export interface ZstdRow {
  id: string;
  candidate: string;
  chunkMiB: number;
  ok: boolean;
  error?: string;
  inputBytes: number;
  compressedBytes: number;
  ratio: number;
  compressMiBs: number;
  decompressMiBs: number;
  /** Peak RSS of the Node process (compress or decompress, whichever is higher), KiB. */
  nodeRssKiB: number;
  /** Peak RSS of a child zstd process, KiB (CLI candidates only). */
  childRssKiB: number;
  /** `zstd -dc` of the output reproduced the input byte for byte. */
  standardFrames: boolean | undefined;
}

interface WorkerResult {
  ok: boolean;
  error?: string;
  seconds: number;
  outBytes: number;
  maxRssKiB: number;
  childRssKiB: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Input: relation files of the bench database (sampled), or generated rows shaped like the bench dataset.

/** Deterministic PRNG (mulberry32): the generated input is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = {
  first: 'James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan Joseph Jessica Lukas Sofia Mateo Amelie Noah Emma Yuki Hiro Aarav Priya Chen Wei Olga Ivan Fatima Omar'.split(' '),
  last: 'Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Lopez Wilson Anderson Taylor Moore Mueller Schmidt Fischer Weber Rossi Russo Dubois Moreau Tanaka Suzuki Kowalski Nowak Ivanov Kumar Singh Wang Silva Santos'.split(' '),
  city: 'London Paris Berlin Madrid Rome Amsterdam Vienna Prague Warsaw Lisbon Dublin Munich Milan Zurich Oslo Stockholm Toronto Sydney Tokyo Seoul'.split(' '),
  street: 'Oak Maple Cedar Pine Elm Lake Hill Main Park Church High Station Mill River Spring Meadow Forest Market School'.split(' '),
  vocab: 'the and to of a in is for please order delivery package door leave call before after gift wrap thanks arrived late damaged box replace refund size color wrong item missing return label courier tracking week friday morning office fragile handle care invoice discount code price support ticket express shipping stock sorry delay great quality product again recommend happy service fast slow response'.split(' '),
  kind: 'page_view search add_to_cart checkout_start checkout_complete login logout signup review_posted wishlist_add'.split(' '),
  path: 'home search product category cart checkout account orders wishlist help deals returns'.split(' '),
};

export function generateInput(path: string, bytes: number): void {
  const rand = prng(42);
  const pick = (list: string[], skew = 1.5) => list[Math.floor(Math.pow(rand(), skew) * list.length)]!;
  const hex = (n: number) => {
    let s = '';
    for (let i = 0; i < n; i++) s += Math.floor(rand() * 16).toString(16);
    return s;
  };
  const fd = openSync(path, 'w');
  let written = 0;
  let id = 0;
  let t = Date.UTC(2023, 0, 1);
  try {
    while (written < bytes) {
      const lines: string[] = [];
      for (let i = 0; i < 2000; i++) {
        id++;
        t += Math.floor(rand() * 9000);
        const ts = new Date(t).toISOString();
        const fn = pick(WORDS.first);
        const ln = pick(WORDS.last);
        switch (id % 3) {
          case 0:
            lines.push(
              `${id}\t${fn}\t${ln}\t${fn.toLowerCase()}.${ln.toLowerCase()}${id}@example.com\t${Math.floor(rand() * 400)} ${pick(WORDS.street)} Street\t${pick(WORDS.city)}\t${ts}\t${(rand() * rand() * 5000).toFixed(2)}\t$2b$12$${hex(44)}`,
            );
            break;
          case 1: {
            const items = Array.from({ length: 1 + (id % 4) }, (_, k) => ({
              line: k + 1,
              sku: `SKU-${String(Math.floor(rand() * rand() * 50000)).padStart(6, '0')}`,
              qty: 1 + Math.floor(Math.pow(rand(), 3) * 6),
              unit_price: Number((2 + rand() * 300).toFixed(2)),
            }));
            const note = id % 4 === 0 ? Array.from({ length: 6 + (id % 23) }, () => pick(WORDS.vocab, 1.8)).join(' ') : '\\N';
            lines.push(`${id}\t${1 + Math.floor(Math.pow(rand(), 1.6) * 600000)}\t${ts}\tdelivered\tEUR\t${(5 + rand() * 900).toFixed(2)}\t${JSON.stringify(items)}\t${note}\t${hex(18).toUpperCase()}`);
            break;
          }
          default:
            lines.push(
              `${id}\t${1 + Math.floor(rand() * 600000)}\t${ts}\t${pick(WORDS.kind, 2.2)}\t${hex(32)}\t/${pick(WORDS.path, 1.8)}\t{"duration_ms": ${Math.floor(Math.pow(rand(), 3) * 8000)}, "screen": "1920x1080", "cart_items": ${Math.floor(rand() * rand() * 8)}}`,
            );
        }
      }
      const buf = Buffer.from(lines.join('\n') + '\n');
      writeSync(fd, buf);
      written += buf.length;
    }
  } finally {
    closeSync(fd);
  }
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(p));
    else if (entry.isFile()) out.push(p);
  }
  return out.sort();
}

/**
 * A representative sample of a directory of relation files: every k-th 1 MiB block across all files (tables
 * and indexes alike), so the sample has the same mix as the whole database rather than only its first table.
 */
export function sampleDirectory(dir: string, outFile: string, targetBytes: number): number {
  const files = listFiles(dir).map((f) => ({ f, size: statSync(f).size }));
  const blocks: { f: string; offset: number }[] = [];
  for (const { f, size } of files) for (let o = 0; o + MiB <= size; o += MiB) blocks.push({ f, offset: o });
  const want = Math.ceil(targetBytes / MiB);
  const step = Math.max(1, Math.floor(blocks.length / want));
  const out = openSync(outFile, 'w');
  const buf = Buffer.allocUnsafe(MiB);
  let written = 0;
  try {
    for (let i = 0; i < blocks.length && written < targetBytes; i += step) {
      const block = blocks[i]!;
      const fd = openSync(block.f, 'r');
      try {
        const n = readSync(fd, buf, 0, MiB, block.offset);
        writeSync(out, buf, 0, n);
        written += n;
      } finally {
        closeSync(fd);
      }
    }
  } finally {
    closeSync(out);
  }
  return written;
}

// ---------------------------------------------------------------------------------------------------------------
// Candidates, installed outside the project.

export async function ensureCandidates(log: (s: string) => void = console.error): Promise<Map<string, string>> {
  const missing = new Map<string, string>();
  const loads = (pkg: string) => {
    try {
      createRequire(join(SCRATCH, 'package.json'))(pkg);
      return true;
    } catch {
      return false;
    }
  };
  if (!['zstd-codec', 'zstd-napi', '@mongodb-js/zstd'].every(loads)) {
    log(`installing ${PACKAGES.join(', ')} into ${SCRATCH} (zstd-napi compiles with node-gyp, ~1 min)`);
    await execa('mkdir', ['-p', SCRATCH]);
    // npm 11 runs a dependency's install script only when allowScripts approves it; zstd-napi needs its
    // node-gyp build (its prebuild-install step would download from GitHub, which is not reachable here).
    writeFileSync(
      join(SCRATCH, 'package.json'),
      JSON.stringify({ name: 'pgdr-zstd-bench', private: true, allowScripts: { 'zstd-napi': true } }, null, 2),
    );
    // node-gyp would download Node's headers from nodejs.org, which is not reachable here; Debian's nodejs package
    // ships them under /usr/include/node, so point it there when they exist.
    const env = existsSync('/usr/include/node/node_api.h') ? { npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' } : {};
    const r = await execa('npm', ['install', '--prefix', SCRATCH, '--no-audit', '--no-fund', ...PACKAGES], { reject: false, all: true, env });
    if (r.exitCode !== 0) log(`npm install exited ${r.exitCode}:\n${String(r.all).slice(-1500)}`);
    if (!loads('zstd-napi') && existsSync(join(SCRATCH, 'node_modules', 'zstd-napi'))) {
      await execa('npm', ['rebuild', '--prefix', SCRATCH, 'zstd-napi'], { reject: false, env });
    }
  }
  for (const pkg of ['zstd-codec', 'zstd-napi', '@mongodb-js/zstd']) {
    if (!loads(pkg)) missing.set(pkg, `${pkg} could not be installed or loaded from ${SCRATCH}`);
  }
  return missing;
}

// ---------------------------------------------------------------------------------------------------------------
// Worker: one candidate, one chunk size, one direction, in its own process.

/** The part of zstd-napi's API the bench uses (the package is not a dependency of pgdr, so no types). */
interface ZstdNapi {
  Compressor: new () => { setParameters(p: Record<string, unknown>): void; compress(b: Uint8Array): Buffer };
  Decompressor: new () => { decompress(b: Uint8Array): Buffer };
  CompressStream: new (p?: Record<string, unknown>) => Transform;
  DecompressStream: new () => Transform;
}

interface ZstdCodecSimple {
  compress(data: Uint8Array, level: number): Uint8Array | null;
  decompress(data: Uint8Array): Uint8Array | null;
}

async function loadCodec(): Promise<ZstdCodecSimple> {
  const req = createRequire(join(SCRATCH, 'package.json'));
  const { ZstdCodec } = req('zstd-codec') as { ZstdCodec: { run(cb: (z: { Simple: new () => ZstdCodecSimple }) => void): void } };
  return new Promise((resolve) => ZstdCodec.run((z) => resolve(new z.Simple())));
}

/**
 * The input in `chunk`-sized pieces. Synchronous consumers get one reused buffer (no allocation per chunk, as a
 * real pipeline stage with a pool would); `fresh` gives a new buffer per chunk for streams, which may still
 * hold a chunk in their queue when the next one is read.
 */
function* chunksOf(path: string, chunk: number, fresh = false): Generator<Buffer> {
  const fd = openSync(path, 'r');
  let buf = Buffer.allocUnsafe(chunk);
  try {
    for (;;) {
      if (fresh) buf = Buffer.allocUnsafe(chunk);
      const n = readSync(fd, buf, 0, chunk, null);
      if (n === 0) return;
      yield n === chunk ? buf : buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** Frame sizes of the compressed output, for the buffer APIs, which decompress frame by frame. */
function* framesOf(path: string, sizes: number[]): Generator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    for (const size of sizes) {
      const buf = Buffer.allocUnsafe(size);
      readSync(fd, buf, 0, size, null);
      yield buf;
    }
  } finally {
    closeSync(fd);
  }
}

async function cliPeakKiB(timeFile: string): Promise<number> {
  try {
    return Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop());
  } catch {
    return 0;
  }
}

/** Streams `input` through a child process, writing `chunk`-sized pieces, and its stdout to `output`. */
async function throughChild(cmd: string[], input: string, output: string, chunk: number, timeFile: string): Promise<number> {
  const child = execa('/usr/bin/time', ['-f', '%M', '-o', timeFile, ...cmd], { buffer: false, stdin: 'pipe', stdout: 'pipe', stderr: 'inherit' });
  const feed = pipeline(Readable.from(chunksOf(input, chunk, true), { objectMode: false }), child.stdin!);
  const drain = pipeline(child.stdout!, createWriteStream(output));
  await Promise.all([feed, drain, child]);
  return cliPeakKiB(timeFile);
}

async function workerCompress(id: CandidateId, chunk: number, input: string, output: string): Promise<Omit<WorkerResult, 'maxRssKiB'>> {
  const req = createRequire(join(SCRATCH, 'package.json'));
  const frames: number[] = [];
  let childRssKiB = 0;
  const started = process.hrtime.bigint();
  const out = openSync(output, 'w');
  const emit = (frame: Uint8Array) => {
    writeSync(out, frame);
    frames.push(frame.length);
  };
  try {
    switch (id) {
      case 'baseline':
        // Reading alone: what every candidate pays before compressing (its output is counted, not written).
        for (const c of chunksOf(input, chunk)) frames.push(c.length);
        break;
      case 'zstd-codec': {
        const simple = await loadCodec();
        for (const c of chunksOf(input, chunk)) {
          const frame = simple.compress(c, LEVEL);
          if (!frame) throw new Error(`zstd-codec returned null for a ${fmtBytes(c.length)} chunk`);
          emit(frame);
        }
        break;
      }
      case 'zstd-napi': {
        const { Compressor } = req('zstd-napi') as ZstdNapi;
        const compressor = new Compressor();
        compressor.setParameters({ compressionLevel: LEVEL, checksumFlag: true });
        for (const c of chunksOf(input, chunk)) emit(compressor.compress(c));
        break;
      }
      case 'zstd-napi-stream': {
        closeSync(out);
        const { CompressStream } = req('zstd-napi') as ZstdNapi;
        await pipeline(
          createReadStream(input, { highWaterMark: chunk }),
          new CompressStream({ compressionLevel: LEVEL, checksumFlag: true }),
          createWriteStream(output),
        );
        frames.push(statSync(output).size);
        break;
      }
      case 'mongodb-zstd': {
        const { compress } = req('@mongodb-js/zstd') as { compress(b: Buffer, level: number): Promise<Buffer> };
        // One call at a time: the same sequential use a pipeline stage makes of it.
        for (const c of chunksOf(input, chunk)) emit(await compress(c, LEVEL));
        break;
      }
      case 'cli-T1':
      case 'cli-T2': {
        closeSync(out);
        const t = id === 'cli-T2' ? '-T2' : '-T1';
        childRssKiB = await throughChild(['zstd', `-${LEVEL}`, t, '-q', '-c', '--check'], input, output, chunk, `${output}.time`);
        frames.push(statSync(output).size);
        break;
      }
      case 'cli-T1-per-chunk': {
        // What an archive_command that compresses each WAL segment in a fresh zstd process pays.
        for (const c of chunksOf(input, chunk)) {
          const r = await execa('/usr/bin/time', ['-f', '%M', '-o', `${output}.time`, 'zstd', `-${LEVEL}`, '-T1', '-q', '-c', '--check'], {
            input: c,
            encoding: 'buffer',
            // execa strips a final newline from stdout by default, which corrupts binary output.
            stripFinalNewline: false,
          });
          emit(r.stdout as Uint8Array);
          childRssKiB = Math.max(childRssKiB, await cliPeakKiB(`${output}.time`));
        }
        break;
      }
    }
  } finally {
    try {
      closeSync(out);
    } catch {
      // already closed by a streaming candidate
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  writeFileSync(`${output}.frames.json`, JSON.stringify(frames));
  return { ok: true, seconds, outBytes: frames.reduce((a, b) => a + b, 0), childRssKiB };
}

async function workerDecompress(id: CandidateId, chunk: number, compressed: string, output: string): Promise<Omit<WorkerResult, 'maxRssKiB'>> {
  const req = createRequire(join(SCRATCH, 'package.json'));
  const frames = JSON.parse(readFileSync(`${compressed}.frames.json`, 'utf8')) as number[];
  let total = 0;
  let childRssKiB = 0;
  // Decompressed bytes are counted, not written: the output side is the same for every candidate.
  const sink = () =>
    new Writable({
      write(c: Buffer, _e, cb) {
        total += c.length;
        cb();
      },
    });
  const started = process.hrtime.bigint();
  switch (id) {
    case 'baseline':
      for (const n of frames) total += n;
      break;
    case 'zstd-codec': {
      const simple = await loadCodec();
      for (const f of framesOf(compressed, frames)) {
        const d = simple.decompress(f);
        if (!d) throw new Error('zstd-codec failed to decompress a frame');
        total += d.length;
      }
      break;
    }
    case 'zstd-napi': {
      const { Decompressor } = req('zstd-napi') as ZstdNapi;
      const decompressor = new Decompressor();
      for (const f of framesOf(compressed, frames)) total += decompressor.decompress(f).length;
      break;
    }
    case 'zstd-napi-stream': {
      const { DecompressStream } = req('zstd-napi') as ZstdNapi;
      await pipeline(createReadStream(compressed, { highWaterMark: chunk }), new DecompressStream(), sink());
      break;
    }
    case 'mongodb-zstd': {
      const { decompress } = req('@mongodb-js/zstd') as { decompress(b: Buffer): Promise<Buffer> };
      for (const f of framesOf(compressed, frames)) total += (await decompress(f)).length;
      break;
    }
    case 'cli-T1':
    case 'cli-T2': {
      const child = execa('/usr/bin/time', ['-f', '%M', '-o', `${output}.time`, 'zstd', '-d', '-q', '-c'], {
        buffer: false,
        stdin: 'pipe',
        stdout: 'pipe',
        stderr: 'inherit',
      });
      await Promise.all([
        pipeline(createReadStream(compressed, { highWaterMark: chunk }), child.stdin!),
        pipeline(child.stdout!, sink()),
        child,
      ]);
      childRssKiB = await cliPeakKiB(`${output}.time`);
      break;
    }
    case 'cli-T1-per-chunk': {
      for (const f of framesOf(compressed, frames)) {
        const r = await execa('/usr/bin/time', ['-f', '%M', '-o', `${output}.time`, 'zstd', '-d', '-q', '-c'], {
          input: f,
          encoding: 'buffer',
          stripFinalNewline: false,
        });
        total += (r.stdout as Uint8Array).length;
        childRssKiB = Math.max(childRssKiB, await cliPeakKiB(`${output}.time`));
      }
      break;
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { ok: true, seconds, outBytes: total, childRssKiB };
}

/**
 * This process's peak RSS. Not process.resourceUsage().maxRSS: Linux carries ru_maxrss across fork and exec, so
 * a worker would report its parent's peak (the driver's). VmHWM belongs to the current address space only.
 */
function peakRssKiB(): number {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function workerMain(args: string[]): Promise<void> {
  const [direction, id, chunkText, input, output, resultFile] = args as [string, CandidateId, string, string, string, string];
  let result: WorkerResult;
  try {
    const r =
      direction === 'compress'
        ? await workerCompress(id, Number(chunkText), input, output)
        : await workerDecompress(id, Number(chunkText), input, output);
    result = { ...r, maxRssKiB: peakRssKiB() };
  } catch (err) {
    // Emscripten aborts throw whatever they like (zstd-codec prints "OOM" and throws a non-Error).
    const message = err instanceof Error ? err.message : `threw ${typeof err}: ${String(err)}`;
    result = {
      ok: false,
      error: message.split('\n')[0]!.slice(0, 200),
      seconds: 0,
      outBytes: 0,
      childRssKiB: 0,
      maxRssKiB: peakRssKiB(),
    };
  }
  writeFileSync(resultFile, JSON.stringify(result));
}

// ---------------------------------------------------------------------------------------------------------------
// Driver.

async function runWorker(args: string[], resultFile: string): Promise<WorkerResult> {
  const self = fileURLToPath(import.meta.url);
  // process.execArgv carries tsx's loader flags when we run under tsx, so the child can load this .ts file.
  const r = await execa(process.execPath, [...process.execArgv, self, '--worker', ...args, resultFile], {
    reject: false,
    all: true,
    timeout: 600_000,
  });
  if (existsSync(resultFile)) return JSON.parse(readFileSync(resultFile, 'utf8')) as WorkerResult;
  // The process died without writing a result (an Emscripten abort, a native crash): report what it said.
  const said = String(r.all ?? '')
    .split('\n')
    .filter((l) => /abort|memory|error|Cannot/i.test(l))
    .slice(0, 2)
    .join(' / ');
  return { ok: false, error: `worker exited ${r.exitCode ?? r.signal}: ${said.slice(0, 200)}`, seconds: 0, outBytes: 0, maxRssKiB: 0, childRssKiB: 0 };
}

export interface ZstdBenchOptions {
  /** A file, or a directory of relation files to sample; default: generated rows shaped like the dataset. */
  input?: string;
  sizeMiB?: number;
  /** Runs per candidate and chunk size; the best of them is reported. */
  repeat?: number;
  log?: (s: string) => void;
}

export interface ZstdBenchResult {
  rows: ZstdRow[];
  inputBytes: number;
  inputDescription: string;
}

export async function runZstdBindingsBench(options: ZstdBenchOptions = {}): Promise<ZstdBenchResult> {
  const log = options.log ?? console.error;
  const sizeMiB = options.sizeMiB ?? 256;
  const repeat = options.repeat ?? 2;
  const work = scratchDir('zstd');
  const missing = await ensureCandidates(log);

  let input: string;
  let inputDescription: string;
  if (options.input && statSync(options.input).isDirectory()) {
    input = join(work, 'input.bin');
    const n = sampleDirectory(options.input, input, sizeMiB * MiB);
    inputDescription = `${fmtBytes(n)} sampled in 1 MiB blocks from the bench database's relation files (tables and indexes)`;
  } else if (options.input) {
    input = options.input;
    inputDescription = `${fmtBytes(statSync(input).size)} from ${input}`;
  } else {
    input = join(work, 'input.tsv');
    generateInput(input, sizeMiB * MiB);
    inputDescription = `${fmtBytes(statSync(input).size)} of generated rows shaped like the bench dataset (COPY text)`;
  }
  const inputBytes = statSync(input).size;
  // Hashed as a stream: the driver's own memory does not matter, but there is no reason to hold 256 MiB.
  const hash = createHash('sha256');
  await pipeline(createReadStream(input), hash);
  const inputSha = hash.digest('hex');

  const rows: ZstdRow[] = [];
  for (const candidate of CANDIDATES) {
    for (const chunk of candidate.chunks) {
      const chunkMiB = chunk / MiB;
      const row: ZstdRow = {
        id: candidate.id,
        candidate: candidate.label,
        chunkMiB,
        ok: false,
        inputBytes,
        compressedBytes: 0,
        ratio: 0,
        compressMiBs: 0,
        decompressMiBs: 0,
        nodeRssKiB: 0,
        childRssKiB: 0,
        standardFrames: undefined,
      };
      rows.push(row);
      if (candidate.pkg && missing.has(candidate.pkg)) {
        row.error = missing.get(candidate.pkg);
        continue;
      }
      const out = join(work, `${candidate.id}-${chunkMiB}.zst`);
      let compressSeconds = Infinity;
      let decompressSeconds = Infinity;
      // Best of `repeat` runs for each direction: the least disturbed run is the one that shows the codec.
      for (let run = 1; run <= repeat && !row.error; run++) {
        log(`zstd bench: ${candidate.label}, ${chunkMiB} MiB chunks (run ${run}/${repeat})`);
        const c = await runWorker(['compress', candidate.id, String(chunk), input, out], `${out}.c${run}.json`);
        row.nodeRssKiB = Math.max(row.nodeRssKiB, c.maxRssKiB);
        row.childRssKiB = Math.max(row.childRssKiB, c.childRssKiB);
        if (!c.ok) {
          row.error = c.error;
          break;
        }
        row.compressedBytes = c.outBytes;
        compressSeconds = Math.min(compressSeconds, c.seconds);
        if (candidate.id === 'baseline') continue;
        if (run === 1) {
          // The compressed output must be plain zstd frames that the CLI decodes to the exact input.
          const check = await execa('sh', ['-c', `zstd -dc -q '${out}' | sha256sum`], { reject: false });
          row.standardFrames = check.exitCode === 0 && check.stdout.startsWith(inputSha);
        }
        const d = await runWorker(['decompress', candidate.id, String(chunk), out, `${out}.d`], `${out}.d${run}.json`);
        row.nodeRssKiB = Math.max(row.nodeRssKiB, d.maxRssKiB);
        row.childRssKiB = Math.max(row.childRssKiB, d.childRssKiB);
        if (!d.ok || d.outBytes !== inputBytes) {
          row.error = d.error ?? `decompressed ${d.outBytes} bytes, expected ${inputBytes}`;
          break;
        }
        decompressSeconds = Math.min(decompressSeconds, d.seconds);
      }
      // Remove as we go: 16 outputs of 256 MiB inputs add up.
      await execa('rm', ['-f', out, `${out}.frames.json`]);
      if (row.error) continue;
      row.ratio = inputBytes / row.compressedBytes;
      row.compressMiBs = inputBytes / MiB / compressSeconds;
      row.decompressMiBs = Number.isFinite(decompressSeconds) ? inputBytes / MiB / decompressSeconds : 0;
      row.ok = true;
    }
  }
  return { rows, inputBytes, inputDescription };
}

/**
 * The Node peak RSS column shows the absolute figure and, in parentheses, the difference to the baseline row
 * with the same chunk size: the baseline carries Node, tsx's loader (~40 MiB) and execa, which pgdr's compiled
 * JavaScript does not all carry, so the difference is what the codec itself costs.
 */
export function zstdTable(rows: ZstdRow[]): string {
  const baseline = new Map(rows.filter((r) => r.candidate.startsWith('baseline') && r.ok).map((r) => [r.chunkMiB, r.nodeRssKiB]));
  const rss = (r: ZstdRow) => {
    const base = baseline.get(r.chunkMiB);
    if (r.candidate.startsWith('baseline') || base === undefined) return fmtMiB(r.nodeRssKiB);
    const delta = (r.nodeRssKiB - base) / 1024;
    return `${fmtMiB(r.nodeRssKiB)} (${delta >= 0 ? '+' : ''}${delta.toFixed(0)})`;
  };
  return markdownTable(
    ['candidate (level 3)', 'chunk', 'compress MiB/s', 'decompress MiB/s', 'ratio', 'Node peak RSS (Δ baseline)', 'zstd child peak RSS', 'zstd -d reads it'],
    rows.map((r) =>
      r.ok
        ? [
            r.candidate,
            `${r.chunkMiB} MiB`,
            r.compressMiBs.toFixed(0),
            r.decompressMiBs ? r.decompressMiBs.toFixed(0) : '–',
            r.candidate.startsWith('baseline') ? '–' : r.ratio.toFixed(2),
            rss(r),
            r.childRssKiB ? fmtMiB(r.childRssKiB) : '–',
            r.standardFrames === undefined ? '–' : r.standardFrames ? 'yes' : 'NO',
          ]
        : [r.candidate, `${r.chunkMiB} MiB`, `FAILED: ${r.error ?? ''}`, '', '', r.nodeRssKiB ? fmtMiB(r.nodeRssKiB) : '', '', ''],
    ),
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const size = opt('--size');
  const result = await runZstdBindingsBench({
    input: opt('--input'),
    sizeMiB: size ? Number(size) : argv.includes('--quick') ? 64 : 256,
    repeat: opt('--repeat') ? Number(opt('--repeat')) : argv.includes('--quick') ? 1 : 2,
  });
  if (argv.includes('--json')) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`input: ${result.inputDescription}\n`);
    console.log(zstdTable(result.rows));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv[2] === '--worker') {
    await workerMain(process.argv.slice(3));
  } else {
    process.exitCode = await runWithCleanup(main);
  }
}
