import { spawn, type ChildProcess } from 'node:child_process';
import { childEnv } from '../process/child-env.js';
import type { Duplex } from 'node:stream';
import { ChildChain } from '../process/child-chain.js';
import { AGE, AGE_INSTALL_HINT, asDecryptFailure, encryptArgs, spawnAgeDecrypt } from './age-buffer.js';
import { compressArgs, ZSTD, ZSTD_HINT, type ZstdOptions } from './zstd-buffer.js';

export * from './age-buffer.js';

/**
 * The streaming age stages (see src/stream/age-buffer.ts for the choice of the age CLI). Compression and encryption
 * run as `zstd | age` joined by a kernel pipe, so the compressed bytes never pass through Node: pgdr's own thread
 * sees only what it hashes and uploads, as without encryption.
 */

/** A Duplex: write raw bytes, read age-encrypted zstd frames. Fails if either child exits non-zero. */
export function compressEncryptStage(options: ZstdOptions, recipients: readonly string[]): Duplex {
  const { zstd, age } = spawnCompressEncrypt(options, recipients);
  return new ChildChain([
    { child: zstd, label: 'zstd', hint: ZSTD_HINT },
    { child: age, label: 'age', hint: AGE_INSTALL_HINT },
  ]);
}

/**
 * `zstd | age -e` joined by a kernel pipe: write into zstd's stdin, read age's stdout (the caller watches both exits).
 */
export function spawnCompressEncrypt(options: ZstdOptions, recipients: readonly string[]): { zstd: ChildProcess; age: ChildProcess } {
  const age = spawn(AGE, encryptArgs(recipients), { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv('tool') });
  const zstd = spawn(ZSTD, compressArgs(options), { stdio: ['pipe', age.stdin!, 'pipe'], env: childEnv('tool') });
  // zstd holds the write end of age's stdin now; the parent's copy must close or age never sees end of input.
  age.stdin!.destroy();
  return { zstd, age };
}

/** A Duplex: write an age file, read what was encrypted. A wrong identity or an altered object fails it. */
export function decryptStage(identityFile: string, what: string): Duplex {
  const age = spawnAgeDecrypt(identityFile, ['pipe', 'pipe', 'pipe']);
  return new ChildChain([{ child: age, label: 'age -d', hint: 'the object does not decrypt: it may be damaged; run pgdr verify' }], (err, stderr) =>
    asDecryptFailure(err, what, identityFile, stderr),
  );
}
