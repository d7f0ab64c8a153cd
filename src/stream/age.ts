import { spawn, type ChildProcess } from 'node:child_process';
import { childEnv } from '../process/child-env.js';
import { Duplex } from 'node:stream';
import { killOnExit, watchChild } from '../process/child.js';
import { AGE, AGE_INSTALL_HINT, asDecryptFailure, encryptArgs, spawnAgeDecrypt } from './age-buffer.js';
import { compressArgs, ZSTD, type ZstdOptions } from './zstd-buffer.js';

export * from './age-buffer.js';

/**
 * The streaming age stages (see src/stream/age-buffer.ts for the choice of the age CLI). Compression and encryption
 * run as `zstd | age` joined by a kernel pipe, so the compressed bytes never pass through Node: pgdr's own thread
 * sees only what it hashes and uploads, as without encryption.
 */

/** A Duplex: write raw bytes, read age-encrypted zstd frames. Fails if either child exits non-zero. */
export function compressEncryptStage(options: ZstdOptions, recipients: readonly string[]): Duplex {
  const age = spawn(AGE, encryptArgs(recipients), { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv('tool') });
  const zstd = spawn(ZSTD, compressArgs(options), { stdio: ['pipe', age.stdin!, 'pipe'], env: childEnv('tool') });
  // zstd holds the write end of age's stdin now; the parent's copy must close or age never sees end of input.
  age.stdin!.destroy();
  return new ChildChain([
    { child: zstd, label: 'zstd', hint: 'install the zstd package (apt-get install zstd), and check free memory' },
    { child: age, label: 'age', hint: AGE_INSTALL_HINT },
  ]);
}

/** A Duplex: write an age file, read what was encrypted. A wrong identity or an altered object fails it. */
export function decryptStage(identityFile: string, what: string): Duplex {
  const age = spawnAgeDecrypt(identityFile, ['pipe', 'pipe', 'pipe']);
  return new ChildChain([{ child: age, label: 'age -d', hint: 'the object does not decrypt: it may be damaged; run pgdr verify' }], (err, stderr) =>
    asDecryptFailure(err, what, identityFile, stderr),
  );
}

interface ChainMember {
  child: ChildProcess;
  label: string;
  hint: string;
}

/**
 * Children joined by kernel pipes, seen as one Duplex: writes go to the first one's stdin, reads come from the last
 * one's stdout. The readable side ends only after every child has exited 0; the first failure (in chain order: an
 * earlier child's death explains a later one's, unless the earlier one died of the broken pipe a later one's death
 * left it) destroys the stream with that child's own last word.
 */
class ChildChain extends Duplex {
  private readonly first: ChildProcess;
  private readonly last: ChildProcess;
  private readonly forget: () => void;
  private readonly done: Promise<void>;

  constructor(
    private readonly members: ChainMember[],
    mapError: (err: unknown, stderr: string) => unknown = (err) => err,
  ) {
    super();
    this.first = members[0]!.child;
    this.last = members[members.length - 1]!.child;
    this.forget = killOnExit(...members.map((m) => m.child));
    const watched = members.map((m) => watchChild(m.child, m.label, m.hint));
    this.done = (async () => {
      for (const [i, w] of watched.entries()) {
        try {
          await w.done;
        } catch (err) {
          // A broken pipe means a later child died first (age killed mid-stream leaves zstd with SIGPIPE): that
          // child's failure is the cause to report.
          if (w.brokenPipe()) {
            for (const later of watched.slice(i + 1)) {
              try {
                await later.done;
              } catch (cause) {
                throw mapError(cause, later.stderrTail());
              }
            }
          }
          // The whole tail, not only the last line: age says why on the line before its "report errors" footer.
          throw mapError(err, w.stderrTail());
        }
      }
    })();
    this.done.catch(() => undefined);
    // A child that exits without reading all its input closes the pipe: its exit status tells what happened.
    this.first.stdin!.on('error', () => undefined);
    this.last.stdout!.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.last.stdout!.pause();
    });
    this.last.stdout!.on('end', () => {
      this.done.then(
        () => {
          this.forget();
          this.push(null);
        },
        (err: unknown) => this.destroy(err as Error),
      );
    });
    // A child that dies early fails the stream at once, not when the writer next blocks.
    void this.done.catch((err: unknown) => {
      if (!this.destroyed) this.destroy(err as Error);
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.first.stdin!.write(chunk)) callback();
    else this.first.stdin!.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.first.stdin!.end(() => callback());
  }

  override _read(): void {
    this.last.stdout!.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const m of this.members) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGTERM');
    this.forget();
    callback(error);
  }
}
