import { basename } from 'node:path';
import { loadSettings } from '../config/resolve-settings.js';
import type { RunningCommand } from '../process/run-command.js';
import { identityIsProtected } from '../stream/age-buffer.js';
import { startWalEncoding, walEncryptTo } from '../wal/encoding.js';
import { claimOwner } from '../wal/spool.js';
import { reportError } from './report-error.js';
import { parseWalCommandLine } from './wal-argv.js';
import { pushFromMarker } from './wal-fast-path.js';

/**
 * `pgdr wal push PATH` (and the background pusher it starts, `wal push-ahead PG_WAL`) without the command-line
 * framework: PostgreSQL starts it once per WAL segment and waits for it, so it loads only what a push needs
 * (node:fs, node:child_process and pgdr's own small modules; YAML and the config schema only with a config file, the
 * AWS SDK only for an s3:// repository). The push itself is the same code the full CLI runs (src/cli/wal-push.ts).
 * Returns undefined for a command line it does not read (see src/cli/wal-argv.ts), which the full CLI then handles.
 *
 * When no background pusher has stored the file already, zstd starts on it before the rest of the push is even
 * loaded: compressing is most of a push's work, it runs on its own core, and it has no effect until the checks
 * (segment header, cluster.json, the existing object) have passed and the frame is stored.
 */
export async function walPushEntry(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number | undefined> {
  const call = parseWalCommandLine(argv);
  if (call === null || call.command === 'fetch' || call.positional.length !== 1) return undefined;
  const path = call.positional[0]!;
  const log = (message: string) => process.stderr.write(`pgdr: ${message}\n`);
  let compression: RunningCommand | undefined;
  try {
    const loaded = await loadSettings(call.flags, env);
    // A push needs an identity only to compare a name already taken by an encrypted copy; a passphrase-protected one
    // would cost every push a second of scrypt, so a push goes without it, as a host that holds none does.
    const settings = loaded.identityFile !== undefined && identityIsProtected(loaded.identityFile) ? { ...loaded, identityFile: undefined } : loaded;
    if (call.command === 'push-ahead') {
      // The background pusher: the same lean modules, so it starts fast and stays small beside the pushes.
      const { walPushAheadCommand } = await import('./wal-push.js');
      await walPushAheadCommand(path, settings, { log });
      return 0;
    }
    let outcome: string;
    if (await pushFromMarker(path, settings)) {
      outcome = 'already-stored';
    } else {
      // A file another pgdr is pushing right now will be its to answer for: no work to start for it here.
      if (claimOwner(settings.spoolDir, settings.cluster, basename(path)) === undefined) {
        compression = startWalEncoding(path, settings.compressLevel, walEncryptTo(basename(path), settings.encryptRecipients));
      }
      const { walPushCommand } = await import('./wal-push.js');
      outcome = await walPushCommand(path, settings, {
        log,
        ...(call.flags.config ? { configFile: call.flags.config } : {}),
        ...(compression ? { compression } : {}),
      });
    }
    if (call.json) process.stdout.write(`${JSON.stringify({ file: path, outcome }, null, 2)}\n`);
    return 0;
  } catch (err) {
    return reportError(err, call.debug, call.json);
  } finally {
    // Used, or not wanted (the file was stored by someone else, or a check failed): nothing of it outlives the push.
    compression?.kill();
  }
}
