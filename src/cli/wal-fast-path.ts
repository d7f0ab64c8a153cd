import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { readMarker, removeMarker, runningPusher } from '../wal/spool.js';
import { prefetchDir, takePrefetched } from '../wal/prefetch-spool.js';

/**
 * Fast paths for the two commands PostgreSQL runs once per WAL file. `wal push PATH` answers success when an earlier
 * run already archived PATH ahead of time and left a marker whose sha256 matches the file now; `wal fetch NAME DEST`
 * answers from the prefetch spool when an earlier run downloaded NAME ahead of time. Neither loads the CLI, a config
 * storage driver. Anything unusual (an unknown flag, no marker, a mismatch, a config file that does not parse)
 * returns false and the full command runs.
 */
interface WalInvocation {
  command: 'push' | 'fetch';
  positional: string[];
  repo: string;
  cluster: string;
  spoolDir: string;
}

async function parseWalInvocation(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<WalInvocation | null> {
  if (argv[0] !== 'wal' || (argv[1] !== 'push' && argv[1] !== 'fetch')) return null;
  const flags = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (name === '--repo' || name === '--cluster' || name === '--spool-dir' || name === '--config') {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined) return null;
      flags.set(name, value);
    } else if (name === '--s3-endpoint' || name === '--compress-level') {
      if (eq === -1) i++;
    } else if (name !== '--s3-force-path-style' && name !== '--no-progress' && name !== '--abort-recovery-on-error') {
      return null; // --config, --json, --help and anything new: the full CLI handles it
    }
  }
  const command = argv[1];
  const configFile = flags.get('--config') ?? env.PGDR_CONFIG;
  if (configFile) {
    // A config file may set the repository, cluster or spool: read it the way the full CLI does (YAML and the
    // schema cost a little start-up time, still far less than the full command).
    const { resolveSettings } = await import('../config/settings.js');
    const settings = resolveSettings(
      { config: configFile, repo: flags.get('--repo'), cluster: flags.get('--cluster'), spoolDir: flags.get('--spool-dir') },
      env,
    );
    return { command, positional, repo: settings.repo, cluster: settings.cluster, spoolDir: settings.spoolDir };
  }
  const home = env.HOME;
  const repo = flags.get('--repo') ?? env.PGDR_REPO ?? (home ? `file://${home}/.local/share/pgdr/repo` : undefined);
  const spoolDir =
    flags.get('--spool-dir') ??
    env.PGDR_SPOOL_DIR ??
    (env.XDG_STATE_HOME ? `${env.XDG_STATE_HOME}/pgdr/spool` : home ? `${home}/.local/state/pgdr/spool` : undefined);
  if (!repo || !spoolDir) return null;
  return { command, positional, repo, cluster: flags.get('--cluster') ?? env.PGDR_CLUSTER ?? 'default', spoolDir };
}

export async function tryWalFastPath(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    const call = await parseWalInvocation(argv, env);
    if (call === null) return false;
    return call.command === 'push' ? await pushFromMarker(call) : fetchFromPrefetch(call);
  } catch {
    return false;
  }
}

/** How long a `wal push` waits for the background pusher to reach its file before pushing it itself. */
const PUSHER_WAIT_MS = 5_000;

async function pushFromMarker(call: WalInvocation): Promise<boolean> {
  const [path] = call.positional;
  if (path === undefined || call.positional.length !== 1) return false;
  const name = basename(path);
  let marker = readMarker(call.spoolDir, call.cluster, name);
  // The pusher is working through the ready files in order; this one is usually next or nearly so. It takes only
  // files PostgreSQL has marked ready, so for any other file (a manual push) waiting would only cost time.
  const markedReady = existsSync(join(dirname(resolve(path)), 'archive_status', `${name}.ready`));
  const deadline = Date.now() + PUSHER_WAIT_MS;
  while (marker === null && markedReady && Date.now() < deadline && runningPusher(call.spoolDir, call.cluster) !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    marker = readMarker(call.spoolDir, call.cluster, name);
  }
  if (!marker || marker.repo !== call.repo) return false;
  const sha256 = createHash('sha256').update(readFileSync(resolve(path))).digest('hex');
  removeMarker(call.spoolDir, call.cluster, name);
  return sha256 === marker.sha256;
}

function fetchFromPrefetch(call: WalInvocation): boolean {
  const [name, destination] = call.positional;
  if (name === undefined || destination === undefined || call.positional.length !== 2) return false;
  if (!/^[0-9A-F]{24}$/.test(name)) return false;
  const dir = prefetchDir(call.spoolDir, call.cluster, process.cwd());
  return takePrefetched(dir, { repo: call.repo, cluster: call.cluster }, name, resolve(destination));
}
