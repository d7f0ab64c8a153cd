import type { StoreProbeRecord } from './store-probe.js';

/**
 * Where a lock is kept, decided from what the store does with conditional writes (pure). A lock object is only as
 * exclusive as the store's If-None-Match: on a store that ignores it, two processes both "create" the lock and both
 * go on. Then etcd, which Patroni clusters already run, keeps the lock; without etcd the command refuses, unless the
 * operator accepted the risk for a repository only one pgdr writes to.
 */
export type LockKeeper =
  | { kind: 'repository' }
  | { kind: 'etcd'; note: string }
  | { kind: 'repository-at-risk'; warning: string }
  | { kind: 'refuse' };

export function chooseLockKeeper(probe: StoreProbeRecord, options: { etcdConfigured: boolean; acceptRisk: boolean }): LockKeeper {
  if (probe.conditionalWrites === 'honoured') return { kind: 'repository' };
  if (options.etcdConfigured) return { kind: 'etcd', note: `${probe.location} ignores conditional writes: taking the lock in etcd` };
  if (options.acceptRisk) {
    return {
      kind: 'repository-at-risk',
      warning: `WARNING: ${probe.location} ignores conditional writes; the repository lock is not exclusive there (--accept-unconditional-writes)`,
    };
  }
  return { kind: 'refuse' };
}
