import { startCommand, runCommand, type RunningCommand } from '../process/run-command.js';

/**
 * zstd on a whole file or buffer, run to completion: what `wal push`, `wal fetch` checks and manifests need. The
 * choice of the zstd CLI is explained in src/stream/zstd.ts, which also holds the streaming stages; this part stays
 * apart so that a `wal push` loads no more than node:child_process for it.
 */
export interface ZstdOptions {
  level: number;
  /** Worker threads; 0 lets zstd pick, 1 compresses on one core. */
  threads?: number;
}

export const ZSTD = process.env.PGDR_ZSTD_BIN ?? 'zstd';

/** What to check when zstd fails to start or dies mid-stream. */
export const ZSTD_HINT = 'install the zstd package (apt-get install zstd), and check free memory';

export function compressArgs(options: ZstdOptions): string[] {
  const level = options.level;
  const args = [level < 0 ? `--fast=${-level}` : `-${level}`, '-c', '-q', '--check'];
  if (level > 19) args.push('--ultra');
  if (options.threads !== undefined && options.threads !== 1) args.push(`-T${options.threads}`);
  return args;
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
  const { stdout } = await startZstdCompressFile(path, options).result;
  return stdout;
}

/**
 * Starts compressing a file at once, for a caller with other work to do meanwhile (zstd runs on its own core):
 * `result` is the frame, `kill()` stops a compression whose result is no longer wanted.
 */
export function startZstdCompressFile(path: string, options: ZstdOptions): RunningCommand {
  return startCommand(ZSTD, [...compressArgs(options), '--', path], {
    label: 'zstd',
    hint: 'install the zstd package (apt-get install zstd), and check that the file is readable',
  });
}

export async function zstdDecompressBuffer(data: Buffer): Promise<Buffer> {
  const { stdout } = await runCommand(ZSTD, ['-d', '-c', '-q'], {
    input: data,
    label: 'zstd -d',
    hint: 'the stored object is not a valid zstd frame: it may be damaged; run pgdr verify',
  });
  return stdout;
}
