import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { repositoriesKey, walFetchSources, walPushTargets } from '../config/repositories.js';
import { loadSettings, type Settings } from '../config/resolve-settings.js';
import { readMarker, removeMarker, runningPusher } from '../wal/spool.js';
import { prefetchDir, takePrefetched } from '../wal/prefetch-spool.js';
import { parseWalCommandLine } from './wal-argv.js';

/**
 * Fast paths for the two commands PostgreSQL runs once per WAL file. `wal push PATH` answers success when an earlier
 * run already archived PATH ahead of time and left a marker whose sha256 matches the file now; `wal fetch NAME DEST`
 * answers from the prefetch spool when an earlier run downloaded NAME ahead of time. Neither opens the repository
 * or loads a storage driver. Anything unusual (an unknown flag, --json, no marker, a mismatch, a config file that
 * does not parse) returns false and the full command runs.
 */
export async function tryWalFastPath(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    const call = parseWalCommandLine(argv);
    if (call === null || call.json || call.debug) return false;
    const settings = await loadSettings(call.flags, env);
    if (call.command === 'push') return call.positional.length === 1 && (await pushFromMarker(call.positional[0]!, settings));
    if (call.command === 'fetch') return fetchFromPrefetch(call.positional, settings);
    return false;
  } catch {
    return false;
  }
}

/** How long a `wal push` waits for the background pusher to reach its file before pushing it itself. */
const PUSHER_WAIT_MS = 5_000;

/**
 * Whether the background pusher stored `path` already, with the content it has now: then its marker is removed and
 * `wal push` is done. Waits a little for a pusher that is working through the files PostgreSQL marked ready.
 */
export async function pushFromMarker(path: string, settings: Settings): Promise<boolean> {
  const { spoolDir, cluster } = settings;
  const repo = repositoriesKey(walPushTargets(settings));
  const name = basename(path);
  let marker = readMarker(spoolDir, cluster, name);
  // The pusher is working through the ready files in order; this one is usually next or nearly so. It takes only
  // files PostgreSQL has marked ready, so for any other file (a manual push) waiting would only cost time.
  const markedReady = existsSync(join(dirname(resolve(path)), 'archive_status', `${name}.ready`));
  const deadline = Date.now() + PUSHER_WAIT_MS;
  while (marker === null && markedReady && Date.now() < deadline && runningPusher(spoolDir, cluster) !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    marker = readMarker(spoolDir, cluster, name);
  }
  if (!marker || marker.repo !== repo) return false;
  const sha256 = createHash('sha256').update(readFileSync(resolve(path))).digest('hex');
  removeMarker(spoolDir, cluster, name);
  return sha256 === marker.sha256;
}

function fetchFromPrefetch(positional: readonly string[], settings: Settings): boolean {
  const [name, destination] = positional;
  if (name === undefined || destination === undefined || positional.length !== 2) return false;
  if (!/^[0-9A-F]{24}$/.test(name)) return false;
  const dir = prefetchDir(settings.spoolDir, settings.cluster, process.cwd());
  return takePrefetched(dir, { repo: repositoriesKey(walFetchSources(settings)), cluster: settings.cluster }, name, resolve(destination));
}
