import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Etcd3, type IOptions } from 'etcd3';
import { z } from 'zod';
import { RepositoryError, ServiceError, errorMessage } from '../errors.js';
import { LockHeldError, type LockOptions, type RepositoryLock } from '../repo/lock.js';
import type { EtcdConnection } from './connection.js';

/**
 * A lock kept in etcd, for repositories on stores that ignore conditional writes (where a lock object is not
 * exclusive). The key is created only if absent (a transaction comparing its create revision with 0) and carries a
 * lease: etcd removes it by itself once the holder stops renewing, so a killed holder blocks others only for the
 * lease's TTL. The key names the repository location and cluster, so every pgdr working on one repository, and
 * nothing else, meets at the same key.
 *
 *   /pgdr/locks/<sha256 of the repository location, 16 hex>/<cluster>/<name>   {"id","purpose","host","pid","acquiredAt"}
 */
const HolderSchema = z.object({ id: z.string(), purpose: z.string(), host: z.string(), pid: z.number(), acquiredAt: z.string() });

export function etcdLockKey(location: string, cluster: string, name: string): string {
  const repository = createHash('sha256').update(location).digest('hex').slice(0, 16);
  return `/pgdr/locks/${repository}/${cluster}/${name}`;
}

export async function acquireEtcdLock(
  connection: EtcdConnection,
  target: { location: string; cluster: string },
  name: string,
  purpose: string,
  options: LockOptions = {},
): Promise<RepositoryLock> {
  const ttlSeconds = Math.max(5, Math.round((options.ttlMs ?? 120_000) / 1000));
  const waitMs = options.waitMs ?? 0;
  const pollMs = options.pollMs ?? 1000;
  const key = etcdLockKey(target.location, target.cluster, name);
  const id = randomUUID();
  const client = new Etcd3(clientOptions(connection));
  const deadline = Date.now() + waitMs;
  let lease;
  try {
    lease = client.lease(ttlSeconds);
    const leaseId = await lease.grant();
    const body = JSON.stringify({ id, purpose, host: hostname(), pid: process.pid, acquiredAt: new Date().toISOString() });
    for (;;) {
      const result = await client.if(key, 'Create', '==', 0).then(client.put(key).value(body).lease(leaseId)).else(client.get(key)).commit();
      if (result.succeeded) break;
      if (Date.now() >= deadline) {
        const holder = describeHolder(result.responses[0]?.response_range?.kvs?.[0]?.value);
        throw new LockHeldError(
          `cluster "${target.cluster}" is locked in etcd (${key}) for ${holder}`,
          `wait for it to finish; if that process is gone, etcd drops the lock within ${ttlSeconds} s`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(deadline - Date.now(), 10))));
    }
  } catch (err) {
    await lease?.revoke().catch(() => undefined);
    client.close();
    if (err instanceof LockHeldError) throw err;
    throw new ServiceError(`cannot take the ${name} lock in etcd (${connection.endpoints.join(', ')}): ${errorMessage(err)}`, 'check that etcd answers (etcdctl endpoint health) and the PGDR_ETCD_* credentials', err);
  }

  let released = false;
  let rejectLost: (err: RepositoryError) => void = () => undefined;
  const lost = new Promise<never>((_resolve, reject) => {
    rejectLost = reject;
  });
  lost.catch(() => undefined);
  // The lease is renewed in the background; when etcd can no longer be reached for its TTL, the lock is gone.
  lease.on('lost', (err) => {
    if (released) return;
    rejectLost(new RepositoryError(`the ${name} lock in etcd was lost while pgdr held it (${errorMessage(err)})`, 'check that etcd is reachable; another pgdr process may now hold the lock'));
  });
  return {
    key,
    lost,
    async release() {
      if (released) return;
      released = true;
      try {
        await lease.revoke();
      } catch {
        // the lease then expires on its own
      } finally {
        client.close();
      }
    },
  };
}

function describeHolder(value: Buffer | undefined | null): string {
  if (value == null) return 'another process';
  try {
    const holder = HolderSchema.parse(JSON.parse(value.toString('utf8')));
    return `${holder.purpose} by ${holder.host} pid ${holder.pid} since ${holder.acquiredAt}`;
  } catch {
    return 'another process';
  }
}

function clientOptions(connection: EtcdConnection): IOptions {
  const options: IOptions = { hosts: connection.endpoints, dialTimeout: 10_000, defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 10_000 }) };
  if (connection.tls !== undefined) options.credentials = { rootCertificate: connection.tls.ca as Buffer, privateKey: connection.tls.key, certChain: connection.tls.cert };
  if (connection.auth !== undefined) options.auth = { username: connection.auth.username, password: connection.auth.password };
  return options;
}
