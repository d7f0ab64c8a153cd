import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { readMarker, removeMarker } from '../wal/spool.js';

/**
 * The fast path of `pgdr wal push PATH`: if an earlier run archived PATH ahead of time and left a marker whose
 * sha256 matches the file now, answer success without loading the CLI, the config schema or a storage driver.
 * Anything unusual (a config file, an odd flag, no marker, a mismatch) returns false and the full command runs.
 */
export function tryWalPushFastPath(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (argv[0] !== 'wal' || argv[1] !== 'push') return false;
  const flags = new Map<string, string>();
  let path: string | undefined;
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg : arg.slice(0, eq);
      if (name === '--repo' || name === '--cluster' || name === '--spool-dir') {
        const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
        if (value === undefined) return false;
        flags.set(name, value);
      } else if (name === '--s3-endpoint' || name === '--compress-level') {
        if (eq === -1) i++;
      } else if (name !== '--s3-force-path-style' && name !== '--no-progress') {
        return false; // --config, --json, --help and anything new: let the full CLI handle it
      }
    } else if (path === undefined) {
      path = arg;
    } else {
      return false;
    }
  }
  if (path === undefined || env.PGDR_CONFIG) return false;
  const home = env.HOME;
  const repo = flags.get('--repo') ?? env.PGDR_REPO ?? (home ? `file://${home}/.local/share/pgdr/repo` : undefined);
  const cluster = flags.get('--cluster') ?? env.PGDR_CLUSTER ?? 'default';
  const spoolDir =
    flags.get('--spool-dir') ??
    env.PGDR_SPOOL_DIR ??
    (env.XDG_STATE_HOME ? `${env.XDG_STATE_HOME}/pgdr/spool` : home ? `${home}/.local/state/pgdr/spool` : undefined);
  if (!repo || !spoolDir) return false;
  const name = basename(path);
  const marker = readMarker(spoolDir, cluster, name);
  if (!marker || marker.repo !== repo) return false;
  let sha256: string;
  try {
    sha256 = createHash('sha256').update(readFileSync(resolve(path))).digest('hex');
  } catch {
    return false;
  }
  if (sha256 !== marker.sha256) {
    removeMarker(spoolDir, cluster, name);
    return false;
  }
  removeMarker(spoolDir, cluster, name);
  return true;
}
