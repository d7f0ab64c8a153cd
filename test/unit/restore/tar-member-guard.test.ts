import { describe, expect, it } from 'vitest';
import { memberProblem, parseVerboseLine, TarMemberGuard, unquoteC } from '../../../src/restore/tar-member-guard.js';

/** Lines as GNU tar 1.34 prints them with -x -vv --quoting-style=c (copied from a real run on a crafted archive). */
const LINES = {
  file: '-rw-r--r-- 0/0               3 1970-01-01 00:00 "PG_VERSION"',
  absolute: '-rw-r--r-- 0/0               1 1970-01-01 00:00 "/tmp/tartest/abs.txt"',
  creating: 'drwxr-xr-x                  Creating directory: "tmp"',
  symlink: 'lrw-r--r-- 0/0               0 1970-01-01 00:00 "link" -> "/tmp/tartest/outside"',
  through: '-rw-r--r-- 0/0               5 1970-01-01 00:00 "link/through.txt"',
  hardlink: 'hrw-r--r-- 0/0               0 1970-01-01 00:00 "hard" link to "etc/hostname"',
  spaced: '-rw-r--r-- 0/0               1 1970-01-01 00:00 "name with space -> x"',
};

describe('parseVerboseLine', () => {
  it('reads the type, the name and a link target', () => {
    expect(parseVerboseLine(LINES.file)).toEqual({ type: 'file', name: 'PG_VERSION' });
    expect(parseVerboseLine(LINES.symlink)).toEqual({ type: 'symlink', name: 'link', link: '/tmp/tartest/outside' });
    expect(parseVerboseLine(LINES.hardlink)).toEqual({ type: 'hardlink', name: 'hard', link: 'etc/hostname' });
    expect(parseVerboseLine(LINES.spaced)).toEqual({ type: 'file', name: 'name with space -> x' });
  });

  it('ignores lines that are not member lines', () => {
    expect(parseVerboseLine(LINES.creating)).toBeUndefined();
    expect(parseVerboseLine('')).toBeUndefined();
  });

  it('undoes C quoting, octal UTF-8 bytes included', () => {
    expect(unquoteC('a\\"b\\\\c\\n')).toBe('a"b\\c\n');
    expect(unquoteC('caf\\303\\251')).toBe('café');
  });
});

describe('memberProblem', () => {
  const none = new Set<string>();
  it('accepts ordinary data directory members, symlinks to absolute paths included (pg_tblspc)', () => {
    expect(memberProblem({ type: 'file', name: 'base/1/1259' }, none)).toBeUndefined();
    expect(memberProblem({ type: 'symlink', name: 'pg_tblspc/16385', link: '/srv/ts1' }, none)).toBeUndefined();
    expect(memberProblem({ type: 'directory', name: './global/' }, none)).toBeUndefined();
  });

  it('refuses absolute names, .. components, paths through a symlink and hard links out', () => {
    expect(memberProblem({ type: 'file', name: '/etc/passwd' }, none)).toBe('an absolute name');
    expect(memberProblem({ type: 'file', name: 'base/../../x' }, none)).toBe("a '..' component");
    expect(memberProblem({ type: 'file', name: 'pg_tblspc/16385/x' }, new Set(['pg_tblspc/16385']))).toBe('it passes through the symlink pg_tblspc/16385');
    expect(memberProblem({ type: 'hardlink', name: 'h', link: '/etc/shadow' }, none)).toBe('a hard link to /etc/shadow');
    expect(memberProblem({ type: 'hardlink', name: 'h', link: 'base/1/1259' }, none)).toBeUndefined();
  });
});

describe('TarMemberGuard', () => {
  it('collects every unsafe member of a real listing, with the ones tar only mentions on stderr', () => {
    const guard = new TarMemberGuard();
    for (const line of Object.values(LINES)) guard.acceptListing(line);
    guard.acceptDiagnostic(`tar: "../dotdot.txt": Member name contains '..'`);
    guard.acceptDiagnostic('tar: Removing leading `/\' from member names');
    expect(guard.unsafe).toEqual([
      '/tmp/tartest/abs.txt (an absolute name)',
      'link/through.txt (it passes through the symlink link)',
      '../dotdot.txt (a \'..\' component)',
    ]);
  });
});
