import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { BackupObject } from '../../../repo/manifest.js';
import { tarEnd, tarHeader, tarPadding, type TarMember } from '../../../stream/tar-header.js';
import type { EngineJob } from '../../engine.js';
import { uploadCompressed, type UploadedObject } from '../../object-upload.js';

/**
 * One object of a files-engine backup being written: a tar archive the engine writes member by member, compressed
 * with zstd and stored as it goes (bounded memory: writes wait while zstd or the store is behind).
 */
export class Bundle {
  private readonly source = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
  private readonly upload: Promise<UploadedObject>;
  private failure: Error | undefined;

  constructor(
    job: EngineJob,
    readonly name: string,
    private readonly describe: Pick<BackupObject, 'content' | 'tablespace'>,
    expectedBytes: number,
  ) {
    const key = job.layout.backupObject(job.backupId, name);
    job.started.push(key);
    this.upload = uploadCompressed({
      store: job.store,
      key,
      source: this.source,
      compress: { level: job.compress.level, threads: 1 },
      encryptTo: job.encryptTo,
      expectedBytes,
      interrupted: job.interrupted,
      onFailure: (err) => {
        this.failure ??= err;
      },
    });
    // Failures surface through write() and finish(); this keeps an early one from being reported as unhandled.
    this.upload.catch(() => undefined);
  }

  async member(member: TarMember): Promise<void> {
    await this.write(tarHeader(member));
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw await this.cause();
    if (chunk.length === 0) return;
    if (!this.source.write(chunk)) {
      await Promise.race([once(this.source, 'drain'), this.upload.then(() => undefined)]);
      if (this.failure !== undefined) throw await this.cause();
    }
  }

  /** Pads the member just written to whole tar records. */
  async endMember(size: number): Promise<void> {
    await this.write(tarPadding(size));
  }

  async finish(): Promise<BackupObject> {
    await this.write(tarEnd());
    this.source.end();
    const stored = await this.upload;
    return { name: this.name, bytes: stored.bytes, storedBytes: stored.storedBytes, sha256: stored.sha256, encoding: 'tar+zstd', ...this.describe };
  }

  /** Stops writing; the object's partial upload is abandoned. */
  abort(err: Error): void {
    this.failure ??= err;
    this.source.destroy(err);
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
