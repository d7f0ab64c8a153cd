import { describe, expect, it } from 'vitest';
import { RepositoryError, UsageError } from '../../../src/errors.js';
import {
  createS3Store,
  isRetryableS3Error,
  isValidBucketName,
  parseRequestChecksums,
  toRepositoryError,
  type S3FailureContext,
} from '../../../src/storage/s3-store.js';

const context: S3FailureContext = {
  location: 's3://bucket/prefix',
  bucket: 'bucket',
  endpoint: 'http://127.0.0.1:9000',
  operation: 'put',
  key: 'default/cluster.json',
};

/** Shaped like the SDK's service exceptions: name, $metadata.httpStatusCode, message. */
function serviceError(name: string, status: number, message = `${name} happened`): Error {
  return Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status, attempts: 1 } });
}

function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:9000`), { code });
}

describe('toRepositoryError', () => {
  it('names credentials for every kind of authentication failure', () => {
    for (const err of [
      serviceError('InvalidAccessKeyId', 403),
      serviceError('SignatureDoesNotMatch', 403),
      serviceError('AccessDenied', 403),
      serviceError('Forbidden', 403),
      serviceError('ExpiredToken', 400),
    ]) {
      const mapped = toRepositoryError(err, context);
      expect(mapped).toBeInstanceOf(RepositoryError);
      expect(mapped.message).toMatch(/^S3 rejected the credentials for s3:\/\/bucket\/prefix/);
      expect(mapped.hint).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      expect(mapped.cause).toBe(err);
      expect(mapped.exitCode).toBe(3);
    }
  });

  it('tells to create a missing bucket', () => {
    const mapped = toRepositoryError(serviceError('NoSuchBucket', 404), context);
    expect(mapped.message).toBe('S3 bucket bucket does not exist at http://127.0.0.1:9000');
    expect(mapped.hint).toMatch(/create the bucket/);
  });

  it('says the endpoint cannot be reached for refused, unknown, reset and timed-out connections', () => {
    const aggregate = Object.assign(new AggregateError([socketError('ECONNREFUSED')], 'connect failed'), {});
    const timeout = Object.assign(new Error('Socket timed out without establishing a connection within 5000 ms'), { name: 'TimeoutError' });
    for (const err of [socketError('ECONNREFUSED'), socketError('ENOTFOUND'), socketError('ECONNRESET'), socketError('EPIPE'), aggregate, timeout]) {
      const mapped = toRepositoryError(err, context);
      expect(mapped.message).toMatch(/^cannot reach the S3 endpoint http:\/\/127\.0\.0\.1:9000 \(/);
      expect(mapped.hint).toMatch(/PGDR_S3_ENDPOINT/);
    }
    expect(toRepositoryError(aggregate, context).message).toContain('ECONNREFUSED');
  });

  it('reports missing credentials and a missing region with the variable to set', () => {
    const noCreds = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    expect(toRepositoryError(noCreds, context).hint).toMatch(/AWS_ACCESS_KEY_ID/);
    expect(toRepositoryError(new Error('Region is missing'), context).hint).toMatch(/AWS_REGION/);
  });

  it('points at PGDR_S3_REQUEST_CHECKSUMS when a store refuses the checksum headers', () => {
    const err = serviceError('InvalidArgument', 400, 'Unsupported header x-amz-checksum-crc32 received for this API call.');
    expect(toRepositoryError(err, context).hint).toMatch(/PGDR_S3_REQUEST_CHECKSUMS=when_required/);
  });

  it('does not blame the store settings when a download fails its checksum', () => {
    const err = new Error('Checksum mismatch: expected "abc" but received "def" in response header "x-amz-checksum-crc32".');
    const mapped = toRepositoryError(err, { ...context, operation: 'get' });
    expect(mapped.message).toBe('the bytes read from s3://bucket/prefix/default/cluster.json do not match the checksum S3 stored with them');
    expect(mapped.hint).toMatch(/pgdr verify/);
  });

  it('keeps server failures and unknown errors to one line, with secrets in URLs redacted', () => {
    const slow = toRepositoryError(serviceError('SlowDown', 503), { ...context, attempts: 5 });
    expect(slow.message).toBe('S3 kept failing on put s3://bucket/prefix/default/cluster.json (SlowDown, HTTP 503 after 5 attempts)');
    const odd = toRepositoryError(
      serviceError('WeirdError', 400, 'see https://u:p@host/x?X-Amz-Signature=zzz\nsecond line'),
      context,
    );
    expect(odd.message).toBe('S3 put failed on s3://bucket/prefix/default/cluster.json: WeirdError: see https://host/x');
    expect(odd.message).not.toContain('\n');
  });

  it('passes a RepositoryError through', () => {
    const original = new RepositoryError('already mapped', 'hint');
    expect(toRepositoryError(original, context)).toBe(original);
  });
});

describe('isRetryableS3Error', () => {
  it('retries throttling, 5xx and network failures, not client errors', () => {
    expect(isRetryableS3Error(serviceError('SlowDown', 503))).toBe(true);
    expect(isRetryableS3Error(serviceError('InternalError', 500))).toBe(true);
    expect(isRetryableS3Error(serviceError('TooManyRequests', 429))).toBe(true);
    expect(isRetryableS3Error(socketError('ECONNRESET'))).toBe(true);
    expect(isRetryableS3Error(socketError('EPIPE'))).toBe(true);
    expect(isRetryableS3Error(serviceError('AccessDenied', 403))).toBe(false);
    expect(isRetryableS3Error(serviceError('PreconditionFailed', 412))).toBe(false);
    expect(isRetryableS3Error(serviceError('NoSuchBucket', 404))).toBe(false);
    expect(isRetryableS3Error(new Error('plain'))).toBe(false);
  });
});

describe('S3 options', () => {
  it('validates bucket names as S3 does', () => {
    for (const ok of ['abc', 'my-bucket', 'my.bucket', 'a1-b2.c3', 'a'.repeat(63)]) expect(isValidBucketName(ok), ok).toBe(true);
    for (const bad of ['ab', 'ABC', 'a_b', '-ab', 'ab-', 'a..b', '10.0.0.1', 'xn--abc', 'a'.repeat(64), '']) {
      expect(isValidBucketName(bad), bad).toBe(false);
    }
  });

  it('parses the request checksum setting', () => {
    expect(parseRequestChecksums(undefined, 'X')).toBeUndefined();
    expect(parseRequestChecksums('', 'X')).toBeUndefined();
    expect(parseRequestChecksums('WHEN_REQUIRED', 'X')).toBe('when_required');
    expect(parseRequestChecksums(' when_supported ', 'X')).toBe('when_supported');
    expect(() => parseRequestChecksums('never', 'PGDR_S3_REQUEST_CHECKSUMS')).toThrow(/PGDR_S3_REQUEST_CHECKSUMS must be/);
  });

  it('refuses a bad PGDR_S3_REQUEST_CHECKSUMS when no option overrides it', () => {
    const before = process.env.PGDR_S3_REQUEST_CHECKSUMS;
    process.env.PGDR_S3_REQUEST_CHECKSUMS = 'sometimes';
    try {
      expect(() => createS3Store({ bucket: 'bucket', prefix: '' })).toThrow(UsageError);
      expect(() => createS3Store({ bucket: 'bucket', prefix: '', requestChecksums: 'when_required' })).not.toThrow();
    } finally {
      if (before === undefined) delete process.env.PGDR_S3_REQUEST_CHECKSUMS;
      else process.env.PGDR_S3_REQUEST_CHECKSUMS = before;
    }
  });

  it('refuses part sizes under 5 MiB, zero queues and bad prefixes', () => {
    expect(() => createS3Store({ bucket: 'bucket', prefix: '', partSizeBytes: 1024 })).toThrow(UsageError);
    expect(() => createS3Store({ bucket: 'bucket', prefix: '', queueSize: 0 })).toThrow(UsageError);
    expect(() => createS3Store({ bucket: 'bucket', prefix: 'a/../b' })).toThrow(UsageError);
    expect(() => createS3Store({ bucket: 'Bucket', prefix: '' })).toThrow(UsageError);
  });

  it('normalises the prefix in its location', async () => {
    const store = createS3Store({ bucket: 'bucket', prefix: '/a/b/', endpoint: 'http://127.0.0.1:1' });
    expect(store.location).toBe('s3://bucket/a/b');
    await store.close();
  });
});
