import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { killOnExit, watchChild } from './child.js';

/**
 * `zstd -d | tar -x` with the two processes joined by a kernel pipe: the decompressed bytes (4-5 times the stored
 * size) never pass through Node, which only feeds the compressed stream in (and hashes it on the way).
 */
export interface UnpackProcess {
  /** Write the stored (zstd) bytes here. */
  stdin: Writable;
  /** Resolves when both processes exit 0; rejects with the first failure, zstd's first (it feeds tar). */
  wait(): Promise<void>;
  kill(): void;
}

export function startZstdTarUnpack(directory: string, zstdBinary = process.env.PGDR_ZSTD_BIN ?? 'zstd'): UnpackProcess {
  const tar = spawn('tar', ['-x', '-f', '-', '-C', directory], { stdio: ['pipe', 'ignore', 'pipe'] });
  const zstd = spawn(zstdBinary, ['-d', '-c', '-q'], { stdio: ['pipe', tar.stdin, 'pipe'] });
  // zstd holds the write end of tar's stdin now; the parent's copy must close or tar never sees end of input.
  tar.stdin.destroy();
  const zstdDone = watchChild(zstd, 'zstd -d', 'the stored object does not decompress: it may be damaged; run pgdr verify').done;
  const tarDone = watchChild(tar, 'tar -x', `check free space and permissions in ${directory}`).done;
  const kill = (): void => {
    zstd.kill('SIGTERM');
    tar.kill('SIGTERM');
  };
  const forget = killOnExit(zstd, tar);
  return {
    stdin: zstd.stdin!,
    wait: async () => {
      try {
        await zstdDone;
        await tarDone;
      } finally {
        forget();
      }
    },
    kill,
  };
}
