import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { RepositoryError } from '../errors.js';
import {
  ObjectExistsError,
  ObjectNotFoundError,
  type GetOptions,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PendingWrite,
  type PutBody,
  type PutOptions,
  type PutResult,
} from './object-store.js';
import { ByteCounterStage } from '../stream/checksum.js';
import { failpoint } from '../process/failpoint.js';

/**
 * The embedded default driver: objects are plain files under a root directory, so the repository can be read
 * with ls and cat. Every put is write-to-temp, fsync, rename (or link), fsync directory: a crash leaves either
 * the old object, the new one, or an invisible `.tmp-*` file, never a torn object.
 */
export interface FsStoreOptions {
  /** Absolute (or resolvable) path of the repository root; created on the first put. */
  root: string;
}

/** Files with this name prefix are puts in progress (or left by a crash) and are never objects. */
export const TEMP_FILE_PREFIX = '.tmp-';

// Backups hold the whole database: only the repository's owner may read them, whatever the umask of the process that
// wrote them (PostgreSQL's archive_command runs with 0077, a shell usually with 0022).
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const DELETE_CONCURRENCY = 16;
/** S3's own limit; enforced here too so a repository can move between drivers. */
const MAX_KEY_BYTES = 1024;
/** The usual file-name limit of Linux file systems. */
const MAX_SEGMENT_BYTES = 255;

function keyProblem(key: string, allowPartialLast: boolean): string | undefined {
  if (typeof key !== 'string') return 'it is not a string';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `it is longer than ${MAX_KEY_BYTES} bytes`;
  if (key.startsWith('/')) return "it starts with '/'";
  if (key.includes('\\')) return 'it contains a backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'it contains a control character';
  const segments = key.split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] ?? '';
    const isLast = i === segments.length - 1;
    if (isLast && allowPartialLast) continue;
    if (segment === '') return 'it has an empty path segment';
    if (segment === '.' || segment === '..') return `it has a '${segment}' segment`;
    if (segment.startsWith(TEMP_FILE_PREFIX)) return `a segment starts with '${TEMP_FILE_PREFIX}', which is reserved`;
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/**
 * Object keys are relative '/'-separated paths that map one-to-one onto files. Both drivers apply the same
 * rules so that what one accepts, the other stores too.
 */
export function assertObjectKey(key: string): void {
  if (key === '') {
    throw new RepositoryError('invalid object key: it is empty', 'this is a bug in pgdr: report it with the command line');
  }
  const problem = keyProblem(key, false);
  if (problem !== undefined) {
    throw new RepositoryError(
      `invalid object key ${JSON.stringify(key)}: ${problem}`,
      'this is a bug in pgdr: report it with the command line',
    );
  }
}

/** A list prefix may be empty, end with '/', or stop in the middle of a name. */
export function assertListPrefix(prefix: string): void {
  if (prefix === '') return;
  const problem = keyProblem(prefix, true);
  if (problem !== undefined) {
    throw new RepositoryError(
      `invalid list prefix ${JSON.stringify(prefix)}: ${problem}`,
      'this is a bug in pgdr: report it with the command line',
    );
  }
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

function fsFailure(what: string, path: string, err: unknown): RepositoryError {
  const code = errnoCode(err) ?? 'error';
  let hint: string;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      hint = `check the owner and permissions of ${path} (pgdr runs as uid ${process.getuid?.() ?? '?'})`;
      break;
    case 'ENOSPC':
    case 'EDQUOT':
      hint = 'the repository file system is full (or over quota): free space there, or run pgdr expire; PostgreSQL keeps WAL it could not archive and retries';
      break;
    case 'EROFS':
      hint = 'the repository file system is mounted read-only';
      break;
    case 'ENOTDIR':
    case 'EEXIST':
    case 'EISDIR':
      hint = 'a file and a directory in the repository have the same name: check the repository layout';
      break;
    default:
      hint = 'check the repository file system (dmesg, df, mount)';
  }
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RepositoryError(`the repository's file system is full: cannot ${what} ${path} (${code === 'ENOSPC' ? 'no space left on device' : 'disk quota exceeded'})`, hint, err);
  }
  return new RepositoryError(`cannot ${what} ${path}: ${detail}`, hint, err);
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isAtOrBelow(path: string, ancestor: string): boolean {
  return path === ancestor || path.startsWith(ancestor.endsWith(sep) ? ancestor : ancestor + sep);
}

/**
 * A Writable over a FileHandle we still own. FileHandle.createWriteStream({ autoClose: false }) leaves a reference
 * on the handle that makes a later handle.close() wait forever (Node 20), so writes go through handle.write().
 *
 * Every SYNC_EVERY_BYTES an fdatasync starts beside the writes. With the kernel's default thresholds (10% of RAM)
 * nothing of a backup is written back while it streams, so the one fsync at the end would flush the whole object
 * while the backup waits; syncing as it goes spreads that over the transfer, as pgBackRest does file by file.
 */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024;

/**
 * `failed` turns a write or sync error into the error the whole pipeline carries: the pipeline destroys the source
 * with the sink's error too, and a caller that watches its own stream must see "the repository is full", not a
 * bare errno.
 */
function fileHandleSink(handle: FileHandle, failed: (err: unknown) => Error): Writable {
  let unsynced = 0;
  let syncing: Promise<void> | undefined;
  let syncError: unknown;
  const startSync = (): void => {
    unsynced = 0;
    syncing = handle.datasync().then(
      () => {
        syncing = undefined;
      },
      (err: unknown) => {
        syncing = undefined;
        syncError ??= err;
      },
    );
  };
  const written = (bytes: number, callback: (error?: Error | null) => void): void => {
    unsynced += bytes;
    if (unsynced >= SYNC_EVERY_BYTES && syncing === undefined) startSync();
    callback();
  };
  return new Writable({
    // zstd hands over 64 KiB at a time: chunks that queue while a write runs go out in one writev, which costs a
    // fraction of the CPU of one write per chunk.
    highWaterMark: SINK_QUEUE_BYTES,
    write(chunk: Buffer, _encoding, callback) {
      if (syncError !== undefined) return callback(failed(syncError));
      writeAll(handle, chunk).then(
        () => written(chunk.length, callback),
        (err: unknown) => callback(failed(err)),
      );
    },
    writev(chunks, callback) {
      if (syncError !== undefined) return callback(failed(syncError));
      const buffers = chunks.map((c) => c.chunk as Buffer);
      writevAll(handle, buffers).then(
        (bytes) => written(bytes, callback),
        (err: unknown) => callback(failed(err)),
      );
    },
    final(callback) {
      Promise.resolve(syncing).then(() => callback(syncError === undefined ? undefined : failed(syncError)), callback);
    },
  });
}

/** Bytes the sink takes in while a write runs. */
const SINK_QUEUE_BYTES = 1024 * 1024;

/** Bytes per read of an object: 1 MiB reads cost the main thread a sixteenth of the calls 64 KiB ones do. */
const READ_CHUNK_BYTES = 1024 * 1024;

async function writevAll(handle: FileHandle, buffers: Buffer[]): Promise<number> {
  const total = buffers.reduce((sum, b) => sum + b.length, 0);
  const { bytesWritten } = await handle.writev(buffers);
  // A short write (rare on a regular file) is finished one buffer at a time.
  let skip = bytesWritten;
  for (const buffer of buffers) {
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    await writeAll(handle, skip === 0 ? buffer : buffer.subarray(skip));
    skip = 0;
  }
  return total;
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

/** Copies `source` into the temp file; `sourceFailure` names a failure of the source, anything else is the write's. */
async function copyInto(
  handle: FileHandle,
  tempPath: string,
  source: Readable,
  options: PutOptions,
  sourceFailure: (err: unknown) => unknown,
): Promise<number> {
  const counter = new ByteCounterStage(options.onProgress);
  // When the write fails (a full disk), the pipeline destroys the source with that error too: the sink's own
  // failure decides whose error it is.
  let sinkFailed = false;
  let sourceFailed = false;
  source.once('error', () => {
    sourceFailed = true;
  });
  try {
    await pipeline(
      source,
      counter,
      fileHandleSink(handle, (err) => {
        sinkFailed = true;
        return fsFailure('write', tempPath, err);
      }),
    );
  } catch (err) {
    if (sourceFailed && !sinkFailed) throw sourceFailure(err);
    throw err instanceof RepositoryError ? err : fsFailure('write', tempPath, err);
  }
  return counter.bytes;
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first failure after all settle. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
}

/** Files stat()ed at once while listing. */
const STAT_BATCH = 32;

/** A listed file's size and time; undefined when it was deleted since readdir or is no regular file. */
async function statListed(path: string): Promise<{ size: number; mtime: Date } | undefined> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    // Deleted between readdir and stat: it is simply no longer there.
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw fsFailure('stat', path, err);
  }
  return info.isFile() ? info : undefined;
}

/** Whether the whole key `dirKey + name` (a directory's "name/") begins `key`. */
function isPrefixOf(name: Buffer, key: Buffer, dirKey: string): boolean {
  const whole = Buffer.concat([Buffer.from(dirKey), name]);
  return key.length >= whole.length && key.subarray(0, whole.length).equals(whole);
}

interface ListEntry {
  name: string;
  isDirectory: boolean;
  /** The name as it sorts among whole keys: a directory sorts as "name/". */
  sortKey: Buffer;
}

class FsObjectStore implements ObjectStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = pathToFileURL(root).href;
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    assertObjectKey(key);
    const target = this.pathOf(key);
    const dir = dirname(target);
    const { handle, tempPath, firstCreated } = await this.createTempFile(dir);
    let handleOpen = true;
    try {
      const size = await this.writeBody(handle, tempPath, body, options);
      await handle.sync().catch((err: unknown) => {
        throw fsFailure('fsync', tempPath, err);
      });
      await handle.close();
      handleOpen = false;
      await failpoint('fs-put:before-commit', key);
      if (options.ifNoneMatch) {
        // link() fails with EEXIST when the target exists, atomically, where rename() would silently replace it.
        try {
          await link(tempPath, target);
        } catch (err) {
          if (errnoCode(err) === 'EEXIST') throw new ObjectExistsError(key);
          throw fsFailure('create', target, err);
        }
        await unlink(tempPath).catch(() => undefined);
      } else {
        await rename(tempPath, target).catch((err: unknown) => {
          throw fsFailure('create', target, err);
        });
      }
      await this.syncDirectories(dir, firstCreated);
      return { key, size };
    } catch (err) {
      if (handleOpen) await handle.close().catch(() => undefined);
      await unlink(tempPath).catch(() => undefined);
      throw err;
    }
  }

  /**
   * A concurrent delete may remove the (then empty) directory between our mkdir and our open: try again.
   */
  private async createTempFile(dir: string): Promise<{ handle: FileHandle; tempPath: string; firstCreated: string | undefined }> {
    let firstCreated: string | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        firstCreated = (await mkdir(dir, { recursive: true, mode: DIR_MODE })) ?? firstCreated;
      } catch (err) {
        throw fsFailure('create directory', dir, err);
      }
      const tempPath = join(dir, `${TEMP_FILE_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        const handle = await open(tempPath, 'wx', FILE_MODE);
        return { handle, tempPath, firstCreated };
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' && attempt < 5) continue;
        throw fsFailure('create', tempPath, err);
      }
    }
  }

  private async writeBody(handle: FileHandle, tempPath: string, body: PutBody, options: PutOptions): Promise<number> {
    switch (body.kind) {
      case 'buffer': {
        await handle.writeFile(body.data).catch((err: unknown) => {
          throw fsFailure('write', tempPath, err);
        });
        options.onProgress?.(body.data.length);
        return body.data.length;
      }
      case 'file':
        // A file that cannot be read is reported as a read failure of that path, not of the repository.
        return await copyInto(handle, tempPath, createReadStream(body.path), options, (err) => fsFailure('read', body.path, err));
      case 'stream':
        // The producer's own failure (pg_basebackup died, a checksum stage refused) is not a storage error.
        return await copyInto(handle, tempPath, body.open(), options, (err) => err);
    }
  }

  /** The new entry is durable only once its directory is; so is every directory mkdir just created. */
  private async syncDirectories(dir: string, firstCreated: string | undefined): Promise<void> {
    let current = dir;
    try {
      await fsyncDirectory(current);
      while (firstCreated !== undefined && isAtOrBelow(current, firstCreated)) {
        current = dirname(current);
        await fsyncDirectory(current);
      }
    } catch (err) {
      throw fsFailure('fsync directory', current, err);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    assertObjectKey(key);
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new ObjectNotFoundError(key);
      throw fsFailure('open', path, err);
    }
    try {
      const info = await handle.stat();
      if (info.isDirectory()) throw new ObjectNotFoundError(key);
      const range = options.range;
      if (range === undefined) return handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES });
      checkRange(key, range, info.size);
      return handle.createReadStream({ start: range.start, end: range.end, highWaterMark: READ_CHUNK_BYTES });
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  async getBuffer(key: string): Promise<Buffer> {
    assertObjectKey(key);
    const path = this.pathOf(key);
    try {
      return await readFile(path);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw new ObjectNotFoundError(key);
      throw fsFailure('read', path, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertObjectKey(key);
    const path = this.pathOf(key);
    try {
      const info = await stat(path);
      if (!info.isFile()) return null;
      return { key, size: info.size, lastModified: info.mtime };
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw fsFailure('stat', path, err);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    assertListPrefix(prefix);
    if (options.startAfter !== undefined) assertListPrefix(options.startAfter);
    const slash = prefix.lastIndexOf('/');
    const after = options.startAfter === undefined ? undefined : Buffer.from(options.startAfter);
    yield* this.walk(prefix.slice(0, slash + 1), prefix.slice(slash + 1), after);
  }

  async *listPrefixes(prefix: string): AsyncIterable<string> {
    assertListPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const dirKey = prefix.slice(0, slash + 1);
    for (const entry of await this.entries(dirKey, prefix.slice(slash + 1), undefined)) {
      if (!entry.isDirectory) continue;
      const sub = `${dirKey}${entry.name}/`;
      // S3 names a common prefix only while an object begins with it; a directory a crash left empty is none.
      for await (const _ of this.walk(sub, '', undefined)) {
        yield sub;
        break;
      }
    }
  }

  /**
   * Yields in the byte order of whole keys, as S3 does: siblings are sorted with directories as "name/", so
   * "a-c" (0x2d) comes before everything under "a/" (0x2f), and a depth-first walk stays in key order.
   */
  private async *walk(dirKey: string, namePrefix: string, after: Buffer | undefined): AsyncGenerator<ObjectInfo> {
    const dirPath = dirKey === '' ? this.root : this.pathOf(dirKey.slice(0, -1));
    const entries = await this.entries(dirKey, namePrefix, after);
    for (let i = 0; i < entries.length; ) {
      const entry = entries[i]!;
      if (entry.isDirectory) {
        // Everything below a directory that sorts after `after` does too; only one that holds `after` is cut.
        yield* this.walk(`${dirKey}${entry.name}/`, '', after !== undefined && isPrefixOf(entry.sortKey, after, dirKey) ? after : undefined);
        i++;
        continue;
      }
      // The files up to the next directory, stat()ed a batch at a time: one at a time, a 100,000-segment WAL
      // directory spends seconds waiting on round trips to the thread pool.
      let end = i;
      while (end < entries.length && end - i < STAT_BATCH && !entries[end]!.isDirectory) end++;
      const infos = await Promise.all(entries.slice(i, end).map((e) => statListed(join(dirPath, e.name))));
      for (let k = 0; k < infos.length; k++) {
        const info = infos[k];
        if (info !== undefined) yield { key: dirKey + entries[i + k]!.name, size: info.size, lastModified: info.mtime };
      }
      i = end;
    }
  }

  /**
   * One directory's entries that can hold listed keys, sorted as whole keys sort. With `after`, files whose key is
   * not past it and directories whose every key is not past it are dropped before anything is stat()ed.
   */
  private async entries(dirKey: string, namePrefix: string, after: Buffer | undefined): Promise<ListEntry[]> {
    const dirPath = dirKey === '' ? this.root : this.pathOf(dirKey.slice(0, -1));
    let dirents;
    try {
      dirents = await readdir(dirPath, { withFileTypes: true });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw fsFailure('list', dirPath, err);
    }
    const dirKeyBytes = Buffer.from(dirKey);
    const entries: ListEntry[] = [];
    for (const dirent of dirents) {
      const name = dirent.name;
      if (name.startsWith(TEMP_FILE_PREFIX) || !name.startsWith(namePrefix)) continue;
      let isDirectory = dirent.isDirectory();
      if (!isDirectory && !dirent.isFile()) {
        // A symlink or an unknown d_type: follow it once to learn what it is.
        const info = await stat(join(dirPath, name)).catch(() => undefined);
        if (info === undefined) continue;
        isDirectory = info.isDirectory();
      }
      const sortKey = Buffer.from(isDirectory ? `${name}/` : name);
      if (after !== undefined) {
        const whole = Buffer.concat([dirKeyBytes, sortKey]);
        const past = Buffer.compare(whole, after) > 0;
        if (!past && !(isDirectory && isPrefixOf(sortKey, after, dirKey))) continue;
      }
      entries.push({ name, isDirectory, sortKey });
    }
    entries.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    return entries;
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) assertObjectKey(key);
    const parents = new Set<string>();
    await forEachLimited(keys, DELETE_CONCURRENCY, async (key) => {
      const path = this.pathOf(key);
      try {
        await unlink(path);
      } catch (err) {
        const code = errnoCode(err);
        // Absent, or only a "directory prefix" rather than an object: nothing to delete.
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
        throw fsFailure('delete', path, err);
      }
      parents.add(dirname(path));
    });
    // Callers order deletes (manifest before data): each call must be durable before it returns.
    for (const dir of parents) {
      await fsyncDirectory(dir).catch((err: unknown) => {
        if (errnoCode(err) !== 'ENOENT') throw fsFailure('fsync directory', dir, err);
      });
    }
    const deepestFirst = [...parents].sort((a, b) => b.length - a.length);
    for (const dir of deepestFirst) await this.removeEmptyDirectories(dir);
  }

  private async removeEmptyDirectories(start: string): Promise<void> {
    let dir = start;
    while (dir !== this.root && isAtOrBelow(dir, this.root)) {
      try {
        await rmdir(dir);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT') return;
        throw fsFailure('remove directory', dir, err);
      }
      dir = dirname(dir);
    }
  }

  /** Temp files (`.tmp-*`) under the prefix's directories: the writes a killed process left. */
  async *listPendingWrites(prefix: string): AsyncIterable<PendingWrite> {
    assertListPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    yield* this.walkTemp(prefix.slice(0, slash + 1), prefix.slice(slash + 1));
  }

  private async *walkTemp(dirKey: string, namePrefix: string): AsyncGenerator<PendingWrite> {
    const dirPath = dirKey === '' ? this.root : this.pathOf(dirKey.slice(0, -1));
    let dirents;
    try {
      dirents = await readdir(dirPath, { withFileTypes: true });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw fsFailure('list', dirPath, err);
    }
    for (const dirent of dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const key = dirKey + dirent.name;
      if (dirent.name.startsWith(TEMP_FILE_PREFIX)) {
        const info = await stat(join(dirPath, dirent.name)).catch(() => undefined);
        if (info?.isFile()) yield { key, id: key, startedAt: info.mtime, size: info.size };
        continue;
      }
      if (dirent.isDirectory() && dirent.name.startsWith(namePrefix)) yield* this.walkTemp(`${key}/`, '');
    }
  }

  async abortPendingWrite(write: PendingWrite): Promise<void> {
    const segments = write.id.split('/');
    const name = segments[segments.length - 1] ?? '';
    // Only a temp file, and only one inside the repository: the id is outside input when it comes from a listing.
    if (!name.startsWith(TEMP_FILE_PREFIX) || segments.some((s) => s === '' || s === '.' || s === '..')) {
      throw new RepositoryError(`${JSON.stringify(write.id)} is not a pending write of this repository`, 'this is a bug in pgdr: report it with the command line');
    }
    const path = this.pathOf(write.id);
    try {
      await unlink(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw fsFailure('delete', path, err);
    }
    await fsyncDirectory(dirname(path)).catch(() => undefined);
    await this.removeEmptyDirectories(dirname(path));
  }

  async close(): Promise<void> {
    // No handles are held between calls.
  }
}

function checkRange(key: string, range: { start: number; end: number }, size: number): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RepositoryError(
      `invalid byte range ${start}-${end} for ${key}`,
      'this is a bug in pgdr: report it with the command line',
    );
  }
  if (start >= size) {
    throw new RepositoryError(
      `byte range ${start}-${end} is beyond the end of ${key} (${size} bytes)`,
      'the object is shorter than its manifest says: run pgdr verify',
    );
  }
}

export function createFsStore(options: FsStoreOptions): ObjectStore {
  return new FsObjectStore(resolve(options.root));
}
