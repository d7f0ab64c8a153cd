import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { RepositoryError } from '../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type ObjectStore } from '../storage/object-store.js';
import type { RepositoryLayout } from './layout.js';

/**
 * A lock is an object created with a conditional write (S3 If-None-Match / fs link), so exactly one writer gets it
 * on any backend that honours the condition. It carries an expiry that the holder pushes forward while it works;
 * a lock whose holder died is taken over once expired, so a crash never blocks the repository for good.
 */
const LockSchema = z.object({
  id: z.string(),
  purpose: z.string(),
  host: z.string(),
  pid: z.number().int(),
  acquiredAt: z.iso.datetime(),
  expiresAt: z.iso.datetime(),
});
type LockBody = z.infer<typeof LockSchema>;

/** The lock is held by someone else (as opposed to the repository failing while pgdr asked). */
export class LockHeldError extends RepositoryError {}

export interface RepositoryLock {
  readonly key: string;
  /** Rejects (never resolves) once the lock cannot be kept: the repository is unreachable or someone took it over. */
  readonly lost: Promise<never>;
  release(): Promise<void>;
}

/**
 * Takes named locks for one cluster. Commands receive one instead of calling acquireLock, because where a lock is
 * kept depends on the store: the repository when it honours conditional writes, etcd when it does not (src/cli
 * chooses, after src/repo/store-probe.ts asked the store).
 */
export type Locker = (name: string, purpose: string, options?: LockOptions) => Promise<RepositoryLock>;

/** Locks as objects in the repository itself. */
export function repositoryLocker(store: ObjectStore, layout: RepositoryLayout): Locker {
  return (name, purpose, options) => acquireLock(store, layout, name, purpose, options);
}

export interface LockOptions {
  /** How long a lock stays valid without a refresh. */
  ttlMs?: number;
  /** How long to wait for a held lock before failing; 0 fails at once. */
  waitMs?: number;
  pollMs?: number;
  /** How often the holder pushes the expiry forward (default: a third of the TTL, at most 10 s). */
  refreshMs?: number;
  now?: () => Date;
}

export async function acquireLock(
  store: ObjectStore,
  layout: RepositoryLayout,
  name: string,
  purpose: string,
  options: LockOptions = {},
): Promise<RepositoryLock> {
  const ttlMs = options.ttlMs ?? 120_000;
  const waitMs = options.waitMs ?? 0;
  const pollMs = options.pollMs ?? 1000;
  const now = options.now ?? (() => new Date());
  const key = layout.lock(name);
  const id = randomUUID();
  const deadline = Date.now() + waitMs;
  const body = (): Buffer => {
    const at = now();
    const lock: LockBody = {
      id,
      purpose,
      host: hostname(),
      pid: process.pid,
      acquiredAt: at.toISOString(),
      expiresAt: new Date(at.getTime() + ttlMs).toISOString(),
    };
    return Buffer.from(`${JSON.stringify(lock)}\n`);
  };

  for (;;) {
    try {
      await store.put(key, { kind: 'buffer', data: body() }, { ifNoneMatch: true });
      break;
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
    }
    const holder = await readLock(store, key);
    if (holder === null) continue; // released between our write and read
    if (holder === 'unreadable' || new Date(holder.expiresAt) < now() || holderIsGoneFromThisHost(holder)) {
      // Expired, held by a process of this host that no longer exists, or garbage: remove it and race for it
      // again with a conditional write.
      await store.delete([key]);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new LockHeldError(
        `cluster "${layout.cluster}" is locked for ${holder.purpose} by ${holder.host} pid ${holder.pid} since ${holder.acquiredAt}`,
        `wait for it to finish; if that process is gone the lock expires at ${holder.expiresAt}`,
      );
    }
    await sleep(Math.min(pollMs, Math.max(deadline - Date.now(), 10)));
  }

  let released = false;
  let lostError: RepositoryError | undefined;
  let rejectLost: (err: RepositoryError) => void = () => undefined;
  const lost = new Promise<never>((_resolve, reject) => {
    rejectLost = reject;
  });
  lost.catch(() => undefined);
  const markLost = (err: RepositoryError): void => {
    if (lostError || released) return;
    lostError = err;
    clearInterval(refresh);
    rejectLost(err);
  };
  // The refresh doubles as a heartbeat with the repository: work that cannot keep its lock must stop, both because
  // another process may take an expired lock and because the storage it writes to has gone away.
  const refresh = setInterval(() => {
    void (async () => {
      const holder = await readLock(store, key);
      if (holder === null || holder === 'unreadable' || holder.id !== id) {
        markLost(new RepositoryError(`the ${name} lock of cluster "${layout.cluster}" was taken over or removed while pgdr held it`, 'another pgdr process may be running against this cluster; check the repository locks'));
        return;
      }
      await store.put(key, { kind: 'buffer', data: body() });
    })().catch((err: unknown) => {
      markLost(
        err instanceof RepositoryError
          ? err
          : new RepositoryError(`cannot refresh the ${name} lock in ${store.location}: ${(err as Error).message}`, 'check that the repository is reachable', err),
      );
    });
  }, options.refreshMs ?? Math.min(ttlMs / 3, 10_000));
  refresh.unref();
  return {
    key,
    lost,
    async release() {
      if (released) return;
      released = true;
      clearInterval(refresh);
      if (lostError) return;
      const holder = await readLock(store, key).catch(() => null);
      if (holder !== null && holder !== 'unreadable' && holder.id === id) await store.delete([key]);
    },
  };
}

async function readLock(store: ObjectStore, key: string): Promise<LockBody | null | 'unreadable'> {
  try {
    const raw = await store.getBuffer(key);
    const parsed = LockSchema.safeParse(JSON.parse(raw.toString('utf8')));
    return parsed.success ? parsed.data : 'unreadable';
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return null;
    if (err instanceof SyntaxError) return 'unreadable';
    throw err;
  }
}

/** A lock taken on this host by a pid that is not running any more (a killed backup) need not wait for expiry. */
function holderIsGoneFromThisHost(holder: LockBody): boolean {
  if (holder.host !== hostname() || holder.pid === process.pid) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
