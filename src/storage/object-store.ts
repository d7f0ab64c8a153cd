import type { Readable } from 'node:stream';
import { isInstanceByName, PGDR_CLASS } from '../errors.js';

/**
 * The one storage interface. Drivers are small and dumb: they move bytes and report what exists.
 * Checksums, commit-last ordering, locks and the repository layout live above them (src/repo).
 * Keys are relative, '/'-separated, never starting with '/'; each driver maps them under its own root/prefix.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
  /** S3 Object Lock retention of the current version, as `head` reads it (listings do not carry it). */
  retention?: ObjectRetention;
}

/**
 * S3 Object Lock: until `retainUntil` no one can delete or overwrite this version of the object; in governance
 * mode a user with s3:BypassGovernanceRetention can, in compliance mode no one (not even the account's root).
 */
export type RetentionMode = 'governance' | 'compliance';
export interface ObjectRetention {
  mode: RetentionMode;
  retainUntil: Date;
}

/** What a bucket says about Object Lock (S3 GetObjectLockConfiguration). */
export interface BucketObjectLock {
  enabled: boolean;
  /** A retention the bucket applies to every new object version that names none itself. */
  defaultRetention: { mode: RetentionMode; days?: number; years?: number } | null;
}

/**
 * A body that can be read again: a retried upload must start from byte 0, so a half-read stream is never
 * passed down. `stream` bodies are one-shot and may only be retried part by part (S3 multipart).
 */
export type PutBody =
  | { kind: 'buffer'; data: Buffer }
  | { kind: 'file'; path: string }
  | { kind: 'stream'; open: () => Readable; oneShot?: true };

export interface PutOptions {
  /** Fail with ObjectExistsError instead of replacing an existing object (S3 If-None-Match: *, fs link()). */
  ifNoneMatch?: boolean;
  contentType?: string;
  /** Called with the number of bytes handed to the backend so far. */
  onProgress?: (bytesSent: number) => void;
  /**
   * An upper estimate of a stream body's size. S3 allows 10,000 parts per object, so a large enough estimate makes
   * the driver use larger (and fewer in-flight) parts; without it a stream is cut into the configured part size.
   */
  expectedBytes?: number;
  /** Object Lock retention for the new object (S3 only; the bucket must have Object Lock enabled). */
  retention?: ObjectRetention;
}

export interface PutResult {
  key: string;
  size: number;
}

export interface ListOptions {
  /**
   * Only keys that sort after this one (byte order, as S3 ListObjectsV2 StartAfter): a reader that knows roughly
   * where the interesting keys begin (the server's current WAL segment) lists from there instead of from the start.
   */
  startAfter?: string;
}

export interface GetOptions {
  /** Inclusive byte range. */
  range?: { start: number; end: number };
}

/**
 * A write that was started and never finished: a temp file of a local directory left by a killed writer, an S3
 * multipart upload neither completed nor aborted (its parts are billed, and invisible to a listing). A running
 * writer's own write looks the same, so callers act on these only past a grace period.
 */
export interface PendingWrite {
  /** The key it was for (S3), or where the temp file lies (a local directory: its final name is not known). */
  key: string;
  /** What abortPendingWrite needs to find it again. */
  id: string;
  /** When it began (S3), or was last written to (a local directory). */
  startedAt: Date;
  /** Bytes it holds, when the store says. */
  size: number | null;
}

export interface ObjectStore {
  /** Human-readable location with secrets redacted, e.g. `s3://bucket/prefix` or `file:///var/lib/pgdr`. */
  readonly location: string;
  put(key: string, body: PutBody, options?: PutOptions): Promise<PutResult>;
  /** Throws ObjectNotFoundError when the key does not exist. */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /** Reads a small object whole (manifests, locks). Throws ObjectNotFoundError. */
  getBuffer(key: string): Promise<Buffer>;
  /** null when the key does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with `prefix`, in lexical key order. */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  /**
   * The "directories" right below `prefix`: each distinct `prefix + name + '/'` that begins the key of at least one
   * object, in lexical order (S3 CommonPrefixes with Delimiter '/'). Objects directly under `prefix` are not named.
   */
  listPrefixes(prefix: string): AsyncIterable<string>;
  /** Deleting a key that does not exist is not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Writes under `prefix` that never finished (see PendingWrite). */
  listPendingWrites(prefix: string): AsyncIterable<PendingWrite>;
  /** Abandons one (deletes the temp file; aborts the multipart upload). One already gone is not an error. */
  abortPendingWrite(write: PendingWrite): Promise<void>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
  /**
   * Object Lock, where the store has it (S3): the bucket's configuration, and a longer retention for an object that
   * exists (retention can only be extended, never shortened).
   */
  objectLock?(): Promise<BucketObjectLock>;
  extendRetention?(key: string, retention: ObjectRetention): Promise<void>;
}

// Recognised by name across copies of this module (see isInstanceByName): the S3 driver loads apart from `wal push`.
export class ObjectNotFoundError extends Error {
  static readonly [PGDR_CLASS] = true;
  static override [Symbol.hasInstance]<T>(this: abstract new (...args: never[]) => T, value: unknown): value is T {
    return isInstanceByName(value, this);
  }
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
    this.name = 'ObjectNotFoundError';
  }
}

export class ObjectExistsError extends Error {
  static readonly [PGDR_CLASS] = true;
  static override [Symbol.hasInstance]<T>(this: abstract new (...args: never[]) => T, value: unknown): value is T {
    return isInstanceByName(value, this);
  }
  constructor(readonly key: string) {
    super(`object already exists: ${key}`);
    this.name = 'ObjectExistsError';
  }
}
