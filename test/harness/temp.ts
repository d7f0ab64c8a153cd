import { chmodSync, chownSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { registerCleanup, removeDirQuietly } from './cleanup.js';

/** The OS account that PostgreSQL, Patroni and pgdr run as in the tests. */
export interface ServiceUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** True when the tests run as root and must switch to this user (PostgreSQL refuses to run as root). */
  switchUser: boolean;
}

let cachedUser: ServiceUser | undefined;

/**
 * As root: the `postgres` account the Debian packages create. As anyone else: the current user, since PostgreSQL
 * runs fine under any account but root and there is nothing to switch to.
 */
export function serviceUser(): ServiceUser {
  if (cachedUser !== undefined) return cachedUser;
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) {
    const me = userInfo();
    cachedUser = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir, switchUser: false };
    return cachedUser;
  }
  // /etc/passwd rather than `id`: this runs in process.on('exit') paths too, where nothing can be spawned.
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const fields = line?.split(':');
  if (fields === undefined || fields.length < 7) {
    throw new Error(
      "the OS user 'postgres' does not exist, and PostgreSQL refuses to run as root; run `bash test/setup/ensure-deps.sh`",
    );
  }
  cachedUser = {
    name: 'postgres',
    uid: Number(fields[2]),
    gid: Number(fields[3]),
    home: fields[5] ?? '/var/lib/postgresql',
    switchUser: true,
  };
  return cachedUser;
}

/** Gives a file or a whole tree to the service user (a no-op when the tests do not run as root). */
export function chownToServiceUser(path: string, options: { recursive?: boolean } = {}): void {
  const user = serviceUser();
  if (!user.switchUser) return;
  chownSync(path, user.uid, user.gid);
  if (!options.recursive || !lstatSync(path).isDirectory()) return;
  for (const entry of readdirSync(path, { recursive: true, encoding: 'utf8' })) {
    const child = join(path, entry);
    // lchown: a symlink (pg_wal in a restored data directory may be one) is changed, not what it points at.
    try {
      const stat = lstatSync(child);
      if (stat.uid !== user.uid || stat.gid !== user.gid) chownSync(child, user.uid, user.gid);
    } catch {
      // vanished while walking (a server still writing); nothing to own
    }
  }
}

/** Whether temporary directories are kept after the tests for a post-mortem (PGDR_KEEP_TEMP=1). */
export function keepTemp(): boolean {
  return /^(1|true|yes)$/i.test(process.env.PGDR_KEEP_TEMP ?? '');
}

const removers = new Map<string, () => void>();

/**
 * A fresh directory under the system temp dir, named pgdr-<label>-XXXXXX, removed by the cleanup registry at the
 * end of the file (stopAll) or at exit if nobody removed it earlier. With `owner: 'service'` it belongs to the
 * service user with mode 0700, as PostgreSQL wants for its data directory and sockets.
 */
export function makeTempDir(label: string, options: { owner?: 'self' | 'service' } = {}): string {
  const safe = label.replace(/[^A-Za-z0-9_.-]/g, '_');
  const dir = mkdtempSync(join(tmpdir(), `pgdr-${safe}-`));
  if (options.owner === 'service') {
    chmodSync(dir, 0o700);
    chownToServiceUser(dir);
  }
  const unregister = registerCleanup(
    `temp dir ${dir}`,
    () => removeTempDir(dir),
    () => {
      if (!keepTemp()) removeDirQuietly(dir);
    },
  );
  removers.set(dir, unregister);
  return dir;
}

/** Removes a directory made by makeTempDir (kept, and its path printed, when PGDR_KEEP_TEMP=1). */
export async function removeTempDir(dir: string): Promise<void> {
  removers.get(dir)?.();
  removers.delete(dir);
  if (keepTemp()) {
    if (existsSync(dir)) process.stderr.write(`PGDR_KEEP_TEMP: kept ${dir}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
