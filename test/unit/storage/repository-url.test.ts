import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { openStore, parseRepositoryUrl } from '../../../src/storage/open-store.js';
import { redactUrl, redactUrlsIn } from '../../../src/storage/redact.js';

function usageProblem(url: string): UsageError {
  try {
    parseRepositoryUrl(url);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    const usage = err as UsageError;
    expect(usage.exitCode).toBe(2);
    expect(usage.hint.length).toBeGreaterThan(0);
    expect(usage.message).not.toContain('\n');
    return usage;
  }
  throw new Error(`expected ${url} to be refused`);
}

describe('parseRepositoryUrl: file://', () => {
  it('takes an absolute path and decodes %-escapes', () => {
    expect(parseRepositoryUrl('file:///var/lib/pgdr')).toEqual({ kind: 'file', root: '/var/lib/pgdr' });
    expect(parseRepositoryUrl('file:///srv/my%20repo/x%2Fy')).toEqual({ kind: 'file', root: '/srv/my repo/x/y' });
    expect(parseRepositoryUrl('FILE:///a/b/')).toEqual({ kind: 'file', root: '/a/b' });
    expect(parseRepositoryUrl('file://localhost/a')).toEqual({ kind: 'file', root: '/a' });
  });

  it('accepts what the settings build by concatenation, spaces and # included', () => {
    expect(parseRepositoryUrl('file:///home/a b/#repo')).toEqual({ kind: 'file', root: '/home/a b/#repo' });
  });

  it('normalises dot segments instead of keeping them', () => {
    expect(parseRepositoryUrl('file:///a/./b/../c')).toEqual({ kind: 'file', root: '/a/c' });
  });

  it('refuses relative paths and malformed escapes', () => {
    expect(usageProblem('file://relative/path').hint).toMatch(/file:\/\/\/absolute\/path/);
    expect(usageProblem('file://').message).toMatch(/absolute path/);
    expect(usageProblem('file:///bad%zzescape').hint).toMatch(/%25/);
  });
});

describe('parseRepositoryUrl: s3://', () => {
  it('splits bucket and prefix', () => {
    expect(parseRepositoryUrl('s3://my-bucket')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseRepositoryUrl('s3://my-bucket/')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseRepositoryUrl('s3://my.bucket.1/pgdr/prod/')).toEqual({ kind: 's3', bucket: 'my.bucket.1', prefix: 'pgdr/prod' });
    expect(parseRepositoryUrl('S3://abc/p%20q')).toEqual({ kind: 's3', bucket: 'abc', prefix: 'p q' });
  });

  it('refuses invalid bucket names rather than lower-casing them', () => {
    for (const url of ['s3://MyBucket/x', 's3://ab', 's3://-abc', 's3://abc-', 's3://a..b', 's3://192.168.1.1', 's3:///x', `s3://${'a'.repeat(64)}`]) {
      expect(usageProblem(url).message, url).toMatch(/bucket/);
    }
  });

  it('refuses credentials, queries and bad prefixes, without echoing the secret', () => {
    const withSecret = usageProblem('s3://AKIAEXAMPLE:s3cr3t@bucket/x');
    expect(withSecret.message).not.toContain('s3cr3t');
    expect(withSecret.hint).toMatch(/AWS_ACCESS_KEY_ID/);
    const signed = usageProblem('s3://bucket/x?X-Amz-Signature=deadbeef');
    expect(signed.message).not.toContain('deadbeef');
    expect(usageProblem('s3://bucket/a/../b').message).toMatch(/prefix/);
    expect(usageProblem('s3://bucket/a//b').message).toMatch(/prefix/);
  });

  it('refuses other schemes with a hint naming the supported ones', () => {
    for (const url of ['gs://bucket/x', 'http://example.com/repo', '/var/lib/pgdr', 'bucket/prefix', '']) {
      expect(usageProblem(url).hint).toBe('use s3://bucket/prefix or file:///absolute/path');
    }
  });
});

describe('openStore', () => {
  it('picks the driver by scheme and reports a redacted location', async () => {
    const fs = openStore('file:///tmp/pgdr-never-created');
    expect(fs.location).toBe('file:///tmp/pgdr-never-created');
    const s3 = openStore('s3://bucket-name/some/prefix/', { s3Endpoint: 'http://127.0.0.1:9', s3ForcePathStyle: true });
    expect(s3.location).toBe('s3://bucket-name/some/prefix');
    await s3.close();
    const root = openStore('s3://bucket-name');
    expect(root.location).toBe('s3://bucket-name');
    await root.close();
  });

  it('refuses an endpoint that is not http(s) or carries credentials', () => {
    expect(() => openStore('s3://bucket-name', { s3Endpoint: 'ftp://host' })).toThrow(UsageError);
    expect(() => openStore('s3://bucket-name', { s3Endpoint: 'not a url' })).toThrow(UsageError);
    let err: unknown;
    try {
      openStore('s3://bucket-name', { s3Endpoint: 'http://user:hunter2@minio:9000' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).not.toContain('hunter2');
  });
});

describe('redactUrl', () => {
  it('removes userinfo', () => {
    expect(redactUrl('https://user:pass@host:9000/path')).toBe('https://host:9000/path');
    expect(redactUrl('s3://AKIA:secret@bucket/prefix')).toBe('s3://bucket/prefix');
    expect(redactUrl('http://token@host/')).toBe('http://host/');
  });

  it('removes presigned and credential-like query parameters and keeps the rest as written', () => {
    const presigned =
      'https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123&versionId=7';
    expect(redactUrl(presigned)).toBe('https://b.s3.amazonaws.com/k?versionId=7');
    expect(redactUrl('https://h/p?x-amz-security-token=t&a=1')).toBe('https://h/p?a=1');
    expect(redactUrl('https://h/p?password=x&client_secret=y&sig=z&AWSAccessKeyId=k#frag')).toBe('https://h/p#frag');
    expect(redactUrl('https://h/p?only=fine')).toBe('https://h/p?only=fine');
    expect(redactUrl('https://H/Path')).toBe('https://H/Path');
  });

  it('leaves URLs without secrets and non-URLs unchanged', () => {
    for (const text of ['s3://bucket/prefix', 'file:///var/lib/pgdr', 'http://127.0.0.1:9000', 'not a url', '']) {
      expect(redactUrl(text)).toBe(text);
    }
  });

  it('redacts every URL inside free text', () => {
    expect(redactUrlsIn('GET https://u:p@h/x?X-Amz-Signature=s failed; retry http://a:b@c/')).toBe(
      'GET https://h/x failed; retry http://c/',
    );
  });
});
