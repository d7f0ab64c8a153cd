import { UsageError } from '../errors.js';
import { redactUrl } from './redact.js';

/** Bucket names as S3 accepts them today (lower case; dots allowed but not adjacent; not an IP address). */
export function isValidBucketName(name: string): boolean {
  return (
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes('..') &&
    !/^\d{1,3}(\.\d{1,3}){3}$/.test(name) &&
    !name.startsWith('xn--')
  );
}

/**
 * The S3 endpoint setting, checked before any driver loads: an http(s) URL without credentials in it (they belong
 * in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Undefined or '' means the AWS endpoint for the region.
 */
export function checkS3Endpoint(text: string | undefined): string | undefined {
  if (text === undefined || text === '') return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new UsageError(`S3 endpoint ${JSON.stringify(redactUrl(text))} is not a URL`, 'use e.g. --s3-endpoint http://127.0.0.1:9000', err);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`S3 endpoint ${redactUrl(text)} is not http(s)`, 'use e.g. --s3-endpoint https://s3.example.com');
  }
  if (url.username !== '' || url.password !== '') {
    throw new UsageError(
      'the S3 endpoint URL contains credentials',
      'remove user:password@ from the endpoint; pass credentials as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    );
  }
  return text;
}
