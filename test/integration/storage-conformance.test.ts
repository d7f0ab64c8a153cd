import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RepositoryError } from '../../src/errors.js';
import { createFsStore } from '../../src/storage/fs-store.js';
import {
  ObjectExistsError,
  ObjectNotFoundError,
  type ObjectInfo,
  type ObjectStore,
  type PendingWrite,
} from '../../src/storage/object-store.js';
import { openStore } from '../../src/storage/open-store.js';
import { createS3Store, type S3StoreOptions } from '../../src/storage/s3-store.js';
import { registerCleanup, removeDirQuietly, stopAll } from '../harness/cleanup.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { freePort } from '../harness/ports.js';

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

async function sha256OfStream(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function collect(iterable: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function keysOf(store: ObjectStore, prefix: string): Promise<string[]> {
  return (await collect(store.list(prefix))).map((o) => o.key);
}

/** Lexical order as S3 defines it: by UTF-8 bytes. */
function byteSorted(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/**
 * A large body made of 1 MiB chunks that differ from each other (so a dropped or repeated part changes the hash),
 * cheap to regenerate for every open().
 */
function generatedBody(totalBytes: number, options: { onChunk?: (producedBytes: number) => void; hash?: boolean } = {}) {
  const block = randomBytes(MiB);
  function* chunks(onChunk?: (producedBytes: number) => void): Generator<Buffer> {
    let produced = 0;
    let index = 0;
    while (produced < totalBytes) {
      const size = Math.min(MiB, totalBytes - produced);
      const chunk = Buffer.from(block.subarray(0, size));
      chunk.writeUInt32BE(index++, 0);
      produced += size;
      yield chunk;
      onChunk?.(produced);
    }
  }
  const hash = createHash('sha256');
  if (options.hash !== false) for (const chunk of chunks()) hash.update(chunk);
  return {
    sha256: hash.digest('hex'),
    bytes: totalBytes,
    open: () => Readable.from(chunks(options.onChunk), { objectMode: false }),
  };
}

/** A source that produces `bytes` and then fails, like a pg_basebackup that died half way. */
function failingSource(bytes: number, failure: Error): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    let produced = 0;
    while (produced < bytes) {
      produced += MiB;
      yield randomBytes(MiB);
    }
    throw failure;
  }
  return Readable.from(chunks(), { objectMode: false });
}

async function putMany(store: ObjectStore, keys: string[], concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < keys.length) {
        const key = keys[next++] as string;
        await store.put(key, { kind: 'buffer', data: Buffer.from(key) });
      }
    }),
  );
}

/**
 * A TCP proxy in front of the real MinIO that can cut one connection after it has carried some request bytes:
 * the fault a real server will not produce on demand (a connection reset in the middle of an upload).
 */
interface FaultyProxy {
  endpoint: string;
  /** The next connection to carry more than `bytes` request bytes is reset, once. */
  resetOnceAfter(bytes: number): void;
  resets: number;
  close(): Promise<void>;
}

async function startFaultyProxy(target: URL): Promise<FaultyProxy> {
  let armedAt: number | undefined;
  const sockets = new Set<Socket>();
  const proxy: FaultyProxy = {
    endpoint: '',
    resets: 0,
    resetOnceAfter: (bytes) => {
      armedAt = bytes;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    let carried = 0;
    client.on('data', (chunk: Buffer) => {
      carried += chunk.length;
      if (armedAt !== undefined && carried > armedAt) {
        armedAt = undefined;
        proxy.resets++;
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  proxy.endpoint = `http://127.0.0.1:${address.port}`;
  registerCleanup('faulty proxy', () => proxy.close());
  return proxy;
}

// ---------------------------------------------------------------------------------------------------------------
// The suite every driver must pass

interface StoreFixture {
  store: ObjectStore;
  /** Leaves what a crash in the middle of a put of `key` would leave behind. */
  simulateCrashedPut(key: string): Promise<void>;
  /**
   * Uploads in progress that the store still holds for these keys (multipart uploads, temp files beside them),
   * not counting those simulateCrashedPut left on purpose, which must show up.
   */
  pendingUploads(keys: string[]): Promise<string[]>;
  /** A place for scratch files outside the store. */
  scratchDir: string;
}

function describeObjectStoreConformance(driver: string, setup: () => Promise<StoreFixture>): void {
  describe(`ObjectStore conformance: ${driver}`, () => {
    let fixture: StoreFixture;
    let store: ObjectStore;

    beforeAll(async () => {
      fixture = await setup();
      store = fixture.store;
    });

    afterAll(async () => {
      await store?.close();
    });

    it('round-trips a buffer, reports its size and progress', async () => {
      const data = randomBytes(100_000);
      const progress: number[] = [];
      const result = await store.put('rt/buffer.bin', { kind: 'buffer', data }, { onProgress: (n) => progress.push(n) });
      expect(result).toEqual({ key: 'rt/buffer.bin', size: data.length });
      expect(progress.at(-1)).toBe(data.length);
      expect(sha256(await store.getBuffer('rt/buffer.bin'))).toBe(sha256(data));
      expect(sha256(await readAll(await store.get('rt/buffer.bin')))).toBe(sha256(data));
      const info = await store.head('rt/buffer.bin');
      expect(info?.key).toBe('rt/buffer.bin');
      expect(info?.size).toBe(data.length);
      expect(info?.lastModified).toBeInstanceOf(Date);
      expect(Math.abs(Date.now() - (info?.lastModified.getTime() ?? 0))).toBeLessThan(10 * 60_000);
    });

    it('round-trips an empty object', async () => {
      await store.put('rt/empty', { kind: 'buffer', data: Buffer.alloc(0) });
      expect((await store.getBuffer('rt/empty')).length).toBe(0);
      expect((await readAll(await store.get('rt/empty'))).length).toBe(0);
      expect((await store.head('rt/empty'))?.size).toBe(0);
    });

    it('replaces an object on a plain put', async () => {
      await store.put('rt/replaced', { kind: 'buffer', data: Buffer.from('first') });
      await store.put('rt/replaced', { kind: 'buffer', data: Buffer.from('second, longer') });
      expect((await store.getBuffer('rt/replaced')).toString()).toBe('second, longer');
    });

    it('round-trips a file body', async () => {
      const data = randomBytes(3 * MiB + 17);
      const path = join(fixture.scratchDir, 'file-body.bin');
      await writeFile(path, data);
      const progress: number[] = [];
      const result = await store.put('rt/file.bin', { kind: 'file', path }, { onProgress: (n) => progress.push(n) });
      expect(result.size).toBe(data.length);
      expect(progress.at(-1)).toBe(data.length);
      expect(await sha256OfStream(await store.get('rt/file.bin'))).toEqual({ sha256: sha256(data), bytes: data.length });
    });

    it('fails a file put whose file does not exist with a RepositoryError', async () => {
      const missing = join(fixture.scratchDir, 'no-such-file');
      await expect(store.put('rt/missing-file', { kind: 'file', path: missing })).rejects.toBeInstanceOf(RepositoryError);
      expect(await store.head('rt/missing-file')).toBeNull();
    });

    it('round-trips a 40 MiB stream (multipart on S3) with its sha256 intact', async () => {
      const body = generatedBody(40 * MiB + 12_345);
      const progress: number[] = [];
      const result = await store.put(
        'rt/large.bin',
        { kind: 'stream', open: body.open },
        { onProgress: (n) => progress.push(n) },
      );
      expect(result.size).toBe(body.bytes);
      expect(progress.length).toBeGreaterThan(0);
      expect(progress.at(-1)).toBe(body.bytes);
      expect((await store.head('rt/large.bin'))?.size).toBe(body.bytes);
      expect(await sha256OfStream(await store.get('rt/large.bin'))).toEqual({ sha256: body.sha256, bytes: body.bytes });
    });

    it('reads inclusive byte ranges', async () => {
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      await store.put('range/obj', { kind: 'buffer', data });
      expect(await readAll(await store.get('range/obj', { range: { start: 0, end: 0 } }))).toEqual(data.subarray(0, 1));
      expect(await readAll(await store.get('range/obj', { range: { start: 10, end: 19 } }))).toEqual(data.subarray(10, 20));
      expect(await readAll(await store.get('range/obj', { range: { start: 990, end: 999 } }))).toEqual(data.subarray(990));
      // An end past the object is cut at the object's end, as HTTP ranges are.
      expect(await readAll(await store.get('range/obj', { range: { start: 900, end: 5000 } }))).toEqual(data.subarray(900));
      await expect(store.get('range/obj', { range: { start: 1000, end: 1010 } })).rejects.toBeInstanceOf(RepositoryError);
      await expect(store.get('range/missing', { range: { start: 0, end: 1 } })).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('answers null from head and ObjectNotFoundError from get/getBuffer for a missing key', async () => {
      expect(await store.head('missing/key')).toBeNull();
      await expect(store.getBuffer('missing/key')).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.get('missing/key')).rejects.toBeInstanceOf(ObjectNotFoundError);
      const err = await store.getBuffer('missing/other').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ObjectNotFoundError);
      expect((err as ObjectNotFoundError).key).toBe('missing/other');
      // A "directory" is not an object.
      await store.put('missing/dir/child', { kind: 'buffer', data: Buffer.from('x') });
      expect(await store.head('missing/dir')).toBeNull();
      await expect(store.getBuffer('missing/dir')).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('lists in byte order, by prefix, including prefixes that stop mid-name', async () => {
      const keys = [
        'list/a-c',
        'list/a.b',
        'list/a0',
        'list/a/b',
        'list/a/b-c/d',
        'list/a/bc',
        'list/b/c/d/e',
        'list/wal/000000010000000000000001/x',
        'list/wal/0000000100000000000000A1.zst',
        'list/wal/0000000100000000000000A2.zst',
        'list/wal/000000010000000000000100.zst',
        'list/wal/000000020000000000000001.zst',
        'list/Z',
        'list/\u00e9t\u00e9',
      ];
      await putMany(store, keys);
      const listed = await collect(store.list('list/'));
      expect(listed.map((o) => o.key)).toEqual(byteSorted(keys));
      for (const item of listed) {
        expect(item.size).toBe(Buffer.byteLength(item.key));
        expect(item.lastModified).toBeInstanceOf(Date);
      }
      expect(await keysOf(store, 'list/a')).toEqual(byteSorted(keys.filter((k) => k.startsWith('list/a'))));
      expect(await keysOf(store, 'list/a/')).toEqual(['list/a/b', 'list/a/b-c/d', 'list/a/bc']);
      expect(await keysOf(store, 'list/a/b')).toEqual(['list/a/b', 'list/a/b-c/d', 'list/a/bc']);
      expect(await keysOf(store, 'list/wal/0000000100000000000000')).toEqual([
        'list/wal/000000010000000000000001/x',
        'list/wal/0000000100000000000000A1.zst',
        'list/wal/0000000100000000000000A2.zst',
      ]);
      expect(await keysOf(store, 'list/wal/00000001')).toHaveLength(4);
      expect(await keysOf(store, 'list/wal/0000000100000000000000A1.zst')).toEqual(['list/wal/0000000100000000000000A1.zst']);
      expect(await keysOf(store, 'list/nothing/')).toEqual([]);
      expect(await keysOf(store, 'list/nothing')).toEqual([]);
      expect(await keysOf(store, 'no-such-top-level/')).toEqual([]);
      expect(await keysOf(store, 'lis')).toEqual(byteSorted(keys));
      const everything = await keysOf(store, '');
      expect(everything).toEqual(byteSorted(everything));
      expect(everything).toEqual(expect.arrayContaining(keys));
    });

    it('lists from a startAfter key in byte order, wherever it falls among keys and directories', async () => {
      const keys = [
        'after/a-c',
        'after/a.b',
        'after/a/b',
        'after/a/b-c/d',
        'after/a/bc',
        'after/b/c/d/e',
        'after/wal/00000001/000000010000000000000005.00000028.backup.zst',
        'after/wal/00000001/000000010000000000000005.zst',
        'after/wal/00000001/000000010000000000000006.zst',
        'after/wal/00000001/0000000100000000000000FF.zst',
        'after/wal/00000001/000000010000000100000000.zst',
        'after/wal/00000002/00000002.history.zst',
        'after/Z',
      ];
      await putMany(store, keys);
      const sorted = byteSorted(keys);
      const listedAfter = async (prefix: string, startAfter: string): Promise<string[]> =>
        (await collect(store.list(prefix, { startAfter }))).map((o) => o.key);
      const expected = (prefix: string, startAfter: string): string[] =>
        sorted.filter((k) => k.startsWith(prefix) && Buffer.compare(Buffer.from(k), Buffer.from(startAfter)) > 0);
      const cases: Array<[string, string]> = [
        // An existing key is itself left out.
        ['after/', 'after/a/b'],
        // Between keys, before all, after all, and mid-name inside a directory's own name.
        ['after/', 'after/a/b-'],
        ['after/', 'after/'],
        ['after/', 'after/zzz'],
        ['after/', 'after/a'],
        ['after/', 'after/a/'],
        ['after/', 'after/b/c'],
        // The way health lists WAL: from a name just before the segment it looks for.
        ['after/wal/00000001/', 'after/wal/00000001/000000010000000000000005'],
        ['after/wal/00000001/', 'after/wal/00000001/000000010000000000000005.zst'],
        ['after/wal/00000001/', 'after/wal/00000001/0000000100000000000000FF'],
        // A startAfter outside the prefix, before and after it.
        ['after/wal/', 'after/a'],
        ['after/a/', 'after/b'],
      ];
      for (const [prefix, startAfter] of cases) {
        expect({ prefix, startAfter, keys: await listedAfter(prefix, startAfter) }).toEqual({ prefix, startAfter, keys: expected(prefix, startAfter) });
      }
      expect(await listedAfter('after/wal/00000001/', 'after/wal/00000001/000000010000000000000005')).toEqual([
        'after/wal/00000001/000000010000000000000005.00000028.backup.zst',
        'after/wal/00000001/000000010000000000000005.zst',
        'after/wal/00000001/000000010000000000000006.zst',
        'after/wal/00000001/0000000100000000000000FF.zst',
        'after/wal/00000001/000000010000000100000000.zst',
      ]);
      // Sizes and times come with keys listed this way too.
      for (const item of await collect(store.list('after/', { startAfter: 'after/a' }))) {
        expect(item.size).toBe(Buffer.byteLength(item.key));
        expect(item.lastModified).toBeInstanceOf(Date);
      }
    });

    it('lists the prefixes one level below a prefix, as S3 common prefixes with delimiter /', async () => {
      await putMany(store, [
        'fleet/alpha/cluster.json',
        'fleet/alpha/wal/00000001/000000010000000000000001.zst',
        'fleet/beta/backups/20240503T090000Z/manifest.json',
        'fleet/beta-2/x',
        'fleet/gamma.json',
        'fleet/a/b/c/d',
        'fleet/\u00e9t\u00e9/x',
      ]);
      const prefixesOf = async (prefix: string): Promise<string[]> => {
        const out: string[] = [];
        for await (const p of store.listPrefixes(prefix)) out.push(p);
        return out;
      };
      expect(await prefixesOf('fleet/')).toEqual(
        byteSorted(['fleet/a/', 'fleet/alpha/', 'fleet/beta/', 'fleet/beta-2/', 'fleet/\u00e9t\u00e9/']),
      );
      expect(await prefixesOf('fleet/alpha/')).toEqual(['fleet/alpha/wal/']);
      expect(await prefixesOf('fleet/be')).toEqual(byteSorted(['fleet/beta/', 'fleet/beta-2/']));
      expect(await prefixesOf('fleet/a/b/')).toEqual(['fleet/a/b/c/']);
      expect(await prefixesOf('fleet/gamma.json')).toEqual([]);
      expect(await prefixesOf('fleet/nothing/')).toEqual([]);
      // A "directory" whose last object was deleted is no prefix any more.
      await store.delete(['fleet/beta-2/x']);
      expect(await prefixesOf('fleet/')).not.toContain('fleet/beta-2/');
      const top = await prefixesOf('');
      expect(top).toEqual(byteSorted(top));
      expect(top).toEqual(expect.arrayContaining(['fleet/', 'after/', 'list/']));
    });

    it('deletes idempotently, and in batches larger than one S3 request', async () => {
      await store.put('del/one', { kind: 'buffer', data: Buffer.from('1') });
      await store.put('del/deep/er/two', { kind: 'buffer', data: Buffer.from('2') });
      await store.put('del/keep', { kind: 'buffer', data: Buffer.from('3') });
      await store.delete(['del/one', 'del/deep/er/two', 'del/never-existed', 'del/one']);
      await store.delete(['del/one']);
      await store.delete([]);
      expect(await store.head('del/one')).toBeNull();
      expect(await keysOf(store, 'del/')).toEqual(['del/keep']);

      const many = Array.from({ length: 1_100 }, (_, i) => `batch/${String(i).padStart(5, '0')}`);
      await putMany(store, many);
      expect(await keysOf(store, 'batch/')).toHaveLength(many.length);
      await store.delete(many);
      expect(await keysOf(store, 'batch/')).toEqual([]);
      // The prefix can be used again after its directory was pruned.
      await store.put('batch/again', { kind: 'buffer', data: Buffer.from('again') });
      expect(await keysOf(store, 'batch/')).toEqual(['batch/again']);
    });

    it('refuses to replace an object with ifNoneMatch, for every body kind, leaving the first content', async () => {
      const first = Buffer.from('first content');
      await store.put('cond/buffer', { kind: 'buffer', data: first }, { ifNoneMatch: true });
      await expect(
        store.put('cond/buffer', { kind: 'buffer', data: Buffer.from('second') }, { ifNoneMatch: true }),
      ).rejects.toBeInstanceOf(ObjectExistsError);
      const path = join(fixture.scratchDir, 'cond-file');
      await writeFile(path, 'from a file');
      await expect(store.put('cond/buffer', { kind: 'file', path }, { ifNoneMatch: true })).rejects.toBeInstanceOf(
        ObjectExistsError,
      );
      const small = generatedBody(1000);
      await expect(
        store.put('cond/buffer', { kind: 'stream', open: small.open }, { ifNoneMatch: true }),
      ).rejects.toBeInstanceOf(ObjectExistsError);
      expect(await store.getBuffer('cond/buffer')).toEqual(first);

      const large = generatedBody(12 * MiB);
      await store.put('cond/large', { kind: 'stream', open: large.open }, { ifNoneMatch: true });
      const other = generatedBody(12 * MiB);
      const err = await store
        .put('cond/large', { kind: 'stream', open: other.open }, { ifNoneMatch: true })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ObjectExistsError);
      expect((err as ObjectExistsError).key).toBe('cond/large');
      expect((await sha256OfStream(await store.get('cond/large'))).sha256).toBe(large.sha256);

      // With the object gone, the conditional put succeeds again.
      await store.delete(['cond/buffer']);
      await store.put('cond/buffer', { kind: 'buffer', data: Buffer.from('third') }, { ifNoneMatch: true });
      expect((await store.getBuffer('cond/buffer')).toString()).toBe('third');
    });

    it('passes a failing source error through unchanged and leaves nothing visible', async () => {
      const failure = new Error('producer died');
      const err = await store
        .put('fail/source', { kind: 'stream', open: () => failingSource(11 * MiB, failure) })
        .catch((e: unknown) => e);
      expect(err).toBe(failure);
      expect(await store.head('fail/source')).toBeNull();
      expect(await keysOf(store, 'fail/')).toEqual([]);
      expect(await fixture.pendingUploads(['fail/source'])).toEqual([]);

      const early = new Error('failed before the first byte');
      await expect(store.put('fail/early', { kind: 'stream', open: () => failingSource(0, early) })).rejects.toBe(early);
      const thrown = new Error('open() threw');
      await expect(
        store.put('fail/open', {
          kind: 'stream',
          open: () => {
            throw thrown;
          },
        }),
      ).rejects.toBe(thrown);
      expect(await keysOf(store, 'fail/')).toEqual([]);
      expect(await fixture.pendingUploads(['fail/early', 'fail/open'])).toEqual([]);
    });

    it('never shows what a crashed put left behind', async () => {
      await store.put('crash/done', { kind: 'buffer', data: Buffer.from('done') });
      await fixture.simulateCrashedPut('crash/half');
      await fixture.simulateCrashedPut('crash/done');
      expect(await fixture.pendingUploads(['crash/half', 'crash/done'])).toEqual([]);
      expect(await keysOf(store, 'crash/')).toEqual(['crash/done']);
      expect(await keysOf(store, '')).not.toContain('crash/half');
      expect(await store.head('crash/half')).toBeNull();
      expect((await store.getBuffer('crash/done')).toString()).toBe('done');
    });

    it('lists the writes a crashed put left behind as pending, and abandons them (idempotently)', async () => {
      const before = Date.now();
      await fixture.simulateCrashedPut('pending/half');
      const found: PendingWrite[] = [];
      for await (const write of store.listPendingWrites('pending/')) found.push(write);
      expect(found).toHaveLength(1);
      expect(found[0]!.key.startsWith('pending/')).toBe(true);
      expect(Math.abs(found[0]!.startedAt.getTime() - before)).toBeLessThan(120_000);
      const outside: PendingWrite[] = [];
      for await (const write of store.listPendingWrites('elsewhere/')) outside.push(write);
      expect(outside).toEqual([]);
      await store.abortPendingWrite(found[0]!);
      await store.abortPendingWrite(found[0]!);
      const after: PendingWrite[] = [];
      for await (const write of store.listPendingWrites('pending/')) after.push(write);
      expect(after).toEqual([]);
      expect(await keysOf(store, 'pending/')).toEqual([]);
    });

    it('rejects keys that could escape the store or collide with temp files', async () => {
      for (const key of ['', '/abs', '../up', 'a/../b', 'a//b', 'a/', 'a\\b', 'a/./b', '.tmp-x', 'a/.tmp-y/z']) {
        await expect(store.put(key, { kind: 'buffer', data: Buffer.from('x') }), key).rejects.toBeInstanceOf(
          RepositoryError,
        );
      }
      await expect(store.head('../x')).rejects.toBeInstanceOf(RepositoryError);
      await expect(keysOf(store, '../')).rejects.toBeInstanceOf(RepositoryError);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// fs

describeObjectStoreConformance('fs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-fs-store-'));
  registerCleanup(`temp dir ${dir}`, () => removeDirQuietly(dir), () => removeDirQuietly(dir));
  const root = join(dir, 'repo');
  const scratchDir = join(dir, 'scratch');
  await mkdir(scratchDir);
  const store = createFsStore({ root });
  const crashed: string[] = [];
  return {
    store,
    scratchDir,
    simulateCrashedPut: async (key) => {
      const parent = join(root, ...key.split('/').slice(0, -1));
      await mkdir(parent, { recursive: true });
      const name = `.tmp-crashed${randomBytes(4).toString('hex')}`;
      await writeFile(join(parent, name), 'partial');
      crashed.push([...key.split('/').slice(0, -1), name].join('/'));
    },
    pendingUploads: async (keys) => {
      const dirs = new Set(keys.map((k) => k.split('/').slice(0, -1).join('/')));
      const temps: string[] = [];
      for (const dir of dirs) {
        const names = await readdir(join(root, ...dir.split('/'))).catch(() => [] as string[]);
        temps.push(...names.filter((n) => n.startsWith('.tmp-')).map((n) => `${dir}/${n}`));
      }
      expect(temps).toEqual(expect.arrayContaining(crashed.filter((c) => dirs.has(c.split('/').slice(0, -1).join('/')))));
      return temps.filter((e) => !crashed.includes(e));
    },
  };
});

describe('fs store specifics', () => {
  it('reports a file:// location and prunes empty directories up to the root', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-fs-store-'));
    try {
      const root = join(dir, 'repo with space');
      const store = createFsStore({ root });
      expect(store.location).toBe(`file://${dir}/repo%20with%20space`);
      await store.put('a/b/c/d', { kind: 'buffer', data: Buffer.from('x') });
      await store.delete(['a/b/c/d']);
      expect(await readdir(root)).toEqual([]);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is what openStore returns for a file:// URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-fs-store-'));
    try {
      const store = openStore(`file://${dir}/r`);
      await store.put('k', { kind: 'buffer', data: Buffer.from('v') });
      expect(await readdir(join(dir, 'r'))).toEqual(['k']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// s3 against a real MinIO

let minio: MinioServer | undefined;
/** Multipart uploads left on purpose by simulateCrashedPut; aborted at the end. */
const crashedUploads: Array<{ key: string; uploadId: string }> = [];
const savedEnv = new Map<string, string | undefined>();

function setEnv(values: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(values)) {
    if (!savedEnv.has(name)) savedEnv.set(name, process.env[name]);
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
}

async function withEnv<T>(values: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(values).map((k) => [k, process.env[k]]));
  Object.assign(process.env, values);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function ensureMinio(): Promise<MinioServer> {
  if (minio === undefined) {
    minio = await startMinio();
    // The driver takes credentials only from the SDK's default chain, as pgdr does in production.
    setEnv({ ...minio.env(), AWS_PROFILE: undefined, PGDR_S3_REQUEST_CHECKSUMS: undefined });
  }
  return minio;
}

function s3Options(server: MinioServer, overrides: Partial<S3StoreOptions> = {}): S3StoreOptions {
  return {
    bucket: server.bucket,
    prefix: `conformance-${randomBytes(4).toString('hex')}/nested`,
    endpoint: server.endpoint,
    forcePathStyle: true,
    partSizeBytes: 5 * MiB,
    queueSize: 4,
    ...overrides,
  };
}

function adminClient(server: MinioServer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKey, secretAccessKey: server.secretKey },
  });
}

async function pendingMultipartUploads(server: MinioServer, key: string): Promise<string[]> {
  const client = adminClient(server);
  try {
    const response = await client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: key }));
    return (response.Uploads ?? []).map((u) => u.Key ?? '?');
  } finally {
    client.destroy();
  }
}

for (const checksums of ['when_supported', 'when_required'] as const) {
  describeObjectStoreConformance(`s3 (MinIO, request checksums ${checksums})`, async () => {
    const server = await ensureMinio();
    const options = s3Options(server, { requestChecksums: checksums });
    const store = createS3Store(options);
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-s3-scratch-'));
    registerCleanup(`temp dir ${dir}`, () => removeDirQuietly(dir), () => removeDirQuietly(dir));
    return {
      store,
      scratchDir: dir,
      // A crash mid-put on S3 leaves an unfinished multipart upload: parts stored, no object.
      simulateCrashedPut: async (key) => {
        const client = adminClient(server);
        try {
          const { CreateMultipartUploadCommand, UploadPartCommand } = await import('@aws-sdk/client-s3');
          const created = await client.send(
            new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: `${options.prefix}/${key}` }),
          );
          await client.send(
            new UploadPartCommand({
              Bucket: server.bucket,
              Key: `${options.prefix}/${key}`,
              UploadId: created.UploadId,
              PartNumber: 1,
              Body: randomBytes(5 * MiB),
            }),
          );
          crashedUploads.push({ key: `${options.prefix}/${key}`, uploadId: created.UploadId ?? '' });
        } finally {
          client.destroy();
        }
      },
      pendingUploads: async (keys) => {
        // MinIO lists multipart uploads only for one exact object name, not for a prefix.
        const pending: string[] = [];
        for (const key of keys) pending.push(...(await pendingMultipartUploads(server, `${options.prefix}/${key}`)));
        // The uploads left on purpose must show up, or an empty answer would prove nothing.
        const wanted = new Set(keys.map((k) => `${options.prefix}/${k}`));
        const crashed = crashedUploads.map((u) => u.key).filter((k) => wanted.has(k));
        expect(pending).toEqual(expect.arrayContaining(crashed));
        return pending.filter((k) => !crashed.includes(k));
      },
    };
  });
}

afterAll(async () => {
  if (minio !== undefined && crashedUploads.length > 0) {
    const client = adminClient(minio);
    for (const upload of crashedUploads) {
      await client
        .send(new AbortMultipartUploadCommand({ Bucket: minio.bucket, Key: upload.key, UploadId: upload.uploadId }))
        .catch(() => undefined);
    }
    client.destroy();
  }
  await minio?.stop();
  minio = undefined;
  for (const [name, value] of savedEnv) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await stopAll();
});

describe('s3 store specifics (MinIO)', () => {
  let server: MinioServer;

  beforeAll(async () => {
    server = await ensureMinio();
  });

  it('reports s3://bucket/prefix as its location and is what openStore returns for s3:// URLs', async () => {
    const store = openStore(`s3://${server.bucket}/open/store/`, {
      s3Endpoint: server.endpoint,
      s3ForcePathStyle: true,
      s3Region: server.region,
    });
    try {
      expect(store.location).toBe(`s3://${server.bucket}/open/store`);
      await store.put('k', { kind: 'buffer', data: Buffer.from('v') });
      expect(await keysOf(store, '')).toEqual(['k']);
      const client = adminClient(server);
      const { GetObjectCommand } = await import('@aws-sdk/client-s3');
      const raw = await client.send(new GetObjectCommand({ Bucket: server.bucket, Key: 'open/store/k' }));
      expect(await raw.Body?.transformToString()).toBe('v');
      client.destroy();
    } finally {
      await store.close();
    }
  });

  it('keeps stores under different prefixes apart', async () => {
    const a = createS3Store(s3Options(server, { prefix: 'apart/a' }));
    const b = createS3Store(s3Options(server, { prefix: 'apart/ab' }));
    try {
      await a.put('x', { kind: 'buffer', data: Buffer.from('a') });
      await b.put('x', { kind: 'buffer', data: Buffer.from('b') });
      expect(await keysOf(a, '')).toEqual(['x']);
      expect((await a.getBuffer('x')).toString()).toBe('a');
      await a.delete(['x']);
      expect((await b.getBuffer('x')).toString()).toBe('b');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('deletes key by key for stores that refuse DeleteObjects (batchDelete: false)', async () => {
    const store = createS3Store(s3Options(server, { batchDelete: false }));
    try {
      const keys = Array.from({ length: 10 }, (_, i) => `single/${i}`);
      await putMany(store, keys);
      await store.delete([...keys, 'single/never-existed']);
      expect(await keysOf(store, '')).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('maps a wrong secret key to a RepositoryError about credentials, without the secret', async () => {
    const wrongSecret = `wrong-${randomBytes(8).toString('hex')}`;
    await withEnv({ AWS_SECRET_ACCESS_KEY: wrongSecret }, async () => {
      const store = createS3Store(s3Options(server, { maxAttempts: 2 }));
      try {
        for (const attempt of [
          () => store.put('k', { kind: 'buffer', data: Buffer.from('v') }),
          () => store.getBuffer('k'),
          () => store.head('k'),
          () => keysOf(store, ''),
          () => store.delete(['k']),
        ]) {
          const err = await attempt().catch((e: unknown) => e);
          expect(err).toBeInstanceOf(RepositoryError);
          const repoErr = err as RepositoryError;
          expect(repoErr.message).toMatch(/credentials/);
          expect(repoErr.message).toContain(`s3://${server.bucket}/`);
          expect(repoErr.hint).toMatch(/AWS_ACCESS_KEY_ID/);
          expect(repoErr.exitCode).toBe(3);
          expect(repoErr.cause).toBeDefined();
          expect(`${repoErr.message}\n${repoErr.hint}`).not.toContain(wrongSecret);
          expect(`${repoErr.message}\n${repoErr.hint}`).not.toContain(server.secretKey);
        }
      } finally {
        await store.close();
      }
    });
  });

  it('maps a missing bucket to a RepositoryError naming it, for put, list and head', async () => {
    const bucket = `pgdr-missing-${randomBytes(4).toString('hex')}`;
    const store = createS3Store(s3Options(server, { bucket, maxAttempts: 2 }));
    try {
      for (const attempt of [
        () => store.put('k', { kind: 'buffer', data: Buffer.from('v') }),
        () => keysOf(store, ''),
        () => store.head('k'),
        () => store.getBuffer('k'),
      ]) {
        const err = await attempt().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RepositoryError);
        expect((err as RepositoryError).message).toContain(bucket);
        expect((err as RepositoryError).hint).toMatch(/create the bucket/);
      }
    } finally {
      await store.close();
    }
  });

  it('destroys an endless source when the upload fails, instead of hanging', async () => {
    const bucket = `pgdr-missing-${randomBytes(4).toString('hex')}`;
    const store = createS3Store(s3Options(server, { bucket, maxAttempts: 2 }));
    let source: Readable | undefined;
    try {
      const endless = function* (): Generator<Buffer> {
        const block = randomBytes(MiB);
        for (;;) yield block;
      };
      const started = Date.now();
      const err = await store
        .put('endless', {
          kind: 'stream',
          open: () => {
            source = Readable.from(endless(), { objectMode: false });
            return source;
          },
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RepositoryError);
      expect((err as RepositoryError).message).toContain(bucket);
      expect(source?.destroyed).toBe(true);
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await store.close();
    }
  });

  it('retries a file, a buffer and a multipart stream whose connection is reset mid-upload', async () => {
    const proxy = await startFaultyProxy(new URL(server.endpoint));
    const store = createS3Store(s3Options(server, { endpoint: proxy.endpoint, maxAttempts: 3 }));
    try {
      const fileData = randomBytes(3 * MiB);
      const path = join(mkdtempSync(join(tmpdir(), 'pgdr-s3-retry-')), 'file.bin');
      registerCleanup(`temp file ${path}`, () => removeDirQuietly(join(path, '..')));
      await writeFile(path, fileData);
      proxy.resetOnceAfter(MiB);
      await store.put('retry/file', { kind: 'file', path });
      expect(proxy.resets).toBe(1);
      expect(sha256(await store.getBuffer('retry/file'))).toBe(sha256(fileData));

      const bufferData = randomBytes(2 * MiB);
      proxy.resetOnceAfter(MiB);
      await store.put('retry/buffer', { kind: 'buffer', data: bufferData });
      expect(proxy.resets).toBe(2);
      expect(sha256(await store.getBuffer('retry/buffer'))).toBe(sha256(bufferData));

      const body = generatedBody(17 * MiB);
      proxy.resetOnceAfter(2 * MiB);
      await store.put('retry/stream', { kind: 'stream', open: body.open });
      expect(proxy.resets).toBe(3);
      expect((await sha256OfStream(await store.get('retry/stream'))).sha256).toBe(body.sha256);
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it('fails fast with "cannot reach" when nothing listens at the endpoint', async () => {
    const port = await freePort();
    const store = createS3Store(
      s3Options(server, { endpoint: `http://127.0.0.1:${port}`, maxAttempts: 2, connectTimeoutMs: 1_000 }),
    );
    try {
      const started = Date.now();
      const err = await store.head('k').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RepositoryError);
      expect((err as RepositoryError).message).toMatch(/cannot reach the S3 endpoint http:\/\/127\.0\.0\.1:\d+/);
      expect((err as RepositoryError).message).toMatch(/ECONNREFUSED/);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await store.close();
    }
  });

  it('rejects a large upload with a RepositoryError when MinIO is killed mid-way, then recovers', async () => {
    const options = s3Options(server, { maxAttempts: 2, connectTimeoutMs: 1_000, requestTimeoutMs: 5_000 });
    const store = createS3Store(options);
    let source: Readable | undefined;
    let killed = false;
    let restarted = false;
    try {
      const body = generatedBody(400 * MiB, {
        hash: false,
        onChunk: (produced) => {
          if (!killed && produced >= 24 * MiB) {
            killed = true;
            server.kill();
          }
        },
      });
      const started = Date.now();
      const err = await store
        .put('killed/large', {
          kind: 'stream',
          open: () => {
            source = body.open();
            return source;
          },
        })
        .catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(killed).toBe(true);
      expect(err).toBeInstanceOf(RepositoryError);
      expect((err as RepositoryError).message).toMatch(/cannot reach the S3 endpoint/);
      expect(source?.destroyed).toBe(true);
      expect(elapsed).toBeLessThan(90_000);

      await server.start();
      restarted = true;
      expect(await store.head('killed/large')).toBeNull();
      await store.put('killed/after', { kind: 'buffer', data: Buffer.from('back') });
      expect((await store.getBuffer('killed/after')).toString()).toBe('back');
    } finally {
      await store.close();
      if (killed && !restarted) await server.start().catch(() => undefined);
    }
  });
});
