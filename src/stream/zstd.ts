import type { Duplex } from 'node:stream';
import { execa } from 'execa';
import { runCommand } from '../process/subprocess.js';

/**
 * zstd through the zstd command-line tool. Chosen by benchmark (docs/benchmarks.md): it streams at native
 * speed, runs on its own core(s) beside Node, can use worker threads (-T), and writes standard frames with a
 * content checksum, so `zstd -d` reads every object pgdr stores. The in-process candidates were either
 * slower (zstd-codec, which also fails on 16 MiB inputs) or need a native build at install time.
 */
export interface ZstdOptions {
  level: number;
  /** Worker threads; 0 lets zstd pick, 1 compresses on one core. */
  threads?: number;
}

export const ZSTD = process.env.PGDR_ZSTD_BIN ?? 'zstd';

export function compressArgs(options: ZstdOptions): string[] {
  const level = options.level;
  const args = [level < 0 ? `--fast=${-level}` : `-${level}`, '-c', '-q', '--check'];
  if (level > 19) args.push('--ultra');
  if (options.threads !== undefined && options.threads !== 1) args.push(`-T${options.threads}`);
  return args;
}

/** A Duplex: write raw bytes, read zstd frames. Fails the pipeline if zstd exits non-zero. */
export function zstdCompressStage(options: ZstdOptions): Duplex {
  return execa(ZSTD, compressArgs(options), { buffer: false, cleanup: true, stderr: 'pipe' }).duplex();
}

/** A Duplex: write zstd frames, read raw bytes. A damaged frame (checksum, truncation) fails the pipeline. */
export function zstdDecompressStage(): Duplex {
  return execa(ZSTD, ['-d', '-c', '-q'], { buffer: false, cleanup: true, stderr: 'pipe' }).duplex();
}

export async function zstdCompressBuffer(data: Buffer, options: ZstdOptions): Promise<Buffer> {
  const { stdout } = await runCommand(ZSTD, compressArgs(options), {
    input: data,
    label: 'zstd',
    hint: 'install the zstd package (apt-get install zstd)',
  });
  return stdout;
}

/** Compresses a file without reading it into Node: zstd reads it itself, Node gets the (smaller) frames. */
export async function zstdCompressFile(path: string, options: ZstdOptions): Promise<Buffer> {
  const { stdout } = await runCommand(ZSTD, [...compressArgs(options), '--', path], {
    label: 'zstd',
    hint: 'install the zstd package (apt-get install zstd), and check that the file is readable',
  });
  return stdout;
}

export async function zstdDecompressBuffer(data: Buffer): Promise<Buffer> {
  const { stdout } = await runCommand(ZSTD, ['-d', '-c', '-q'], {
    input: data,
    label: 'zstd -d',
    hint: 'the stored object is not a valid zstd frame: it may be damaged; run pgdr verify',
  });
  return stdout;
}
