import { checkS3Endpoint, isValidBucketName } from './s3-names.js';
export { isValidBucketName };
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  type ObjectIdentifier,
  PutObjectCommand,
  PutObjectRetentionCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { fromIni } from '@aws-sdk/credential-provider-ini';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { RepositoryError, UsageError } from '../errors.js';
import { assertListPrefix, assertObjectKey } from './fs-store.js';
import {
  ObjectExistsError,
  ObjectNotFoundError,
  type BucketObjectLock,
  type GetOptions,
  type ObjectRetention,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PendingWrite,
  type PutBody,
  type PutOptions,
  type PutResult,
} from './object-store.js';
import { ByteCounterStage } from '../stream/checksum.js';
import { redactUrl, redactUrlsIn } from './redact.js';

/**
 * The S3 driver (AWS S3, MinIO, R2, B2, ...). Credentials come only from the SDK's default provider chain
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE / web identity / instance metadata), never from these
 * options, so they can never reach a command line, a config file pgdr writes, or a log line.
 */
export type S3RequestChecksums = 'when_supported' | 'when_required';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, '' for the bucket root; leading and trailing '/' are ignored. */
  prefix: string;
  /** For S3-compatible stores, e.g. http://127.0.0.1:9000. Without it the SDK resolves the AWS endpoint. */
  endpoint?: string;
  /** Defaults to 'us-east-1' when an endpoint is given, else to the SDK's chain (AWS_REGION, profile). */
  region?: string;
  /** MinIO and most self-hosted stores need path-style addressing. */
  forcePathStyle?: boolean;
  /** Multipart part size for stream bodies; at least 5 MiB. Default 16 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded in parallel for stream bodies. Default 4. */
  queueSize?: number;
  /** Attempts per request, including the first. Default 5. */
  maxAttempts?: number;
  /**
   * The SDK sends CRC checksums with every upload by default ('when_supported'); older MinIO, B2 and R2 in some
   * modes reject them, and 'when_required' restores the classic behaviour. Without this option the environment
   * variable PGDR_S3_REQUEST_CHECKSUMS is used, then the SDK's own default.
   */
  requestChecksums?: S3RequestChecksums;
  /** Time allowed to open a TCP (and TLS) connection. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Longest silence on an open socket before the request fails. Default 60000 ms. */
  requestTimeoutMs?: number;
  /**
   * Delete with DeleteObjects (1000 keys per request). Some S3-compatible stores reject it (NotImplemented, or a
   * demand for Content-MD5); the driver then falls back to one DeleteObject per key by itself, so this only needs
   * to be false to skip the failed first attempt. Default true.
   */
  batchDelete?: boolean;
  /**
   * A profile of an AWS shared credentials file, for a repository with its own keys (R2 and B2 keys differ); read
   * by the SDK's INI provider. Without it, the SDK's default chain.
   */
  credentials?: { repository: string; file: string | undefined; profile: string | undefined };
  /**
   * The bucket has S3 Object Lock and pgdr writes objects under retention there. Every upload then carries a
   * Content-MD5 (S3 refuses a PutObject or UploadPart with retention without an MD5 or a checksum, and 'when_required'
   * sends no checksum), and a delete removes every version of the key by its version id: a plain DeleteObject on a
   * versioned bucket only adds a delete marker, which would hide a retained object and free nothing. Default false.
   */
  objectLock?: boolean;
}

export const S3_STORE_DEFAULTS = {
  partSizeBytes: 16 * 1024 * 1024,
  queueSize: 4,
  maxAttempts: 5,
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 60_000,
} as const;

const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** Multipart buffers in flight, at most, once parts grow past the configured size. */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
const MIB = 1024 * 1024;
const DELETE_BATCH = 1000;
const RETRY_BASE_DELAY_MS = 100;
const RETRY_MAX_DELAY_MS = 20_000;

/** '' or 'a/b/' (with the trailing slash), so that a full key is always root + key. */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  const bad = trimmed.split('/').find((s) => s === '' || s === '.' || s === '..');
  if (bad !== undefined || trimmed.includes('\\')) {
    throw new UsageError(
      `invalid S3 key prefix ${JSON.stringify(prefix)}`,
      "use a prefix made of non-empty segments without '.', '..' or backslashes, e.g. s3://bucket/pgdr/prod",
    );
  }
  return `${trimmed}/`;
}

export function parseRequestChecksums(value: string | undefined, source: string): S3RequestChecksums | undefined {
  if (value === undefined || value === '') return undefined;
  const normalized = value.trim().toLowerCase();
  if (normalized === 'when_supported' || normalized === 'when_required') return normalized;
  throw new UsageError(
    `${source} must be when_supported or when_required, got ${JSON.stringify(value)}`,
    'use when_required for S3-compatible stores that reject CRC checksums, else when_supported',
  );
}

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`S3 option ${name} must be an integer of at least ${min}, got ${value}`, `fix ${name}`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Error classification

interface ErrorFacts {
  name: string | undefined;
  status: number | undefined;
  code: string | undefined;
  message: string;
  attempts: number | undefined;
}

function errorFacts(err: unknown): ErrorFacts {
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>;
  const metadata = e.$metadata as { httpStatusCode?: number; attempts?: number } | undefined;
  const response = e.$response as { statusCode?: number } | undefined;
  let code = typeof e.code === 'string' ? e.code : undefined;
  // Happy-eyeballs connects report an AggregateError; the cause chain carries the socket error.
  const nested = [e.errors, e.cause].flat().filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
  for (const inner of nested) {
    if (code === undefined && typeof inner.code === 'string') code = inner.code;
  }
  const name = typeof e.Code === 'string' ? e.Code : typeof e.name === 'string' ? e.name : undefined;
  return {
    name,
    status: metadata?.httpStatusCode ?? response?.statusCode,
    code,
    message: typeof e.message === 'string' ? e.message : String(err),
    attempts: metadata?.attempts,
  };
}

const CREDENTIAL_ERRORS = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
  'AuthorizationHeaderMalformed',
  'Forbidden',
  'AllAccessDisabled',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
]);
const THROTTLING_ERRORS = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'BandwidthLimitExceeded',
]);
/** Node's (OpenSSL's) codes for a server certificate it does not trust. */
const TLS_TRUST_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const TRANSIENT_ERRORS = new Set(['RequestTimeout', 'RequestTimeoutException', 'InternalError', 'ServiceUnavailable']);

function isNetworkFailure(facts: ErrorFacts): boolean {
  return (
    (facts.code !== undefined && NETWORK_CODES.has(facts.code)) ||
    facts.name === 'TimeoutError' ||
    /socket hang up|connection timed out|timed out without establishing/i.test(facts.message)
  );
}

/** Worth another attempt: throttling, server-side failures, dropped or refused connections. */
export function isRetryableS3Error(err: unknown): boolean {
  const facts = errorFacts(err);
  if (isNetworkFailure(facts)) return true;
  if (facts.name !== undefined && (THROTTLING_ERRORS.has(facts.name) || TRANSIENT_ERRORS.has(facts.name))) return true;
  return facts.status !== undefined && (facts.status === 429 || facts.status >= 500);
}

export interface S3FailureContext {
  /** `s3://bucket/prefix`, no credentials. */
  location: string;
  bucket: string;
  /** Human label of the endpoint: the redacted URL, or "AWS S3". */
  endpoint: string;
  /** What pgdr was doing: "put", "get", "list", ... */
  operation: string;
  key?: string;
  /** Attempts made, when the retry loop is pgdr's own rather than the SDK's. */
  attempts?: number;
}

/**
 * Turns whatever the SDK or the socket threw into a RepositoryError with one line saying what went wrong and one
 * saying what to do. The original error stays as `cause` for --debug; nothing here ever includes a secret.
 */
export function toRepositoryError(err: unknown, context: S3FailureContext): RepositoryError | UsageError {
  if (err instanceof RepositoryError || err instanceof UsageError) return err;
  const facts = errorFacts(err);
  const where = context.key === undefined ? context.location : `${context.location.replace(/\/$/, '')}/${context.key}`;
  const attemptCount = context.attempts ?? facts.attempts;
  const attempts = attemptCount !== undefined && attemptCount > 1 ? ` after ${attemptCount} attempts` : '';

  if (facts.name === 'CredentialsProviderError' || /could not load credentials/i.test(facts.message)) {
    return new RepositoryError(
      `no S3 credentials found for ${context.location}`,
      'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of pgdr',
      err,
    );
  }
  if (/region is missing/i.test(facts.message)) {
    return new RepositoryError(
      `no S3 region configured for ${context.location}`,
      'set AWS_REGION (e.g. us-east-1), or give --s3-endpoint for an S3-compatible store',
      err,
    );
  }
  if (facts.code !== undefined && TLS_TRUST_ERRORS.has(facts.code)) {
    const reason =
      facts.code === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? 'its certificate does not name this host'
        : /EXPIRED|NOT_YET/.test(facts.code)
          ? 'its certificate is out of its validity period'
          : 'its certificate is not signed by a CA this machine trusts';
    return new RepositoryError(
      `TLS to the S3 endpoint ${context.endpoint} failed: ${reason} (${facts.code})`,
      'for a private CA, point NODE_EXTRA_CA_CERTS at its PEM bundle in pgdr\'s environment (and PostgreSQL\'s, for archive_command); pgdr never turns verification off',
      err,
    );
  }
  if (facts.name === 'NoSuchBucket') {
    return new RepositoryError(
      `S3 bucket ${context.bucket} does not exist at ${context.endpoint}`,
      `create the bucket (e.g. aws s3 mb s3://${context.bucket}) or fix the repository URL`,
      err,
    );
  }
  if ((facts.name !== undefined && CREDENTIAL_ERRORS.has(facts.name)) || facts.status === 403) {
    return new RepositoryError(
      `S3 rejected the credentials for ${context.location} (${facts.name ?? 'HTTP 403'} on ${context.operation})`,
      'check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that they may read and write this bucket and prefix',
      err,
    );
  }
  if (isNetworkFailure(facts)) {
    const why = facts.code ?? facts.name ?? 'network error';
    return new RepositoryError(
      `cannot reach the S3 endpoint ${context.endpoint} (${why} during ${context.operation}${attempts})`,
      'check --s3-endpoint / PGDR_S3_ENDPOINT, DNS and the network, and that the storage service is running',
      err,
    );
  }
  if (facts.name === 'InvalidRange' || facts.status === 416) {
    return new RepositoryError(
      `byte range is beyond the end of ${where}`,
      'the object is shorter than its manifest says: run pgdr verify',
      err,
    );
  }
  if (context.operation === 'get' && /checksum mismatch/i.test(facts.message)) {
    return new RepositoryError(
      `the bytes read from ${where} do not match the checksum S3 stored with them`,
      'retry; if it persists the stored object is damaged: run pgdr verify',
      err,
    );
  }
  if (/checksum|crc32|crc64|x-amz-trailer|content-sha256|aws-chunked|streaming-unsigned/i.test(`${facts.name} ${facts.message}`)) {
    return new RepositoryError(
      `S3 refused the request checksum on ${context.operation} ${where} (${facts.name ?? 'error'})`,
      'this store may not support the SDK CRC checksums: set PGDR_S3_REQUEST_CHECKSUMS=when_required',
      err,
    );
  }
  if (isRetryableS3Error(err)) {
    return new RepositoryError(
      `S3 kept failing on ${context.operation} ${where} (${facts.name ?? 'error'}, HTTP ${facts.status ?? '?'}${attempts})`,
      'the storage service is overloaded or failing: retry later and check its status',
      err,
    );
  }
  return new RepositoryError(
    `S3 ${context.operation} failed on ${where}: ${facts.name ?? 'error'}: ${redactUrlsIn(facts.message).split('\n')[0]}`,
    'run with --debug for the full error; check the bucket, prefix and endpoint',
    err,
  );
}

/** What S3 (and MinIO) answer to a write with retention into a bucket that has no Object Lock. */
function isMissingObjectLock(err: unknown): boolean {
  const facts = errorFacts(err);
  return (facts.name === 'InvalidRequest' || facts.status === 400) && /object ?lock/i.test(facts.message);
}

/** A version under retention (or a legal hold) refused a delete: AccessDenied, in MinIO's words "WORM protected". */
function isRetainedRefusal(code: string | undefined, message: string | undefined): boolean {
  return /WORM|retention|object ?lock|legal hold/i.test(`${message ?? ''}`) || code === 'ObjectLocked' || code === 'InvalidRetentionPeriod';
}

function isNotFound(err: unknown): boolean {
  const facts = errorFacts(err);
  return facts.name === 'NoSuchKey' || facts.name === 'NotFound' || (facts.status === 404 && facts.name !== 'NoSuchBucket');
}

function isPreconditionFailure(err: unknown): boolean {
  const facts = errorFacts(err);
  return (
    facts.name === 'PreconditionFailed' ||
    // 409 only under this name: another conditional write to the key is in flight, so it is being created.
    facts.name === 'ConditionalRequestConflict' ||
    facts.status === 412
  );
}

function refusesBatchDelete(err: unknown): boolean {
  const facts = errorFacts(err);
  return (
    facts.name === 'NotImplemented' ||
    facts.name === 'MissingContentMD5' ||
    facts.status === 501 ||
    (facts.name === 'InvalidRequest' && /md5|checksum/i.test(facts.message))
  );
}

function retryDelay(attempt: number): number {
  const ceiling = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

// ---------------------------------------------------------------------------------------------------------------

/** Marks a failure to read the local file, which no retry against S3 will cure. */
class SourceFileError extends Error {}

class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly bucket: string;
  private readonly root: string;
  private readonly endpointLabel: string;
  private readonly handler: NodeHttpHandler;
  /** Retries inside the SDK: every body it sends is a buffer it can resend. */
  private readonly client: S3Client;
  /** For streamed file bodies: one attempt per request, retried here with a freshly opened file. */
  private readonly singleAttemptClient: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly maxAttempts: number;
  private batchDelete: boolean;
  private readonly objectLockEnabled: boolean;
  /** A 404 on HEAD has no body, so "no such key" and "no such bucket" look alike until the bucket is known. */
  private bucketConfirmed = false;

  constructor(options: S3StoreOptions) {
    if (!isValidBucketName(options.bucket)) {
      throw new UsageError(
        `invalid S3 bucket name ${JSON.stringify(options.bucket)}`,
        'bucket names are 3-63 characters of lower-case letters, digits, dots and hyphens',
      );
    }
    this.bucket = options.bucket;
    this.root = normalizePrefix(options.prefix);
    this.location = `s3://${this.bucket}${this.root === '' ? '' : `/${this.root.slice(0, -1)}`}`;

    const endpoint = checkS3Endpoint(options.endpoint);
    const region = options.region ?? (endpoint !== undefined ? 'us-east-1' : undefined);
    this.endpointLabel = endpoint !== undefined ? redactUrl(endpoint) : `AWS S3${region ? ` (${region})` : ''}`;

    this.partSize = positiveInt('partSizeBytes', options.partSizeBytes, S3_STORE_DEFAULTS.partSizeBytes, MIN_PART_SIZE);
    this.queueSize = positiveInt('queueSize', options.queueSize, S3_STORE_DEFAULTS.queueSize);
    this.maxAttempts = positiveInt('maxAttempts', options.maxAttempts, S3_STORE_DEFAULTS.maxAttempts);
    const connectTimeoutMs = positiveInt('connectTimeoutMs', options.connectTimeoutMs, S3_STORE_DEFAULTS.connectTimeoutMs);
    const requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs, S3_STORE_DEFAULTS.requestTimeoutMs);
    this.batchDelete = options.batchDelete ?? true;
    this.objectLockEnabled = options.objectLock === true;

    const checksums =
      options.requestChecksums ?? parseRequestChecksums(process.env.PGDR_S3_REQUEST_CHECKSUMS, 'PGDR_S3_REQUEST_CHECKSUMS');
    const sdkChecksums = checksums === undefined ? undefined : checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';

    // Without both timeouts a stopped or black-holed server leaves a request waiting forever.
    const agentOptions = { keepAlive: true, maxSockets: Math.max(16, this.queueSize * 2) };
    this.handler = new NodeHttpHandler({
      connectionTimeout: connectTimeoutMs,
      socketTimeout: requestTimeoutMs,
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    });
    const config: S3ClientConfig = {
      requestHandler: this.handler,
      ...(options.credentials !== undefined ? { credentials: sharedFileCredentials(options.credentials) } : {}),
      ...(region !== undefined ? { region } : {}),
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(options.forcePathStyle !== undefined ? { forcePathStyle: options.forcePathStyle } : {}),
      ...(sdkChecksums !== undefined
        ? { requestChecksumCalculation: sdkChecksums, responseChecksumValidation: sdkChecksums }
        : {}),
    };
    // pgdr supports Node 20; the SDK's notice about its future Node 22 requirement would land in PostgreSQL's log
    // on every archive_command run.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({ ...config, maxAttempts: this.maxAttempts });
    this.singleAttemptClient = new S3Client({ ...config, maxAttempts: 1 });
    if (this.objectLockEnabled) {
      addContentMd5(this.client);
      addContentMd5(this.singleAttemptClient);
    }
  }

  private fullKey(key: string): string {
    return this.root + key;
  }

  private failure(err: unknown, operation: string, key?: string, attempts?: number): RepositoryError | UsageError {
    if (isMissingObjectLock(err)) {
      return new UsageError(
        `S3 bucket ${this.bucket} at ${this.endpointLabel} has no Object Lock, but pgdr is set to write with retention (${operation} ${key ?? ''})`.replace(' )', ')'),
        'create the bucket with Object Lock enabled (see docs/configuration.md, "Object Lock"), or unset PGDR_OBJECT_LOCK_MODE / objectLockMode',
        err,
      );
    }
    return toRepositoryError(err, {
      location: this.location,
      bucket: this.bucket,
      endpoint: this.endpointLabel,
      operation,
      ...(key !== undefined ? { key } : {}),
      ...(attempts !== undefined ? { attempts } : {}),
    });
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<PutResult> {
    assertObjectKey(key);
    switch (body.kind) {
      case 'buffer':
        return this.putBuffer(key, body.data, options);
      case 'file':
        return this.putFile(key, body.path, options);
      case 'stream':
        return this.putStream(key, body.open, options);
    }
  }

  private putParams(key: string, options: PutOptions) {
    return {
      Bucket: this.bucket,
      Key: this.fullKey(key),
      ...(options.contentType !== undefined ? { ContentType: options.contentType } : {}),
      // A retried conditional put whose first attempt did land also fails with 412; callers that care compare
      // the stored content (wal push does), so "exists" stays the safe answer.
      ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      // On a multipart upload these go with CreateMultipartUpload, which lib-storage sends with the same params.
      ...(options.retention !== undefined
        ? { ObjectLockMode: sdkRetentionMode(options.retention), ObjectLockRetainUntilDate: options.retention.retainUntil }
        : {}),
    };
  }

  private async putBuffer(key: string, data: Buffer, options: PutOptions): Promise<PutResult> {
    try {
      await this.client.send(new PutObjectCommand({ ...this.putParams(key, options), Body: data, ContentLength: data.length }));
    } catch (err) {
      if (options.ifNoneMatch && isPreconditionFailure(err)) throw new ObjectExistsError(key);
      throw this.failure(err, 'put', key);
    }
    this.bucketConfirmed = true;
    options.onProgress?.(data.length);
    return { key, size: data.length };
  }

  /**
   * The SDK cannot resend a stream it has consumed, so a file is re-opened for each attempt and the retry loop
   * lives here, with the same backoff shape as the SDK's.
   */
  private async putFile(key: string, path: string, options: PutOptions): Promise<PutResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        const size = await this.putFileOnce(key, path, options);
        this.bucketConfirmed = true;
        return { key, size };
      } catch (err) {
        if (err instanceof SourceFileError) {
          throw new RepositoryError(
            `cannot read ${path} to store it as ${key}: ${err.message}`,
            'check that the file exists and is readable by pgdr',
            err.cause,
          );
        }
        if (options.ifNoneMatch && isPreconditionFailure(err)) throw new ObjectExistsError(key);
        if (attempt >= this.maxAttempts || !isRetryableS3Error(err)) {
          throw this.failure(err, 'put', key, attempt);
        }
        await sleep(retryDelay(attempt));
      }
    }
  }

  private async putFileOnce(key: string, path: string, options: PutOptions): Promise<number> {
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      throw new SourceFileError((err as Error).message, { cause: err });
    }
    // A file body streams, so the Content-MD5 that retention needs (see addContentMd5) is computed from the file first.
    const contentMd5 = this.objectLockEnabled ? await fileMd5(path).catch((err: unknown) => {
      throw new SourceFileError((err as Error).message, { cause: err });
    }) : undefined;
    const file = createReadStream(path);
    const counter = new ByteCounterStage(options.onProgress);
    let readFailure: unknown;
    file.once('error', (err) => {
      readFailure = err;
    });
    // The pipeline's own rejection is observed through the request failing; this keeps it from going unhandled.
    const piping = pipeline(file, counter).catch(() => undefined);
    try {
      await this.singleAttemptClient.send(
        new PutObjectCommand({ ...this.putParams(key, options), Body: counter, ContentLength: size, ...(contentMd5 !== undefined ? { ContentMD5: contentMd5 } : {}) }),
      );
    } catch (err) {
      if (readFailure !== undefined) throw new SourceFileError((readFailure as Error).message, { cause: readFailure });
      throw err;
    } finally {
      file.destroy();
      counter.destroy();
      await piping;
    }
    if (counter.bytes !== size) {
      throw new RepositoryError(
        `${path} changed size while it was stored as ${key} (${size} bytes expected, ${counter.bytes} read)`,
        'store files only once they are complete',
      );
    }
    return size;
  }

  /**
   * Stream bodies go up as a multipart upload: lib-storage buffers one part per slot and the SDK retries each
   * part on its own. Two duties lib-storage leaves to us: when a part fails for good, the source must stop being
   * read (or its producer blocks on back-pressure forever); and a failure of the source itself is the caller's
   * error, passed through unchanged, while lib-storage aborts the multipart upload.
   */
  private async putStream(key: string, open: () => Readable, options: PutOptions): Promise<PutResult> {
    const source = open();
    const counter = new ByteCounterStage();
    let sourceError: unknown;
    source.once('error', (err) => {
      sourceError = err;
    });
    const piping = pipeline(source, counter).catch(() => undefined);

    let firstSendFailure: unknown;
    const stopReading = (): void => {
      if (!counter.destroyed) counter.destroy();
      if (!source.destroyed) source.destroy();
    };
    const client = this.client;
    // lib-storage offers no hook for "a part failed": watch the client it sends through instead.
    const watchedClient = new Proxy(client, {
      get(target, property) {
        if (property !== 'send') return Reflect.get(target, property, target) as unknown;
        return (...args: unknown[]) =>
          (Reflect.apply(target.send, target, args) as Promise<unknown>).catch((err: unknown) => {
            firstSendFailure ??= err;
            stopReading();
            throw err;
          });
      },
    });

    const upload = new Upload({
      client: watchedClient,
      params: { ...this.putParams(key, options), Body: counter },
      ...multipartShape(this.partSize, this.queueSize, options.expectedBytes),
      leavePartsOnError: false,
    });
    if (options.onProgress) {
      const onProgress = options.onProgress;
      upload.on('httpUploadProgress', (progress) => {
        if (progress.loaded !== undefined) onProgress(progress.loaded);
      });
    }
    try {
      await upload.done();
    } catch (err) {
      stopReading();
      await piping;
      if (sourceError !== undefined) throw sourceError;
      const cause = firstSendFailure ?? err;
      if (options.ifNoneMatch && isPreconditionFailure(cause)) throw new ObjectExistsError(key);
      throw this.failure(cause, 'put', key);
    }
    await piping;
    this.bucketConfirmed = true;
    options.onProgress?.(counter.bytes);
    return { key, size: counter.bytes };
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    assertObjectKey(key);
    const range = options.range;
    if (range !== undefined) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
        throw new RepositoryError(`invalid byte range ${start}-${end} for ${key}`, 'this is a bug in pgdr: report it');
      }
    }
    let body: Readable;
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.fullKey(key),
          ...(range !== undefined ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      body = response.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key);
      throw this.failure(err, 'get', key);
    }
    this.bucketConfirmed = true;
    // A connection lost mid-body should reach the reader as a RepositoryError, like every other storage failure.
    const out = new PassThrough();
    pipeline(body, out).catch((err: unknown) => {
      if (!out.destroyed) out.destroy(this.failure(err, 'get', key));
    });
    return out;
  }

  async getBuffer(key: string): Promise<Buffer> {
    assertObjectKey(key);
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      if (response.Body === undefined) return Buffer.alloc(0);
      const bytes = await response.Body.transformToByteArray();
      this.bucketConfirmed = true;
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key);
      throw this.failure(err, 'get', key);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertObjectKey(key);
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      this.bucketConfirmed = true;
      const info: ObjectInfo = { key, size: response.ContentLength ?? 0, lastModified: response.LastModified ?? new Date(0) };
      if (response.ObjectLockMode !== undefined && response.ObjectLockRetainUntilDate !== undefined) {
        info.retention = { mode: response.ObjectLockMode === 'COMPLIANCE' ? 'compliance' : 'governance', retainUntil: new Date(response.ObjectLockRetainUntilDate) };
      }
      return info;
    } catch (err) {
      if (!isNotFound(err)) throw this.failure(err, 'head', key);
    }
    if (!this.bucketConfirmed) await this.confirmBucket();
    return null;
  }

  private async confirmBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      this.bucketConfirmed = true;
    } catch (err) {
      const facts = errorFacts(err);
      if (facts.status === 404 || facts.name === 'NotFound') {
        throw this.failure(Object.assign(new Error(`bucket ${this.bucket} not found`), { name: 'NoSuchBucket', cause: err }), 'head');
      }
      throw this.failure(err, 'head bucket');
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    assertListPrefix(prefix);
    if (options.startAfter !== undefined) assertListPrefix(options.startAfter);
    for await (const page of this.listPages(prefix, undefined, options.startAfter)) {
      for (const item of page.Contents ?? []) {
        const fullKey = item.Key;
        // Folder markers made by consoles ("dir/") are not objects.
        if (fullKey === undefined || !fullKey.startsWith(this.root) || fullKey.endsWith('/')) continue;
        yield {
          key: fullKey.slice(this.root.length),
          size: item.Size ?? 0,
          lastModified: item.LastModified ?? new Date(0),
        };
      }
    }
  }

  async *listPrefixes(prefix: string): AsyncIterable<string> {
    assertListPrefix(prefix);
    for await (const page of this.listPages(prefix, '/', undefined)) {
      for (const common of page.CommonPrefixes ?? []) {
        const full = common.Prefix;
        if (full === undefined || !full.startsWith(this.root)) continue;
        yield full.slice(this.root.length);
      }
    }
  }

  /** ListObjectsV2 page after page; StartAfter goes with the first request only (the token carries it on). */
  private async *listPages(prefix: string, delimiter: string | undefined, startAfter: string | undefined): AsyncGenerator<ListObjectsV2CommandOutput> {
    let continuationToken: string | undefined;
    do {
      let response;
      try {
        response = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.fullKey(prefix),
            ...(delimiter !== undefined ? { Delimiter: delimiter } : {}),
            ...(continuationToken !== undefined ? { ContinuationToken: continuationToken } : {}),
            ...(startAfter !== undefined && continuationToken === undefined ? { StartAfter: this.fullKey(startAfter) } : {}),
          }),
        );
      } catch (err) {
        throw this.failure(err, 'list', prefix === '' ? undefined : prefix);
      }
      this.bucketConfirmed = true;
      yield response;
      continuationToken = response.IsTruncated ? response.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) assertObjectKey(key);
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += DELETE_BATCH) {
      const batch = unique.slice(i, i + DELETE_BATCH);
      if (this.objectLockEnabled) {
        await this.deleteVersions(batch);
        continue;
      }
      if (this.batchDelete) {
        try {
          await this.deleteBatch(batch);
          continue;
        } catch (err) {
          if (!refusesBatchDelete(err)) throw err instanceof RepositoryError ? err : this.failure(err, 'delete', batch[0]);
          this.batchDelete = false;
        }
      }
      await this.deleteOneByOne(batch);
    }
  }

  private async deleteBatch(batch: string[]): Promise<void> {
    const response = await this.client.send(
      new DeleteObjectsCommand({
        Bucket: this.bucket,
        Delete: { Objects: batch.map((key) => ({ Key: this.fullKey(key) })), Quiet: true },
      }),
    );
    // DeleteObjects answers 200 even when some keys failed: the failures are listed in the body.
    const errors = (response.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    const first = errors[0];
    if (first !== undefined) {
      const key = first.Key?.startsWith(this.root) ? first.Key.slice(this.root.length) : (first.Key ?? '?');
      throw this.failure(
        Object.assign(new Error(first.Message ?? 'delete failed'), { name: first.Code ?? 'DeleteError' }),
        `delete (${errors.length} of ${batch.length} keys failed)`,
        key,
      );
    }
  }

  private async deleteOneByOne(batch: string[]): Promise<void> {
    let next = 0;
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (next < batch.length && failure === undefined) {
        const key = batch[next++] as string;
        try {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
        } catch (err) {
          if (!isNotFound(err)) failure ??= this.failure(err, 'delete', key);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.queueSize, batch.length) }, worker));
    if (failure !== undefined) throw failure;
  }

  /**
   * On a bucket with Object Lock (always versioned): every version and delete marker of each key, by version id. A
   * version still under retention refuses; that is reported as such, and the versions already gone stay gone.
   */
  private async deleteVersions(batch: string[]): Promise<void> {
    const wanted = new Set(batch.map((key) => this.fullKey(key)));
    const targets = await this.listVersionsOf(wanted);
    for (let i = 0; i < targets.length; i += DELETE_BATCH) {
      const chunk = targets.slice(i, i + DELETE_BATCH);
      let errors: { Key?: string; Code?: string; Message?: string }[] = [];
      try {
        const response = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: chunk, Quiet: true } }));
        errors = response.Errors ?? [];
      } catch (err) {
        if (!refusesBatchDelete(err)) throw this.failure(err, 'delete', batch[0]);
        errors = await this.deleteVersionsOneByOne(chunk);
      }
      errors = errors.filter((e) => e.Code !== 'NoSuchKey' && e.Code !== 'NoSuchVersion');
      const first = errors[0];
      if (first === undefined) continue;
      const key = first.Key?.startsWith(this.root) ? first.Key.slice(this.root.length) : (first.Key ?? '?');
      if (isRetainedRefusal(first.Code, first.Message)) {
        throw new RepositoryError(
          `cannot delete ${this.location}/${key}: it is under Object Lock retention (${errors.length} version(s) refused)`,
          'it can be deleted once its retain-until date has passed (pgdr expire says when, and leaves retained objects alone)',
        );
      }
      throw this.failure(Object.assign(new Error(first.Message ?? 'delete failed'), { name: first.Code ?? 'DeleteError' }), `delete (${errors.length} versions failed)`, key);
    }
  }

  private async deleteVersionsOneByOne(chunk: ObjectIdentifier[]): Promise<{ Key?: string; Code?: string; Message?: string }[]> {
    const errors: { Key?: string; Code?: string; Message?: string }[] = [];
    for (const target of chunk) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: target.Key, VersionId: target.VersionId }));
      } catch (err) {
        if (isNotFound(err)) continue;
        const facts = errorFacts(err);
        if (facts.status === 403 || facts.name === 'AccessDenied') errors.push({ Key: target.Key, Code: facts.name, Message: facts.message });
        else throw this.failure(err, 'delete', target.Key?.slice(this.root.length));
      }
    }
    return errors;
  }

  /** The versions and delete markers of exactly these keys, listed from the first of them to the last (keys sort). */
  private async listVersionsOf(fullKeys: ReadonlySet<string>): Promise<ObjectIdentifier[]> {
    const sorted = [...fullKeys].sort();
    const first = sorted[0];
    const last = sorted[sorted.length - 1];
    if (first === undefined || last === undefined) return [];
    let common = first;
    while (!last.startsWith(common)) common = common.slice(0, -1);
    const out: ObjectIdentifier[] = [];
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (;;) {
      let response;
      try {
        response = await this.client.send(
          new ListObjectVersionsCommand({
            Bucket: this.bucket,
            Prefix: common,
            ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
            ...(versionIdMarker !== undefined ? { VersionIdMarker: versionIdMarker } : {}),
          }),
        );
      } catch (err) {
        throw this.failure(err, 'list object versions', common.slice(this.root.length) || undefined);
      }
      let pastLast = false;
      for (const entry of [...(response.Versions ?? []), ...(response.DeleteMarkers ?? [])]) {
        if (entry.Key === undefined) continue;
        if (entry.Key > last) pastLast = true;
        if (fullKeys.has(entry.Key)) out.push({ Key: entry.Key, ...(entry.VersionId !== undefined ? { VersionId: entry.VersionId } : {}) });
      }
      if (!response.IsTruncated || pastLast) return out;
      keyMarker = response.NextKeyMarker;
      versionIdMarker = response.NextVersionIdMarker;
      if (keyMarker === undefined) return out;
    }
  }

  async objectLock(): Promise<BucketObjectLock> {
    try {
      const response = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      const config = response.ObjectLockConfiguration;
      const rule = config?.Rule?.DefaultRetention;
      return {
        enabled: config?.ObjectLockEnabled === 'Enabled',
        defaultRetention:
          rule?.Mode !== undefined
            ? { mode: rule.Mode === 'COMPLIANCE' ? 'compliance' : 'governance', ...(rule.Days !== undefined ? { days: rule.Days } : {}), ...(rule.Years !== undefined ? { years: rule.Years } : {}) }
            : null,
      };
    } catch (err) {
      const facts = errorFacts(err);
      if (facts.name === 'ObjectLockConfigurationNotFoundError' || /object ?lock configuration.*(not|does not) exist/i.test(facts.message)) {
        return { enabled: false, defaultRetention: null };
      }
      throw this.failure(err, 'get object lock configuration');
    }
  }

  async extendRetention(key: string, retention: ObjectRetention): Promise<void> {
    assertObjectKey(key);
    try {
      await this.client.send(
        new PutObjectRetentionCommand({
          Bucket: this.bucket,
          Key: this.fullKey(key),
          Retention: { Mode: sdkRetentionMode(retention), RetainUntilDate: retention.retainUntil },
        }),
      );
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key);
      throw this.failure(err, 'extend retention', key);
    }
  }

  /**
   * Multipart uploads under the prefix that were neither completed nor aborted. MinIO answers a prefix that is not
   * a whole key with nothing, so an empty answer is asked again for the whole bucket and filtered here (a policy that
   * allows only the prefix refuses that second question: then the first answer stands).
   */
  async *listPendingWrites(prefix: string): AsyncIterable<PendingWrite> {
    assertListPrefix(prefix);
    const wanted = this.fullKey(prefix);
    let found = 0;
    for await (const write of this.listUploads(wanted)) {
      found++;
      yield write;
    }
    if (found > 0 || wanted === '') return;
    try {
      for await (const write of this.listUploads('')) if (this.fullKey(write.key).startsWith(wanted)) yield write;
    } catch (err) {
      if (!(err instanceof RepositoryError && /rejected the credentials/.test(err.message))) throw err;
    }
  }

  private async *listUploads(fullPrefix: string): AsyncIterable<PendingWrite> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let response;
      try {
        response = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            ...(fullPrefix !== '' ? { Prefix: fullPrefix } : {}),
            ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
            ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {}),
          }),
        );
      } catch (err) {
        throw this.failure(err, 'list multipart uploads');
      }
      for (const upload of response.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || !upload.Key.startsWith(this.root)) continue;
        yield { key: upload.Key.slice(this.root.length), id: upload.UploadId, startedAt: upload.Initiated ?? new Date(0), size: null };
      }
      if (!response.IsTruncated) return;
      keyMarker = response.NextKeyMarker;
      uploadIdMarker = response.NextUploadIdMarker;
      if (keyMarker === undefined && uploadIdMarker === undefined) return;
    }
  }

  async abortPendingWrite(write: PendingWrite): Promise<void> {
    assertObjectKey(write.key);
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.fullKey(write.key), UploadId: write.id }));
    } catch (err) {
      if (errorFacts(err).name === 'NoSuchUpload' || isNotFound(err)) return;
      throw this.failure(err, 'abort multipart upload', write.key);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.singleAttemptClient.destroy();
    this.handler.destroy();
  }
}

/**
 * The SDK's INI provider for one file and profile (its module loads with this driver, as the default chain loads it
 * anyway; a dynamic import of it would not survive bundling). The environment's AWS_ACCESS_KEY_ID never overrides it:
 * each repository signs with its own keys.
 */
function sharedFileCredentials(credentials: NonNullable<S3StoreOptions['credentials']>): AwsCredentialIdentityProvider {
  let provider: AwsCredentialIdentityProvider | undefined;
  return async () => {
    provider ??= fromIni({
      profile: credentials.profile ?? 'default',
      ...(credentials.file !== undefined ? { filepath: credentials.file } : {}),
    });
    try {
      return await provider();
    } catch (err) {
      throw new UsageError(
        `repository ${credentials.repository}: no usable S3 credentials in profile [${credentials.profile ?? 'default'}] of ${credentials.file ?? 'the AWS credentials file'} (${(err as Error).message.split('\n')[0]})`,
        'the profile needs aws_access_key_id and aws_secret_access_key (or another source the AWS SDK reads)',
        err,
      );
    }
  };
}

function sdkRetentionMode(retention: ObjectRetention): 'GOVERNANCE' | 'COMPLIANCE' {
  return retention.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE';
}

async function fileMd5(path: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(path), hash);
  return hash.digest('base64');
}

/**
 * S3 refuses an upload with Object Lock retention that carries neither Content-MD5 nor a checksum header, and with
 * requestChecksumCalculation 'when_required' (what B2 and R2 need: they reject the SDK's CRC32 headers) the SDK sends
 * neither on PutObject or UploadPart. This adds Content-MD5 to every such request whose body is already in memory
 * (buffers, and the parts lib-storage cuts); file bodies get it from putFile.
 */
function addContentMd5(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown } | undefined;
      const command = context.commandName;
      if ((command === 'PutObjectCommand' || command === 'UploadPartCommand') && request?.headers !== undefined && request.body instanceof Uint8Array) {
        const has = Object.keys(request.headers).some((h) => h.toLowerCase() === 'content-md5');
        if (!has) request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'pgdrContentMd5', override: true },
  );
}

export function createS3Store(options: S3StoreOptions): ObjectStore {
  return new S3ObjectStore(options);
}

/**
 * Part size and parallel parts for a stream of about `expectedBytes`. S3 refuses part 10,001, so a 16 MiB part caps
 * an object near 156 GiB: a larger estimate (with 10% to spare for growth during the backup) gets larger parts,
 * rounded up to whole MiB. Larger parts mean fewer in flight, so the buffers stay near MAX_BUFFERED_BYTES until one
 * part alone is bigger than that (an estimate above ~600 GiB); then memory grows with the part.
 */
export function multipartShape(partSize: number, queueSize: number, expectedBytes: number | undefined): { partSize: number; queueSize: number } {
  if (expectedBytes === undefined || !Number.isFinite(expectedBytes) || expectedBytes <= 0) return { partSize, queueSize };
  const needed = Math.ceil((expectedBytes * 1.1) / MAX_PARTS / MIB) * MIB;
  if (needed <= partSize) return { partSize, queueSize };
  return { partSize: needed, queueSize: Math.max(1, Math.min(queueSize, Math.floor(MAX_BUFFERED_BYTES / needed))) };
}
