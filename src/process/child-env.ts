/**
 * The environment each kind of child gets. pgdr's own environment holds secrets (S3 keys, PGPASSWORD, the etcd
 * password, an age identity's path or passphrase): a child gets only what its kind needs, so a compromised or merely
 * chatty tool (a core dump, a crash report, `ps e`) has none to leak.
 *
 * - tool: zstd, tar, etcdutl, age; they read a pipe or a file and write a pipe or a file: the basics only.
 * - postgres-client: pg_amcheck, pg_ctl stop: libpq's PG* variables (host, port, user, password, PGPASSFILE, SSL).
 * - postgres-server: `pg_ctl start` of a restored server, whose restore_command is `pgdr wal fetch`: that pgdr needs
 *   the repository settings, the S3 credentials and the decryption identity it inherits from here. It does not need
 *   what only other pgdr commands use: PGPASSWORD (the server is not a client), the etcd credentials.
 * - pgdr: pgdr's own children (scheduled jobs, the WAL pusher) run pgdr commands: the whole environment.
 */
export type ChildKind = 'tool' | 'postgres-client' | 'postgres-server' | 'pgdr';

const BASICS = new Set(['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR', 'TERM', 'SHELL']);
/** Secrets of pgdr commands other than a restored server's restore_command. */
const NOT_FOR_SERVERS = /^(PGPASSWORD|PGDR_ETCD_(USER|PASSWORD)(_FILE)?)$/;

export function childEnv(kind: ChildKind, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (wanted(kind, key)) out[key] = value;
  }
  return out;
}

function wanted(kind: ChildKind, key: string): boolean {
  switch (kind) {
    case 'pgdr':
      return true;
    case 'postgres-server':
      return !NOT_FOR_SERVERS.test(key);
    case 'postgres-client':
      return BASICS.has(key) || key.startsWith('LC_') || (key.startsWith('PG') && !key.startsWith('PGDR_'));
    case 'tool':
      return BASICS.has(key) || key.startsWith('LC_');
  }
}
