import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { ServiceError } from '../errors.js';

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

const STDERR_TAIL_BYTES = 4096;

export function startZstdTarUnpack(directory: string, zstdBinary = process.env.PGDR_ZSTD_BIN ?? 'zstd'): UnpackProcess {
  const tar = spawn('tar', ['-x', '-f', '-', '-C', directory], { stdio: ['pipe', 'ignore', 'pipe'] });
  const zstd = spawn(zstdBinary, ['-d', '-c', '-q'], { stdio: ['pipe', tar.stdin, 'pipe'] });
  // zstd holds the write end of tar's stdin now; the parent's copy must close or tar never sees end of input.
  tar.stdin.destroy();
  const exited = (child: ReturnType<typeof spawn>, label: string, hint: string): Promise<void> => {
    let tail = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    return new Promise((resolve, reject) => {
      child.once('error', (err) => reject(new ServiceError(`${label} could not start: ${err.message}`, hint, err)));
      child.once('close', (code, signal) => {
        if (code === 0) return resolve();
        const last = tail.trim().split('\n').pop() ?? '';
        reject(new ServiceError(`${label} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${last ? `: ${last}` : ''}`, hint));
      });
    });
  };
  const zstdDone = exited(zstd, 'zstd -d', 'the stored object does not decompress: it may be damaged; run pgdr verify');
  const tarDone = exited(tar, 'tar -x', `check free space and permissions in ${directory}`);
  zstdDone.catch(() => undefined);
  tarDone.catch(() => undefined);
  const kill = (): void => {
    zstd.kill('SIGTERM');
    tar.kill('SIGTERM');
  };
  const onExit = (): void => kill();
  process.once('exit', onExit);
  return {
    stdin: zstd.stdin!,
    wait: async () => {
      try {
        await zstdDone;
        await tarDone;
      } finally {
        process.removeListener('exit', onExit);
      }
    },
    kill,
  };
}
