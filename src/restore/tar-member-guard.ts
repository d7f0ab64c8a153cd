/**
 * Watches what `tar -x -vv --quoting-style=c` says it extracts and collects the members whose names could write
 * outside the restore: absolute names, `..` components, names that pass through a symlink the same archive made,
 * and hard links to absolute or `..` targets. GNU tar itself refuses to write any of them outside the directory (it
 * strips leading slashes, skips `..` members and will not follow a fresh symlink), so the guard's job is to turn them
 * into a verification failure that names them: an archive PostgreSQL wrote never holds such names, so one that does
 * is damaged or tampered with, and the restore must not be used.
 *
 * Pure: it reads lines, so it is tested on the exact text GNU tar prints.
 */
export class TarMemberGuard {
  private readonly symlinks = new Set<string>();
  private readonly found: string[] = [];
  private readonly seen = new Set<string>();

  /** Members refused so far, each with the reason, in the order tar reported them. */
  get unsafe(): readonly string[] {
    return this.found;
  }

  /** One line of tar's verbose listing (stdout). */
  acceptListing(line: string): void {
    const member = parseVerboseLine(line);
    if (member === undefined) return;
    const problem = memberProblem(member, this.symlinks);
    if (problem !== undefined) this.record(`${member.name} (${problem})`);
    if (member.type === 'symlink') this.symlinks.add(normalise(member.name));
  }

  /** One line of tar's diagnostics (stderr): members tar itself refused never reach the listing. */
  acceptDiagnostic(line: string): void {
    const dotdot = /^tar: "((?:[^"\\]|\\.)*)": Member name contains '\.\.'$/.exec(line);
    if (dotdot) this.record(`${unquoteC(dotdot[1]!)} (a '..' component)`);
  }

  private record(entry: string): void {
    if (this.seen.has(entry)) return;
    this.seen.add(entry);
    this.found.push(entry);
  }
}

export interface TarMember {
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  name: string;
  /** Symlink or hard link target. */
  link?: string;
}

const QUOTED = '"((?:[^"\\\\]|\\\\.)*)"';
const VERBOSE_LINE = new RegExp(`^(\\S)\\S*\\s+\\S+\\s+[\\d,]+\\s+\\S+\\s+\\S+\\s+${QUOTED}(?:\\s+(->|link to)\\s+${QUOTED})?$`);

/** `-rw------- postgres/postgres 8192 2026-11-23 14:01 "base/1/1259"`, `lrwxrwxrwx ... "a" -> "b"`, `hrw-... "a" link to "b"`. */
export function parseVerboseLine(line: string): TarMember | undefined {
  const match = VERBOSE_LINE.exec(line.trimEnd());
  if (!match) return undefined;
  const typeChar = match[1]!;
  const type: TarMember['type'] = typeChar === '-' ? 'file' : typeChar === 'd' ? 'directory' : typeChar === 'l' ? 'symlink' : typeChar === 'h' ? 'hardlink' : 'other';
  const member: TarMember = { type, name: unquoteC(match[2]!) };
  if (match[4] !== undefined) member.link = unquoteC(match[4]);
  return member;
}

export function memberProblem(member: TarMember, symlinks: ReadonlySet<string>): string | undefined {
  if (member.name.startsWith('/')) return 'an absolute name';
  if (hasDotDot(member.name)) return "a '..' component";
  const parts = normalise(member.name).split('/');
  for (let i = 1; i < parts.length; i++) {
    const ancestor = parts.slice(0, i).join('/');
    if (symlinks.has(ancestor)) return `it passes through the symlink ${ancestor}`;
  }
  if (member.type === 'hardlink' && member.link !== undefined && (member.link.startsWith('/') || hasDotDot(member.link))) {
    return `a hard link to ${member.link}`;
  }
  return undefined;
}

function hasDotDot(name: string): boolean {
  return name.split('/').includes('..');
}

function normalise(name: string): string {
  return name
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

/** GNU tar's --quoting-style=c: backslash escapes, octal for other bytes (UTF-8 sequences included). */
export function unquoteC(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== '\\') {
      bytes.push(...Buffer.from(ch, 'utf8'));
      continue;
    }
    const next = text[++i] ?? '';
    const octal = /^[0-7]{1,3}/.exec(text.slice(i))?.[0];
    if (octal !== undefined) {
      bytes.push(parseInt(octal, 8) & 0xff);
      i += octal.length - 1;
      continue;
    }
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, b: 8, a: 7, '\\': 92, '"': 34, "'": 39, '?': 63 };
    bytes.push(simple[next] ?? next.charCodeAt(0));
  }
  return Buffer.from(bytes).toString('utf8');
}
