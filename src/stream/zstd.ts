import type { Duplex } from 'node:stream';
import { execa } from 'execa';
import { ServiceError } from '../errors.js';
import { childEnv } from '../process/child-env.js';
import { compressArgs, ZSTD, type ZstdOptions } from './zstd-buffer.js';

export { compressArgs, startZstdCompressFile, ZSTD, zstdCompressBuffer, zstdCompressFile, zstdDecompressBuffer, type ZstdOptions } from './zstd-buffer.js';

/**
 * zstd through the zstd command-line tool. Chosen by benchmark (docs/benchmarks.md): it streams at native
 * speed, runs on its own core(s) beside Node, can use worker threads (-T), and writes standard frames with a
 * content checksum, so `zstd -d` reads every object pgdr stores. The in-process candidates were either
 * slower (zstd-codec, which also fails on 16 MiB inputs) or need a native build at install time. Whole files and
 * buffers are compressed through src/stream/zstd-buffer.ts; this module adds the streaming stages.
 */

/** A Duplex: write raw bytes, read zstd frames. Fails the pipeline if zstd exits non-zero. */
export function zstdCompressStage(options: ZstdOptions): Duplex {
  return withStderrTail(execa(ZSTD, compressArgs(options), { buffer: false, cleanup: true, stderr: 'pipe', env: childEnv('tool'), extendEnv: false }));
}

/**
 * execa's duplex for a subprocess whose stderr is not buffered: its error then carries no stderr, so the tail is
 * kept here and put on the error, for asZstdFailure to quote zstd's own words.
 */
function withStderrTail(subprocess: ReturnType<typeof execa>): Duplex {
  let tail = '';
  subprocess.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  });
  const duplex = subprocess.duplex();
  duplex.prependListener('error', (err: Error & { stderr?: unknown }) => {
    if (typeof err.stderr !== 'string' || err.stderr === '') err.stderr = tail;
  });
  return duplex;
}

/**
 * The error a zstd stage fails with (execa's, carrying the exit code and stderr), as pgdr reports it: named, with
 * zstd's own last word. Anything else is returned as it is.
 */
export function asZstdFailure(err: unknown): unknown {
  const e = err as { exitCode?: unknown; signal?: unknown; stderr?: unknown; command?: unknown };
  if (typeof e?.command !== 'string' || !e.command.startsWith(ZSTD)) return err;
  const last = typeof e.stderr === 'string' ? e.stderr.trim().split('\n').pop()?.trim() : undefined;
  const how = typeof e.signal === 'string' ? `was killed by ${e.signal}` : `exited with code ${String(e.exitCode)}`;
  return new ServiceError(`zstd ${how}${last ? `: ${last}` : ''}`, 'install the zstd package (apt-get install zstd), and check free memory', err);
}

/** A Duplex: write zstd frames, read raw bytes. A damaged frame (checksum, truncation) fails the pipeline. */
export function zstdDecompressStage(): Duplex {
  return withStderrTail(execa(ZSTD, ['-d', '-c', '-q'], { buffer: false, cleanup: true, stderr: 'pipe', env: childEnv('tool'), extendEnv: false }));
}
