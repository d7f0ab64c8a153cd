import { Transform, type TransformCallback } from 'node:stream';

/**
 * Passes a tar stream through unchanged while capturing the contents of a few named small entries. pg_basebackup
 * writing to stdout puts backup_label first and backup_manifest last in its tar, and those two tell pgdr the
 * backup's WAL range and timeline without a second connection or parsing localised log lines.
 */
const BLOCK = 512;

export class TarEntrySniffer extends Transform {
  readonly captured = new Map<string, Buffer>();
  private header = Buffer.alloc(0);
  /** Bytes left in the current entry's data, including padding to the block boundary. */
  private remaining = 0;
  private capturing: { name: string; size: number; parts: Buffer[]; got: number } | null = null;
  private longName: string | null = null;
  private collectingLongName: Buffer[] | null = null;
  private entries = 0;

  constructor(
    private readonly wanted: ReadonlySet<string>,
    private readonly maxCaptureBytes = 16 * 1024 * 1024,
  ) {
    super();
  }

  get entryCount(): number {
    return this.entries;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback(null, chunk);
  }

  private consume(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.collect(chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        if (this.remaining === 0) this.finishEntry();
        continue;
      }
      const need = BLOCK - this.header.length;
      const take = Math.min(need, chunk.length - offset);
      this.header = Buffer.concat([this.header, chunk.subarray(offset, offset + take)]);
      offset += take;
      if (this.header.length === BLOCK) {
        this.startEntry(this.header);
        this.header = Buffer.alloc(0);
      }
    }
  }

  private startEntry(block: Buffer): void {
    if (block.every((b) => b === 0)) return; // end-of-archive blocks
    const size = parseSize(block.subarray(124, 136));
    const type = String.fromCharCode(block[156] ?? 0x30);
    const name = this.longName ?? joinName(cString(block.subarray(345, 500)), cString(block.subarray(0, 100)));
    this.longName = null;
    this.remaining = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      this.collectingLongName = [];
    } else if ((type === '0' || type === '\0') && this.wanted.has(name) && size <= this.maxCaptureBytes) {
      this.capturing = { name, size, parts: [], got: 0 };
    }
    if (type !== 'L' && type !== 'x' && type !== 'g') this.entries++;
    if (this.remaining === 0) this.finishEntry();
  }

  private collect(data: Buffer): void {
    if (this.collectingLongName) this.collectingLongName.push(Buffer.from(data));
    if (this.capturing) {
      this.capturing.parts.push(Buffer.from(data));
      this.capturing.got += data.length;
    }
  }

  private finishEntry(): void {
    if (this.collectingLongName) {
      this.longName = cString(Buffer.concat(this.collectingLongName));
      this.collectingLongName = null;
    }
    if (this.capturing) {
      this.captured.set(this.capturing.name, Buffer.concat(this.capturing.parts).subarray(0, this.capturing.size));
      this.capturing = null;
    }
  }
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end === -1 ? buf.length : end).toString('utf8');
}

function joinName(prefix: string, name: string): string {
  return prefix ? `${prefix}/${name}` : name;
}

function parseSize(field: Buffer): number {
  // GNU base-256 for sizes of 8 GiB and more; otherwise NUL/space-terminated octal.
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = cString(field).trim();
  if (text === '') return 0;
  const value = Number.parseInt(text, 8);
  if (!Number.isFinite(value)) throw new Error(`tar header has an unreadable size field ${JSON.stringify(text)}`);
  return value;
}
