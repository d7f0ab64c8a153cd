import { readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';

/**
 * Who owns what, in words an operator can act on: "owned by postgres (uid 105); pgdr runs as alice (uid 1000)".
 * Names come from /etc/passwd (where containers and VMs keep them); a uid without an entry is shown as a number.
 */

export function accountName(uid: number, passwd: () => string = () => readFileSync('/etc/passwd', 'utf8')): string | undefined {
  try {
    for (const line of passwd().split('\n')) {
      const fields = line.split(':');
      if (fields.length >= 3 && Number(fields[2]) === uid && fields[0]) return fields[0];
    }
  } catch {
    // no /etc/passwd: only the number can be shown
  }
  return undefined;
}

export function describeAccount(uid: number): string {
  const name = accountName(uid);
  return name === undefined ? `uid ${uid}` : `${name} (uid ${uid})`;
}

/** The OS user this process runs as, as libpq names it when PGUSER is unset (USER may be missing in a CronJob). */
export function currentAccountName(): string {
  try {
    return userInfo().username;
  } catch {
    const uid = process.getuid?.();
    return (uid === undefined ? undefined : accountName(uid)) ?? process.env.USER ?? process.env.LOGNAME ?? 'postgres';
  }
}

export function describeCurrentAccount(): string {
  const uid = process.getuid?.();
  return uid === undefined ? currentAccountName() : describeAccount(uid);
}

/** "owned by postgres (uid 105), mode 0700" for the path, or for its nearest existing ancestor. */
export function describeOwnership(path: string): string {
  let current = path;
  for (;;) {
    try {
      const info = statSync(current);
      const mode = (info.mode & 0o7777).toString(8).padStart(4, '0');
      return `${current === path ? '' : `${current} `}owned by ${describeAccount(info.uid)}, mode ${mode}`;
    } catch {
      const parent = dirname(current);
      if (parent === current) return 'owner unknown';
      current = parent;
    }
  }
}
