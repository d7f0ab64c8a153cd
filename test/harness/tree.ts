import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every entry under a directory with what it holds: a file's mode, size and sha256, a symlink's target, a
 * directory's mode. Two digests are equal exactly when the trees are byte for byte the same, which is how the fault
 * tests prove that a failed restore left a data directory untouched.
 */
export function treeDigest(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      const info = lstatSync(path);
      const mode = (info.mode & 0o7777).toString(8);
      if (info.isSymbolicLink()) out.set(rel, `link ${readlinkSync(path)}`);
      else if (info.isDirectory()) {
        out.set(rel, `dir ${mode}`);
        walk(path, rel);
      } else out.set(rel, `file ${mode} ${info.size} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
    }
  };
  walk(root, '');
  return out;
}
