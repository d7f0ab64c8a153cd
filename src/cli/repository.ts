import { objectLockFor, repositoryFor, repositoryLabel, type RepositoryContent, type RepositorySettings } from '../config/repositories.js';
import type { Settings } from '../config/resolve-settings.js';
import { UsageError } from '../errors.js';
import { RepositoryLayout } from '../repo/layout.js';
import { withObjectLock } from '../repo/object-lock.js';
import type { ObjectStore } from '../storage/object-store.js';
import { openStore } from '../storage/open-store.js';
import { redactUrl } from '../storage/redact.js';

/**
 * The repository the settings name: its store (the S3 driver loads on first use) and the cluster's layout in it.
 * With several configured and none named, the one that receives `content` (src/config/repositories.ts).
 */
export function openRepository(settings: Settings, content?: RepositoryContent, command = 'pgdr'): { store: ObjectStore; layout: RepositoryLayout } {
  return openRepositoryAt(repositoryFor(settings, content, command), settings);
}

/** One repository, with its own endpoint and credentials. */
export function openRepositoryAt(repository: RepositorySettings, settings: Settings): { store: ObjectStore; layout: RepositoryLayout } {
  let layout: RepositoryLayout;
  try {
    layout = new RepositoryLayout(settings.cluster);
  } catch (err) {
    throw new UsageError((err as Error).message, 'cluster names use letters, digits, dot, dash and underscore');
  }
  const objectLock = objectLockFor(repository, settings.objectLock);
  const store = openStore(repository.url, {
    s3Endpoint: repository.s3Endpoint,
    s3ForcePathStyle: repository.s3ForcePathStyle,
    s3Region: repository.s3Region,
    s3TimeoutMs: settings.s3TimeoutMs,
    s3Attempts: settings.s3Attempts,
    ...(repository.credentials === undefined
      ? {}
      : { s3Credentials: { repository: repositoryLabel(repository), file: repository.credentials.file, profile: repository.credentials.profile } }),
    s3ObjectLock: objectLock !== undefined,
  });
  if (objectLock === undefined) return { store, layout };
  // The policy says how long things are kept; it is read (YAML, the schema) only when something is first stored.
  const policy = async () => (await import('../config/policy.js')).loadPolicy(settings.policy).retention;
  return { store: withObjectLock(store, layout, objectLock, policy), layout };
}

/**
 * The settings as they apply to one repository: `repo` and the S3 settings are its own, it is the one named, and
 * what is written to it is encrypted to its own recipients and locked with its own Object Lock when it names them.
 */
export function settingsFor(settings: Settings, repository: RepositorySettings): Settings {
  return {
    ...settings,
    ...(repository.encryptRecipients.length > 0 ? { encryptRecipients: repository.encryptRecipients } : {}),
    objectLock: objectLockFor(repository, settings.objectLock),
    repo: repository.url,
    s3Endpoint: repository.s3Endpoint,
    s3ForcePathStyle: repository.s3ForcePathStyle,
    s3Region: repository.s3Region,
    repository,
  };
}

/**
 * The store as its conditional-write probe names it: the same bucket behind another endpoint (a proxy, a migration)
 * is another store as far as conditional writes go (src/repo/store-probe.ts).
 */
export function storeIdentity(store: ObjectStore, settings: Pick<Settings, 's3Endpoint'>): string {
  return settings.s3Endpoint ? `${store.location} at ${redactUrl(settings.s3Endpoint)}` : store.location;
}
