import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Passes bytes through unchanged and records their sha256 and count. The result is read after the stream
 * ends; backup, restore and verify use the same stage so a stored object is checked the way it was recorded.
 */
export class ChecksumStage extends Transform {
  private readonly hash = createHash('sha256');
  private count = 0;
  private digest: string | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    callback();
  }

  get bytes(): number {
    return this.count;
  }

  /** The hex sha256; throws if read before the stream ended, which would be a programming error. */
  get sha256(): string {
    if (this.digest === undefined) throw new Error('sha256 read before the stream ended');
    return this.digest;
  }
}

/** Counts bytes without hashing them (the uncompressed side of a pipeline). */
export class ByteCounterStage extends Transform {
  private count = 0;
  constructor(private readonly onBytes?: (total: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    this.onBytes?.(this.count);
    callback(null, chunk);
  }

  get bytes(): number {
    return this.count;
  }
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
