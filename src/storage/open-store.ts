import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { createFsStore } from './fs-store.js';
import type { ObjectStore } from './object-store.js';
import { redactUrl } from './redact.js';
import { checkS3Endpoint, isValidBucketName } from './s3-names.js';
import type { S3RequestChecksums, S3StoreOptions } from './s3-store.js';
import { createLazyStore } from './lazy-store.js';
import { checkSharedCredentials, type SharedCredentials } from './shared-credentials.js';

/** Where the configuration stops: a repository URL plus the S3 settings of ../shared/CLI.md pick the driver. */
export interface OpenStoreOptions {
  s3Endpoint?: string;
  s3ForcePathStyle?: boolean;
  s3Region?: string;
  s3RequestChecksums?: S3RequestChecksums;
  /** Silence after which a request fails (and is tried again). */
  s3TimeoutMs?: number;
  s3Attempts?: number;
  /** The repository's own credentials file and profile; without it, the AWS SDK's default chain. */
  s3Credentials?: SharedCredentials;
  /** The bucket has Object Lock and pgdr writes with retention (see S3StoreOptions.objectLock). */
  s3ObjectLock?: boolean;
}

export type RepositoryUrl = { kind: 'file'; root: string } | { kind: 's3'; bucket: string; prefix: string };

const SCHEME_HINT = 'use s3://bucket/prefix or file:///absolute/path';

function decodePath(encoded: string, url: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch (err) {
    throw new UsageError(
      `repository URL ${redactUrl(url)} has a malformed %-escape`,
      'write a literal % as %25 in the URL',
      err,
    );
  }
}

/**
 * Parses without `new URL()`: WHATWG parsing lower-cases an s3 host (hiding a wrong bucket name) and treats '#'
 * in a file path as a fragment, while the default repository URL is built by plain string concatenation.
 */
export function parseRepositoryUrl(url: string): RepositoryUrl {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'file') {
    let rest = url.slice('file://'.length);
    if (rest.toLowerCase().startsWith('localhost/')) rest = rest.slice('localhost'.length);
    if (!rest.startsWith('/')) {
      throw new UsageError(
        `file repository URL ${redactUrl(url)} does not hold an absolute path`,
        'use file:///absolute/path (three slashes: file:// followed by /absolute/path)',
      );
    }
    const path = decodePath(rest, url);
    if (path.includes('\0')) {
      throw new UsageError(`file repository URL ${redactUrl(url)} contains a NUL byte`, 'fix the path');
    }
    return { kind: 'file', root: resolve(path) };
  }
  if (scheme === 's3') {
    const match = /^[^:]+:\/\/([^/]*)(.*)$/.exec(url);
    const authority = match?.[1] ?? '';
    const path = match?.[2] ?? '';
    if (authority.includes('@')) {
      throw new UsageError(
        'the repository URL contains credentials',
        'remove user:password@ from the URL; pass credentials as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
      );
    }
    if (/[?#]/.test(authority) || /[?#]/.test(path)) {
      throw new UsageError(
        `S3 repository URL ${redactUrl(url)} has a query or fragment`,
        'use s3://bucket/prefix; the endpoint goes in --s3-endpoint / PGDR_S3_ENDPOINT',
      );
    }
    if (!isValidBucketName(authority)) {
      throw new UsageError(
        `S3 repository URL ${redactUrl(url)} does not name a valid bucket (${JSON.stringify(authority)})`,
        'bucket names are 3-63 characters of lower-case letters, digits, dots and hyphens: s3://bucket/prefix',
      );
    }
    const prefix = decodePath(path, url).replace(/^\/+|\/+$/g, '');
    if (prefix.split('/').some((s) => s === '.' || s === '..') || /\/\//.test(prefix) || prefix.includes('\\')) {
      throw new UsageError(
        `S3 repository URL ${redactUrl(url)} has an invalid prefix`,
        "use a prefix of non-empty segments without '.', '..' or backslashes, e.g. s3://bucket/pgdr/prod",
      );
    }
    return { kind: 's3', bucket: authority, prefix };
  }
  throw new UsageError(`repository URL ${JSON.stringify(redactUrl(url))} has no supported scheme`, SCHEME_HINT);
}

export function openStore(url: string, options: OpenStoreOptions = {}): ObjectStore {
  const parsed = parseRepositoryUrl(url);
  if (parsed.kind === 'file') return createFsStore({ root: parsed.root });
  checkS3Endpoint(options.s3Endpoint);
  if (options.s3Credentials !== undefined) checkSharedCredentials(options.s3Credentials);
  // The AWS SDK takes a noticeable part of a second to load: only repositories on S3 pay for it, when first used.
  const s3Options: S3StoreOptions = {
    bucket: parsed.bucket,
    prefix: parsed.prefix,
    ...(options.s3Endpoint !== undefined && options.s3Endpoint !== '' ? { endpoint: options.s3Endpoint } : {}),
    ...(options.s3Region !== undefined && options.s3Region !== '' ? { region: options.s3Region } : {}),
    ...(options.s3ForcePathStyle !== undefined ? { forcePathStyle: options.s3ForcePathStyle } : {}),
    ...(options.s3RequestChecksums !== undefined ? { requestChecksums: options.s3RequestChecksums } : {}),
    ...(options.s3TimeoutMs !== undefined ? { requestTimeoutMs: options.s3TimeoutMs } : {}),
    ...(options.s3Attempts !== undefined ? { maxAttempts: options.s3Attempts } : {}),
    ...(options.s3Credentials !== undefined ? { credentials: options.s3Credentials } : {}),
    ...(options.s3ObjectLock === true ? { objectLock: true } : {}),
  };
  const prefix = parsed.prefix.replace(/^\/+|\/+$/g, '');
  return createLazyStore(`s3://${parsed.bucket}${prefix === '' ? '' : `/${prefix}`}`, async () => {
    const { createS3Store } = await import('./s3-store.js');
    return createS3Store(s3Options);
  });
}
