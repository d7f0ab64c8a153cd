import { basename, dirname, join, resolve } from 'node:path';
import type { Settings } from '../config/resolve-settings.js';
import type { RunningCommand } from '../process/run-command.js';
import { repositoriesKey, repositoryLabel, walPushTargets, type RepositorySettings } from '../config/repositories.js';
import type { RepositoryLayout } from '../repo/layout.js';
import { conditionalWriteSupport } from '../repo/store-probe.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ensurePusher, readyBesides, runPusher } from '../wal/background-pusher.js';
import { pushWal, type WalPushOptions, type WalPushOutcome } from '../wal/push.js';
import { pgdrExecutable } from './executable.js';
import { openRepositoryAt, storeIdentity } from './repository.js';

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
  const repositories = openWalTargets(settings);
  try {
    const outcome = await pushWal(path, await walPushOptions(settings, repositories, io.log), io.compression);
    const pgWalDir = dirname(resolve(path));
    if (settings.archiveLookahead > 0 && readyBesides(pgWalDir, basename(path))) {
      ensurePusher(settings.spoolDir, settings.cluster, [pgdrExecutable(), 'wal', 'push-ahead', pgWalDir, ...repositoryArgs(settings, io.configFile)], process.env);
    }
    return outcome;
  } finally {
    await Promise.all(repositories.map((r) => r.store.close()));
  }
}

/** The body of `pgdr wal push-ahead PG_WAL`: the background pusher a push starts (src/wal/background-pusher.ts). */
export async function walPushAheadCommand(pgWalDir: string, settings: Settings, io: Pick<WalPushIo, 'log'>): Promise<void> {
  const repositories = openWalTargets(settings);
  try {
    await runPusher(pgWalDir, await walPushOptions(settings, repositories, io.log));
  } finally {
    await Promise.all(repositories.map((r) => r.store.close()));
  }
}

interface OpenedTarget {
  repository: RepositorySettings;
  store: ObjectStore;
  layout: RepositoryLayout;
}

/** Every repository that receives WAL (one without `repositories:`, or with --repo), opened. */
function openWalTargets(settings: Settings): OpenedTarget[] {
  return walPushTargets(settings).map((repository) => ({ repository, ...openRepositoryAt(repository, settings) }));
}

export async function walPushOptions(settings: Settings, repositories: readonly OpenedTarget[], log: (message: string) => void): Promise<WalPushOptions> {
  const targets = await Promise.all(
    repositories.map(async ({ repository, store, layout }) => {
      // Asked once per probe interval; the spool keeps a copy so most pushes do not read the repository for it.
      const probe = await conditionalWriteSupport(store, layout, {
        identity: storeIdentity(store, repository),
        intervalMs: settings.storeProbeIntervalMs,
        log,
        cacheFile: join(settings.spoolDir, layout.cluster, repository.name === undefined ? 'store-probe.json' : `store-probe-${repository.name}.json`),
      });
      return {
        store,
        id: `${repository.url} ${repository.s3Endpoint ?? ''}`.trim(),
        label: repositoryLabel(repository),
        storeIgnoresConditions: probe.conditionalWrites === 'ignored',
        // A repository with recipients of its own gets WAL encrypted to them (the others: the global ones).
        ...(repository.encryptRecipients.length > 0 ? { encryptTo: repository.encryptRecipients } : {}),
      };
    }),
  );
  return {
    targets,
    layout: repositories[0]!.layout,
    compressLevel: settings.compressLevel,
    spoolDir: settings.spoolDir,
    repoUrl: repositoriesKey(repositories.map((r) => r.repository)),
    encryptTo: settings.encryptRecipients,
    ...(settings.identityFile === undefined ? {} : { identityFile: settings.identityFile }),
    log,
  };
}

/** The settings the background pusher needs to reach the same repositories (credentials stay in the environment and files). */
function repositoryArgs(settings: Settings, configFile: string | undefined): string[] {
  const args = ['--cluster', settings.cluster, '--spool-dir', settings.spoolDir, '--compress-level', String(settings.compressLevel)];
  const repository = settings.repository;
  if (repository?.name !== undefined) args.push('--repo', repository.name);
  else if (repository !== undefined) {
    args.push('--repo', repository.url);
    if (repository.s3Endpoint) args.push('--s3-endpoint', repository.s3Endpoint);
    if (repository.s3ForcePathStyle) args.push('--s3-force-path-style');
  }
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
