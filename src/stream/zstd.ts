import type { Duplex } from 'node:stream';
import { spawn } from 'node:child_process';
import { ChildChain } from '../process/child-chain.js';
import { childEnv } from '../process/child-env.js';
import { compressArgs, ZSTD, ZSTD_HINT, type ZstdOptions } from './zstd-buffer.js';

export { compressArgs, startZstdCompressFile, ZSTD, ZSTD_HINT, zstdCompressBuffer, zstdCompressFile, zstdDecompressBuffer, type ZstdOptions } from './zstd-buffer.js';

/**
 * zstd through the zstd command-line tool. Chosen by benchmark (docs/benchmarks.md): it streams at native
 * speed, runs on its own core(s) beside Node, can use worker threads (-T), and writes standard frames with a
 * content checksum, so `zstd -d` reads every object pgdr stores. The in-process candidates were either
 * slower (zstd-codec, which also fails on 16 MiB inputs) or need a native build at install time. Whole files and
 * buffers are compressed through src/stream/zstd-buffer.ts; this module adds the streaming stages.
 */

/** A Duplex: write raw bytes, read zstd frames. Fails the pipeline if zstd exits non-zero. */
export function zstdCompressStage(options: ZstdOptions): Duplex {
  return zstdStage(compressArgs(options));
}


/**
 * One zstd child seen as a Duplex (src/process/child-chain.ts), on node:child_process alone: `wal fetch` runs once
 * per WAL file, and loading execa would cost each run more than the decompression.
 */
function zstdStage(args: string[]): Duplex {
  const zstd = spawn(ZSTD, args, { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv('tool') });
  return new ChildChain([{ child: zstd, label: 'zstd', hint: ZSTD_HINT }]);
}

/** A Duplex: write zstd frames, read raw bytes. A damaged frame (checksum, truncation) fails the pipeline. */
export function zstdDecompressStage(): Duplex {
  return zstdStage(['-d', '-c', '-q']);
}
