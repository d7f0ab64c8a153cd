import type { Readable } from 'node:stream';
import type { BucketObjectLock, GetOptions, ListOptions, ObjectInfo, ObjectRetention, ObjectStore, PendingWrite, PutBody, PutOptions, PutResult } from './object-store.js';

/**
 * An ObjectStore whose driver is created on first use. archive_command and restore_command start pgdr once per WAL
 * file, and a run that ends on the fast path (or fails before touching storage) should not load a storage SDK.
 */
export function createLazyStore(location: string, create: () => Promise<ObjectStore>): ObjectStore {
  let driver: Promise<ObjectStore> | undefined;
  const store = (): Promise<ObjectStore> => (driver ??= create());
  return {
    location,
    put: async (key: string, body: PutBody, options?: PutOptions): Promise<PutResult> => (await store()).put(key, body, options),
    get: async (key: string, options?: GetOptions): Promise<Readable> => (await store()).get(key, options),
    getBuffer: async (key: string): Promise<Buffer> => (await store()).getBuffer(key),
    head: async (key: string): Promise<ObjectInfo | null> => (await store()).head(key),
    list: (prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> => ({
      async *[Symbol.asyncIterator]() {
        yield* (await store()).list(prefix, options);
      },
    }),
    listPrefixes: (prefix: string): AsyncIterable<string> => ({
      async *[Symbol.asyncIterator]() {
        yield* (await store()).listPrefixes(prefix);
      },
    }),
    delete: async (keys: readonly string[]): Promise<void> => (await store()).delete(keys),
    listPendingWrites: (prefix: string): AsyncIterable<PendingWrite> => ({
      async *[Symbol.asyncIterator]() {
        yield* (await store()).listPendingWrites(prefix);
      },
    }),
    abortPendingWrite: async (write: PendingWrite): Promise<void> => (await store()).abortPendingWrite(write),
    objectLock: async (): Promise<BucketObjectLock> => {
      const driver = await store();
      return driver.objectLock ? driver.objectLock() : { enabled: false, defaultRetention: null };
    },
    extendRetention: async (key: string, retention: ObjectRetention): Promise<void> => {
      const driver = await store();
      if (!driver.extendRetention) throw new Error(`${location} has no Object Lock: cannot extend the retention of ${key}`);
      return driver.extendRetention(key, retention);
    },
    close: async (): Promise<void> => {
      if (driver) await (await driver).close();
    },
  };
}
