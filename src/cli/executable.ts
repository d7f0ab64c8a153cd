import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The pgdr executable (bin/pgdr of this checkout or package), for commands pgdr starts or writes for others to run. */
export function pgdrExecutable(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgdr');
}
