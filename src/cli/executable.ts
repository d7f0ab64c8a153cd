import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGDR_PACKAGE } from '../package-root.js';

/** The pgdr executable (bin/pgdr of this checkout or package), for commands pgdr starts or writes for others to run. */
export function pgdrExecutable(): string {
  return PGDR_PACKAGE ? join(PGDR_PACKAGE.root, 'bin', 'pgdr') : resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgdr');
}
