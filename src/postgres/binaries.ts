import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where PostgreSQL's programs are. Debian keeps them out of PATH under /usr/lib/postgresql/<major>/bin; PGDR_PG_BIN
 * points elsewhere. pgdr speaks to PostgreSQL 15, so that directory is preferred over whatever PATH holds.
 */
export function pgBinDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.PGDR_PG_BIN) return env.PGDR_PG_BIN;
  for (const major of [15, 16, 17]) {
    const dir = `/usr/lib/postgresql/${major}/bin`;
    if (existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

export function pgBinary(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = pgBinDir(env);
  return dir ? join(dir, name) : name;
}
