import { basename, dirname, join, resolve } from 'node:path';
import type { Settings } from '../config/resolve-settings.js';
import type { RunningCommand } from '../process/run-command.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { conditionalWriteSupport } from '../repo/store-probe.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ensurePusher, readyBesides, runPusher } from '../wal/background-pusher.js';
import { pushWal, type WalPushOptions, type WalPushOutcome } from '../wal/push.js';
import { pgdrExecutable } from './executable.js';
import { openRepository, storeIdentity } from './repository.js';

/**
 * The body of `pgdr wal push PATH`, shared by the full CLI (src/cli/wal.ts) and the dedicated entry that PostgreSQL's
 * archive_command goes through (src/cli/wal-push-entry.ts): store the file, then, when PostgreSQL has more files
 * waiting, make sure a background pusher works ahead on them (`wal push-ahead`, the same two ways).
 */
export interface WalPushIo {
  log(message: string): void;
  /** The --config file, passed on to the background pusher (PGDR_CONFIG reaches it through the environment). */
  configFile?: string;
  /** zstd already compressing the file (see pushWal). */
  compression?: RunningCommand;
}

export async function walPushCommand(path: string, settings: Settings, io: WalPushIo): Promise<WalPushOutcome> {
  const { store, layout } = openRepository(settings);
  try {
    const outcome = await pushWal(path, await walPushOptions(settings, store, layout, io.log), io.compression);
    const pgWalDir = dirname(resolve(path));
    if (settings.archiveLookahead > 0 && readyBesides(pgWalDir, basename(path))) {
      ensurePusher(settings.spoolDir, layout.cluster, [pgdrExecutable(), 'wal', 'push-ahead', pgWalDir, ...repositoryArgs(settings, io.configFile)], process.env);
    }
    return outcome;
  } finally {
    await store.close();
  }
}

/** The body of `pgdr wal push-ahead PG_WAL`: the background pusher a push starts (src/wal/background-pusher.ts). */
export async function walPushAheadCommand(pgWalDir: string, settings: Settings, io: Pick<WalPushIo, 'log'>): Promise<void> {
  const { store, layout } = openRepository(settings);
  try {
    await runPusher(pgWalDir, await walPushOptions(settings, store, layout, io.log));
  } finally {
    await store.close();
  }
}

export async function walPushOptions(settings: Settings, store: ObjectStore, layout: RepositoryLayout, log: (message: string) => void): Promise<WalPushOptions> {
  // Asked once per probe interval; the spool keeps a copy so most pushes do not read the repository for it.
  const probe = await conditionalWriteSupport(store, layout, {
    identity: storeIdentity(store, settings),
    intervalMs: settings.storeProbeIntervalMs,
    log,
    cacheFile: join(settings.spoolDir, layout.cluster, 'store-probe.json'),
  });
  return {
    storeIgnoresConditions: probe.conditionalWrites === 'ignored',
    store,
    layout,
    compressLevel: settings.compressLevel,
    spoolDir: settings.spoolDir,
    repoUrl: settings.repo,
    encryptTo: settings.encryptRecipients,
    ...(settings.identityFile === undefined ? {} : { identityFile: settings.identityFile }),
    log,
  };
}

/** The settings the background pusher needs to reach the same repository (credentials stay in the environment). */
function repositoryArgs(settings: Settings, configFile: string | undefined): string[] {
  const args = ['--repo', settings.repo, '--cluster', settings.cluster, '--spool-dir', settings.spoolDir, '--compress-level', String(settings.compressLevel)];
  if (settings.s3Endpoint) args.push('--s3-endpoint', settings.s3Endpoint);
  if (settings.s3ForcePathStyle) args.push('--s3-force-path-style');
  if (configFile) args.push('--config', resolve(configFile));
  // Under Object Lock the pusher writes with the same retention: its mode, margin and the policy it is computed from.
  if (settings.objectLock) {
    args.push('--object-lock-mode', settings.objectLock.mode, '--object-lock-margin', `${Math.round(settings.objectLock.marginMs / 1000)}s`);
    if (settings.policy) args.push('--policy', resolve(settings.policy));
  }
  // Public keys, safe on a command line; PGDR_ENCRYPT_RECIPIENTS reaches the pusher through the environment anyway.
  for (const recipient of settings.encryptRecipients) args.push('--encrypt-recipient', recipient);
  if (settings.identityFile) args.push('--identity-file', resolve(settings.identityFile));
  return args;
}
