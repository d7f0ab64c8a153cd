import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { BackupObject } from '../../../repo/manifest.js';
import { tarEnd, tarHeader, tarPadding, type TarMember } from '../../../stream/tar-header.js';
import type { EngineJob } from '../../engine.js';
import { startZstdUpload, type UploadedObject } from '../../object-upload.js';

/** Raw bytes a bundle lets wait in front of zstd before a writer waits. */
const QUEUED_BYTES = 4 * 1024 * 1024;

/**
 * One object of a files-engine backup being written: a tar archive the engine writes member by member, compressed
 * with zstd and stored as it goes (bounded memory: writes wait while zstd or the store is behind).
 */
export class Bundle {
  private readonly input: Writable;
  private readonly upload: Promise<UploadedObject>;
  private readonly stop: (err: Error) => void;
  private written = 0;
  private failure: Error | undefined;

  constructor(
    job: EngineJob,
    readonly name: string,
    private readonly describe: Pick<BackupObject, 'content' | 'tablespace'>,
    expectedBytes: number,
    threads = 1,
  ) {
    const key = job.layout.backupObject(job.backupId, name);
    job.started.push(key);
    const common = {
      store: job.store,
      key,
      compress: { level: job.compress.level, threads },
      expectedBytes,
      interrupted: job.interrupted,
      onFailure: (err: Error) => {
        this.failure ??= err;
      },
    };
    const upload = startZstdUpload({ ...common, ...(job.encryptTo === undefined ? {} : { encryptTo: job.encryptTo }) });
    this.input = upload.input;
    this.upload = upload.result.then((stored) => ({ ...stored, bytes: this.written }));
    this.stop = upload.abort;
    // Failures surface through write() and finish(); this keeps an early one from being reported as unhandled.
    this.upload.catch(() => undefined);
  }

  async member(member: TarMember): Promise<void> {
    await this.write(tarHeader(member));
  }

  /**
   * Queues `chunk`; waits while more than QUEUED_BYTES are queued. `release` is called once the chunk's buffer may be
   * reused: the input is zstd's own stdin, whose write callbacks say when the pipe has taken a chunk.
   */
  async write(chunk: Buffer, release?: () => void): Promise<void> {
    if (this.failure !== undefined) throw await this.cause();
    if (chunk.length === 0) return;
    this.written += chunk.length;
    if (release !== undefined) {
      this.input.write(chunk, (err) => {
        if (!err) release();
      });
    } else {
      this.input.write(chunk);
    }
    // Up to QUEUED_BYTES wait in the pipe's queue, so that zstd never waits for the next chunk.
    if (this.input.writableLength > QUEUED_BYTES) {
      await Promise.race([once(this.input, 'drain'), this.upload.then(() => undefined)]);
      if (this.failure !== undefined) throw await this.cause();
    }
  }

  /** Pads the member just written to whole tar records. */
  async endMember(size: number): Promise<void> {
    await this.write(tarPadding(size));
  }

  async finish(): Promise<BackupObject> {
    await this.write(tarEnd());
    this.input.end();
    const stored = await this.upload;
    return { name: this.name, bytes: stored.bytes, storedBytes: stored.storedBytes, sha256: stored.sha256, encoding: 'tar+zstd', ...this.describe };
  }

  /** Stops writing; the object's partial upload is abandoned. */
  abort(err: Error): void {
    this.failure ??= err;
    this.stop(err);
  }

  /** The upload's own error, which names the real cause better than the broken pipe a writer sees. */
  private async cause(): Promise<Error> {
    try {
      await this.upload;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
    return this.failure!;
  }
}
