/**
 * POSIX tar (ustar, with pax extended headers for what ustar cannot hold) member headers, for the files engine's
 * bundles. GNU tar, bsdtar and every tar library read these. pgdr writes the headers itself because it must set
 * each member's size before it reads the file (a file that shrinks while it is read is padded, as PostgreSQL's own
 * base backup does) and stream the data with backpressure into zstd; the format is 512-byte records.
 */
export const TAR_BLOCK = 512;

export interface TarMember {
  name: string;
  type: 'file' | 'dir' | 'link';
  mode: number;
  size?: number;
  /** Seconds since 1970. */
  mtime: number;
  uid?: number;
  gid?: number;
  linkTarget?: string;
}

const USTAR_SIZE_LIMIT = 0o77777777777; // 11 octal digits

/** The header record(s) that come before a member's data. */
export function tarHeader(member: TarMember): Buffer {
  const name = member.type === 'dir' && !member.name.endsWith('/') ? `${member.name}/` : member.name;
  const size = member.type === 'file' ? (member.size ?? 0) : 0;
  const pax: Record<string, string> = {};
  const split = splitName(name);
  if (split === undefined) pax.path = name;
  if (size > USTAR_SIZE_LIMIT) pax.size = String(size);
  if (member.linkTarget !== undefined && Buffer.byteLength(member.linkTarget) > 100) pax.linkpath = member.linkTarget;
  const records: Buffer[] = [];
  if (Object.keys(pax).length > 0) {
    const body = paxBody(pax);
    records.push(ustar({ name: 'PaxHeader', prefix: '', typeflag: 'x', mode: 0o644, size: body.length, mtime: member.mtime, uid: 0, gid: 0, linkname: '' }));
    records.push(padded(body));
  }
  records.push(
    ustar({
      name: split?.name ?? name.slice(-100),
      prefix: split?.prefix ?? '',
      typeflag: member.type === 'file' ? '0' : member.type === 'dir' ? '5' : '2',
      mode: member.mode,
      size: size > USTAR_SIZE_LIMIT ? 0 : size,
      mtime: member.mtime,
      uid: member.uid ?? 0,
      gid: member.gid ?? 0,
      linkname: member.linkTarget !== undefined && Buffer.byteLength(member.linkTarget) <= 100 ? member.linkTarget : '',
    }),
  );
  return Buffer.concat(records);
}

/** Zero bytes that bring a member of `size` bytes to a whole number of records. */
export function tarPadding(size: number): Buffer {
  const rest = size % TAR_BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : TAR_BLOCK - rest);
}

/** The end of an archive: two zero records. */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * TAR_BLOCK);
}

/** ustar keeps 100 bytes of name plus a 155-byte prefix split at a slash. */
function splitName(name: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return { name: rest, prefix };
  }
  return undefined;
}

function paxBody(fields: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(fields)) {
    // Each record is "<length> <key>=<value>\n", the length counting its own digits.
    const rest = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(rest) + 1;
    while (String(length).length + Buffer.byteLength(rest) > length) length++;
    text += `${length}${rest}`;
  }
  return Buffer.from(text);
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, tarPadding(data.length)]);
}

interface UstarFields {
  name: string;
  prefix: string;
  typeflag: string;
  mode: number;
  size: number;
  mtime: number;
  uid: number;
  gid: number;
  linkname: string;
}

function ustar(f: UstarFields): Buffer {
  const header = Buffer.alloc(TAR_BLOCK);
  header.write(f.name, 0, 100, 'utf8');
  octal(header, 100, 8, f.mode);
  octal(header, 108, 8, f.uid);
  octal(header, 116, 8, f.gid);
  octal(header, 124, 12, f.size);
  octal(header, 136, 12, Math.max(0, Math.floor(f.mtime)));
  header.fill(0x20, 148, 156); // the checksum field counts as spaces while the checksum is summed
  header.write(f.typeflag, 156, 1, 'ascii');
  header.write(f.linkname, 157, 100, 'utf8');
  header.write('ustar\u000000', 257, 8, 'ascii');
  header.write(f.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return header;
}

function octal(header: Buffer, offset: number, length: number, value: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'ascii');
}
