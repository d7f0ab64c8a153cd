import { Writable } from 'node:stream';
import { TAR_BLOCK } from './tar-header.js';

/**
 * Reads a POSIX tar stream (ustar headers, pax extended headers for long names and sizes, GNU long names) member by
 * member, handing each file's data to a sink the caller picks by name, without writing anything to disk itself. The
 * files engine's block runs are tens of thousands of small members: letting tar create (and pgdr then read and
 * delete) one scratch file per run cost more than the restore's real work.
 */
export interface TarReaderMember {
  name: string;
  size: number;
  /** '0' file, '5' directory, '2' symbolic link, or another ustar typeflag. */
  typeflag: string;
}

/**
 * Where a member's data goes. write and end may finish synchronously and return nothing: the reader then awaits
 * nothing, so a sink of tens of thousands of small members costs no microtask per member.
 */
export interface TarMemberSink {
  /** The member's data, in order. */
  write(chunk: Buffer): Promise<void> | void;
  end(): Promise<void> | void;
}

export class TarFormatError extends Error {}

type State = { kind: 'header' } | { kind: 'data'; left: number; pad: number; sink: TarMemberSink | undefined } | { kind: 'pax'; left: number; pad: number; body: Buffer[]; gnuName: boolean } | { kind: 'end' };

export class TarReader extends Writable {
  private pending: Buffer = Buffer.alloc(0);
  private state: State = { kind: 'header' };
  private paxPath: string | undefined;
  private paxSize: number | undefined;
  private members = 0;

  constructor(private readonly onMember: (member: TarReaderMember) => TarMemberSink | undefined) {
    super();
  }

  /** Members read so far (file or not). */
  get memberCount(): number {
    return this.members;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.consume(chunk).then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    if (this.state.kind === 'data' || this.state.kind === 'pax' || this.pending.length > 0) {
      done(new TarFormatError('the tar stream ends in the middle of a member'));
      return;
    }
    if (this.state.kind !== 'end') {
      done(new TarFormatError('the tar stream ends without its end-of-archive records'));
      return;
    }
    done();
  }

  private async consume(chunk: Buffer): Promise<void> {
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    let at = 0;
    while (at < data.length) {
      const state = this.state;
      if (state.kind === 'end') return;
      if (state.kind === 'header') {
        if (data.length - at < TAR_BLOCK) break;
        this.header(data.subarray(at, at + TAR_BLOCK));
        at += TAR_BLOCK;
        continue;
      }
      if (state.left > 0) {
        const take = Math.min(state.left, data.length - at);
        const part = data.subarray(at, at + take);
        if (state.kind === 'data') {
          if (state.sink !== undefined) {
            const writing = state.sink.write(part);
            if (writing !== undefined) await writing;
          }
        } else {
          state.body.push(Buffer.from(part));
        }
        state.left -= take;
        at += take;
        continue;
      }
      if (state.pad > 0) {
        const skip = Math.min(state.pad, data.length - at);
        state.pad -= skip;
        at += skip;
        if (state.pad > 0) continue;
      }
      // The member (and its padding) is through.
      if (state.kind === 'data') {
        if (state.sink !== undefined) {
          const ending = state.sink.end();
          if (ending !== undefined) await ending;
        }
      } else {
        this.extendedHeader(Buffer.concat(state.body), state.gnuName);
      }
      this.state = { kind: 'header' };
    }
    // A member that ends exactly at the chunk's end still needs its sink ended before the next header.
    const state = this.state;
    if ((state.kind === 'data' || state.kind === 'pax') && state.left === 0 && state.pad === 0) {
      if (state.kind === 'data') {
        if (state.sink !== undefined) {
          const ending = state.sink.end();
          if (ending !== undefined) await ending;
        }
      } else {
        this.extendedHeader(Buffer.concat(state.body), state.gnuName);
      }
      this.state = { kind: 'header' };
    }
    if (at < data.length) this.pending = Buffer.from(data.subarray(at));
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      this.state = { kind: 'end' };
      return;
    }
    checkChecksum(block);
    const typeflag = block[156] === 0 ? '0' : String.fromCharCode(block[156]!);
    const size = this.paxSize ?? octal(block.subarray(124, 136), 'size');
    const pad = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
    if (typeflag === 'x' || typeflag === 'L') {
      this.state = { kind: 'pax', left: size, pad, body: [], gnuName: typeflag === 'L' };
      return;
    }
    if (typeflag === 'g') {
      // A global header sets defaults pgdr never writes: read past it.
      this.state = { kind: 'data', left: size, pad, sink: undefined };
      return;
    }
    const ustar = block.subarray(257, 262).toString('latin1') === 'ustar';
    const shortName = cString(block.subarray(0, 100));
    const prefix = ustar ? cString(block.subarray(345, 500)) : '';
    const name = this.paxPath ?? (prefix === '' ? shortName : `${prefix}/${shortName}`);
    this.paxPath = undefined;
    this.paxSize = undefined;
    this.members++;
    const dataSize = typeflag === '0' || typeflag === '7' ? size : typeflag === '5' || typeflag === '2' || typeflag === '1' ? 0 : size;
    const sink = this.onMember({ name, size: dataSize, typeflag: typeflag === '7' ? '0' : typeflag });
    this.state = { kind: 'data', left: dataSize, pad: (TAR_BLOCK - (dataSize % TAR_BLOCK)) % TAR_BLOCK, sink };
  }

  private extendedHeader(body: Buffer, gnuName: boolean): void {
    if (gnuName) {
      this.paxPath = cString(body);
      return;
    }
    let at = 0;
    while (at < body.length) {
      const space = body.indexOf(0x20, at);
      if (space < 0) throw new TarFormatError('a pax header record has no length');
      const length = Number(body.subarray(at, space).toString('latin1'));
      if (!Number.isInteger(length) || length <= 0 || at + length > body.length) throw new TarFormatError('a pax header record has a bad length');
      const record = body.subarray(space + 1, at + length - 1).toString('utf8');
      const eq = record.indexOf('=');
      const key = record.slice(0, eq);
      const value = record.slice(eq + 1);
      if (key === 'path') this.paxPath = value;
      else if (key === 'size') {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0) throw new TarFormatError(`a pax size ${JSON.stringify(value)} is not a size`);
        this.paxSize = n;
      }
      at += length;
    }
  }
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8');
}

function octal(bytes: Buffer, field: string): number {
  const text = cString(bytes).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`a tar header's ${field} field is not octal`);
  return parseInt(text, 8);
}

function checkChecksum(block: Buffer): void {
  const stored = octal(block.subarray(148, 156), 'checksum');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  if (sum !== stored) throw new TarFormatError('a tar header fails its checksum');
}
