import type { ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { killOnExit, watchChild } from './child.js';

export interface ChainMember {
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
export class ChildChain extends Duplex {
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
