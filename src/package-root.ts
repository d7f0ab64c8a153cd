import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * pgdr's own directory (package.json, bin/, dist/), found by walking up from this module to the package.json named
 * pgdr: the module runs from src/ under the tests, from dist/, and bundled into dist/cli/wal-push.cjs (scripts/
 * bundle-wal-push.mjs), so no fixed number of `..` fits all three.
 */
export interface PgdrPackage {
  root: string;
  version: string;
}

export const PGDR_PACKAGE: PgdrPackage | undefined = findPackage(dirname(fileURLToPath(import.meta.url)));

function findPackage(start: string): PgdrPackage | undefined {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'pgdr') return { root: dir, version: typeof pkg.version === 'string' ? pkg.version : '0.0.0' };
    } catch {
      // no package.json here, or not one Node could read: keep looking
    }
    if (dirname(dir) === dir) return undefined;
  }
}
