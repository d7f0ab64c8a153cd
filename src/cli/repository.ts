import type { Settings } from '../config/resolve-settings.js';
import { UsageError } from '../errors.js';
import { RepositoryLayout } from '../repo/layout.js';
import { withObjectLock } from '../repo/object-lock.js';
import type { ObjectStore } from '../storage/object-store.js';
import { openStore } from '../storage/open-store.js';
import { redactUrl } from '../storage/redact.js';

/** The repository the settings name: its store (the S3 driver loads on first use) and the cluster's layout in it. */
export function openRepository(settings: Settings): { store: ObjectStore; layout: RepositoryLayout } {
  let layout: RepositoryLayout;
  try {
    layout = new RepositoryLayout(settings.cluster);
  } catch (err) {
    throw new UsageError((err as Error).message, 'cluster names use letters, digits, dot, dash and underscore');
  }
  const store = openStore(settings.repo, {
    s3Endpoint: settings.s3Endpoint,
    s3ForcePathStyle: settings.s3ForcePathStyle,
    s3Region: settings.s3Region,
    s3TimeoutMs: settings.s3TimeoutMs,
    s3Attempts: settings.s3Attempts,
    s3ObjectLock: settings.objectLock !== undefined,
  });
  if (settings.objectLock === undefined) return { store, layout };
  // The policy says how long things are kept; it is read (YAML, the schema) only when something is first stored.
  const policy = async () => (await import('../config/policy.js')).loadPolicy(settings.policy).retention;
  return { store: withObjectLock(store, layout, settings.objectLock, policy), layout };
}

/**
 * The store as its conditional-write probe names it: the same bucket behind another endpoint (a proxy, a migration)
 * is another store as far as conditional writes go (src/repo/store-probe.ts).
 */
export function storeIdentity(store: ObjectStore, settings: Settings): string {
  return settings.s3Endpoint ? `${store.location} at ${redactUrl(settings.s3Endpoint)}` : store.location;
}
