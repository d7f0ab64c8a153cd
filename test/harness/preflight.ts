import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serviceUser } from './temp.js';

/**
 * Where the integration tests find their programs, and the vitest globalSetup that checks, before any test file
 * runs, that every one of them is there: one error listing everything missing beats twenty timeouts.
 */

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const pgdrBin = join(repoRoot, 'bin', 'pgdr');
/** The bundled full CLI bin/pgdr loads (scripts/bundle-cli.mjs, part of npm run build). */
export const pgdrDistEntry = join(repoRoot, 'dist', 'bundle', 'entry.js');
/** The bundled `wal push` bin/pgdr loads (scripts/bundle-wal-push.mjs, part of npm run build). */
export const pgdrWalPushBundle = join(repoRoot, 'dist', 'cli', 'wal-push.cjs');

/** PostgreSQL 15's bin directory (Debian's layout unless PGDR_PG_BINDIR says otherwise). */
export function pgBinDir(): string {
  return process.env.PGDR_PG_BINDIR ?? '/usr/lib/postgresql/15/bin';
}

export function pgBin(program: string): string {
  return join(pgBinDir(), program);
}

/** The MinIO server binary test/setup/ensure-deps.sh builds. */
export function minioBin(): string {
  return process.env.PGDR_MINIO_BIN ?? join(homedir(), '.cache', 'pgdr', 'bin', 'minio');
}

/**
 * PATH for the programs the tests start (servers, pgdr): PostgreSQL 15 first so that `pg_basebackup` is the 15
 * one, then this Node, then the system directories; nothing from the developer's own PATH leaks in.
 */
export function testPath(): string {
  return [pgBinDir(), dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':');
}

/** The absolute path of a program on PATH, or undefined. */
export function findOnPath(program: string, path: string = process.env.PATH ?? ''): string | undefined {
  if (isAbsolute(program)) return isExecutable(program) ? program : undefined;
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface MissingDependency {
  what: string;
  fix: 'ensure-deps' | 'build' | 'permissions';
}

const postgresPrograms = ['postgres', 'initdb', 'pg_ctl', 'pg_basebackup', 'pg_receivewal', 'pg_controldata', 'psql', 'pg_amcheck'];
const commandsOnPath: Array<[string, string]> = [
  ['zstd', 'zstd'],
  ['jq', 'jq (the restore-by-hand runbook reads manifests with it)'],
  ['openssl', 'openssl (makes the MinIO TLS test certificate)'],
  ['etcd', 'etcd server (Debian package etcd-server)'],
  ['etcdctl', 'etcdctl (Debian package etcd-client)'],
  ['patroni', 'patroni'],
];

/** Everything the integration tests need that this machine lacks; empty when all is there. */
export function missingDependencies(): MissingDependency[] {
  const missing: MissingDependency[] = [];
  for (const program of postgresPrograms) {
    if (!isExecutable(pgBin(program))) missing.push({ what: `PostgreSQL 15 ${program} (${pgBin(program)})`, fix: 'ensure-deps' });
  }
  if (isExecutable(pgBin('postgres'))) {
    const version = programVersion(pgBin('postgres'));
    if (version !== undefined && !/\(PostgreSQL\) 15\./.test(version)) {
      missing.push({ what: `PostgreSQL 15 (${pgBin('postgres')} is "${version}"; set PGDR_PG_BINDIR)`, fix: 'ensure-deps' });
    }
  }
  for (const [command, label] of commandsOnPath) {
    if (findOnPath(command) === undefined) missing.push({ what: `${label} on PATH`, fix: 'ensure-deps' });
  }
  if (!isExecutable(minioBin())) missing.push({ what: `MinIO server (${minioBin()}, or set PGDR_MINIO_BIN)`, fix: 'ensure-deps' });

  let user: ReturnType<typeof serviceUser> | undefined;
  try {
    user = serviceUser();
  } catch {
    missing.push({ what: "the OS user 'postgres' (PostgreSQL refuses to run as root)", fix: 'ensure-deps' });
  }
  if (user?.switchUser && findOnPath('runuser', `${process.env.PATH ?? ''}:/usr/sbin:/sbin`) === undefined) {
    missing.push({ what: 'runuser (util-linux), to run PostgreSQL as postgres', fix: 'ensure-deps' });
  }

  if (!isExecutable(process.execPath)) missing.push({ what: `node (${process.execPath})`, fix: 'ensure-deps' });
  try {
    accessSync(pgdrDistEntry, constants.R_OK);
    if (user?.switchUser && !readableBy(user.name, pgdrDistEntry)) {
      missing.push({
        what: `read access for the OS user ${user.name} to ${pgdrDistEntry} (every parent directory needs o+x)`,
        fix: 'permissions',
      });
    }
  } catch {
    missing.push({ what: `the compiled CLI (${pgdrDistEntry})`, fix: 'build' });
  }
  try {
    accessSync(pgdrWalPushBundle, constants.R_OK);
  } catch {
    missing.push({ what: `the bundled wal push (${pgdrWalPushBundle})`, fix: 'build' });
  }
  return missing;
}

function programVersion(program: string): string | undefined {
  try {
    return execFileSync(program, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}

function readableBy(user: string, file: string): boolean {
  try {
    execFileSync(findOnPath('runuser', '/usr/sbin:/sbin:/usr/bin:/bin') ?? 'runuser', ['-u', user, '--', 'test', '-r', file], {
      stdio: 'ignore',
      timeout: 10_000,
    });
    return true;
  } catch {
    return false;
  }
}

export function describeMissing(missing: MissingDependency[]): string {
  const lines = ['integration tests cannot start; missing:'];
  for (const item of missing) lines.push(`  - ${item.what}`);
  const fixes = new Set(missing.map((m) => m.fix));
  if (fixes.has('ensure-deps')) lines.push('install them with: bash test/setup/ensure-deps.sh (as root; `npm test` runs it first)');
  if (fixes.has('build')) lines.push('build the CLI with: npm run build');
  if (fixes.has('permissions')) lines.push(`let the service user read the checkout, e.g. chmod o+rx on ${repoRoot} and its parents`);
  return lines.join('\n');
}

/** vitest globalSetup for the integration project. */
export default function preflight(): void {
  const missing = missingDependencies();
  if (missing.length > 0) throw new Error(describeMissing(missing));
}
