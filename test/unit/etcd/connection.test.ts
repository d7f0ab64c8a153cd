import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { etcdIdHex, normaliseEtcdEndpoint, resolveEtcdConnection } from '../../../src/etcd/connection.js';

const files: Record<string, string> = { '/tls/ca.pem': 'CA', '/tls/cert.pem': 'CERT', '/tls/key.pem': 'KEY' };
const readFile = (path: string): Buffer => {
  const text = files[path];
  if (text === undefined) throw new Error(`ENOENT: no such file, open '${path}'`);
  return Buffer.from(text);
};

describe('etcd endpoints', () => {
  it('normalises scheme, host and port, defaulting to http and 2379', () => {
    expect(normaliseEtcdEndpoint('10.0.0.1')).toBe('http://10.0.0.1:2379');
    expect(normaliseEtcdEndpoint('https://etcd-0.etcd:2379/')).toBe('https://etcd-0.etcd:2379');
    expect(normaliseEtcdEndpoint('http://[::1]:12379')).toBe('http://[::1]:12379');
  });

  it('refuses credentials in a URL without printing them', () => {
    let caught: unknown;
    try {
      normaliseEtcdEndpoint('http://root:s3cret@10.0.0.1:2379');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    expect(String((caught as Error).message)).not.toContain('s3cret');
    expect((caught as UsageError).hint).toMatch(/PGDR_ETCD_USER/);
  });

  it.each([['ftp://h:2379'], ['http://h:2379/v3'], ['http://h:2379?x=1'], ['http://']])('refuses %j', (text) => {
    expect(() => normaliseEtcdEndpoint(text)).toThrow(UsageError);
  });
});

describe('resolveEtcdConnection', () => {
  it('plain http, no TLS, no auth; duplicates dropped', () => {
    expect(resolveEtcdConnection(['http://a:2379', 'http://a:2379/', 'b:2379'], {}, readFile)).toEqual({
      endpoints: ['http://a:2379', 'http://b:2379'],
      tls: undefined,
      auth: undefined,
    });
  });

  it('https with a CA, a client certificate and credentials from the environment', () => {
    const env = {
      PGDR_ETCD_CACERT: '/tls/ca.pem',
      PGDR_ETCD_CERT: '/tls/cert.pem',
      PGDR_ETCD_KEY: '/tls/key.pem',
      PGDR_ETCD_USER: 'pgdr',
      PGDR_ETCD_PASSWORD: 'pw',
    };
    const connection = resolveEtcdConnection(['https://a:2379'], env, readFile);
    expect(connection.tls).toEqual({ ca: Buffer.from('CA'), cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
    expect(connection.auth).toEqual({ username: 'pgdr', password: 'pw' });
  });

  it('reads the credentials from files with PGDR_ETCD_USER_FILE and PGDR_ETCD_PASSWORD_FILE (Docker/Kubernetes secrets)', () => {
    const files: Record<string, string> = { '/run/secrets/etcd-user': 'pgdr\n', '/run/secrets/etcd-password': 's3cret pass\n' };
    const read = (path: string) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      return Buffer.from(text);
    };
    const env = { PGDR_ETCD_USER_FILE: '/run/secrets/etcd-user', PGDR_ETCD_PASSWORD_FILE: '/run/secrets/etcd-password' };
    expect(resolveEtcdConnection(['http://a:2379'], env, read).auth).toEqual({ username: 'pgdr', password: 's3cret pass' });
    // The file's name is said, never its content.
    expect(() => resolveEtcdConnection(['http://a:2379'], { ...env, PGDR_ETCD_PASSWORD_FILE: '/run/secrets/missing' }, read)).toThrow(
      /cannot read PGDR_ETCD_PASSWORD_FILE \/run\/secrets\/missing \(ENOENT\)/,
    );
    expect(() => resolveEtcdConnection(['http://a:2379'], { ...env, PGDR_ETCD_PASSWORD: 'pw' }, read)).toThrow(/both PGDR_ETCD_PASSWORD and PGDR_ETCD_PASSWORD_FILE/);
  });

  it('https without a CA uses the system roots (verification stays on)', () => {
    expect(resolveEtcdConnection(['https://a:2379'], {}, readFile).tls).toEqual({ ca: undefined, cert: undefined, key: undefined });
  });

  it.each([
    ['no endpoints', [], {}, /no etcd endpoints/],
    ['mixed schemes', ['http://a:2379', 'https://b:2379'], {}, /mix http and https/],
    ['TLS files for http endpoints', ['http://a:2379'], { PGDR_ETCD_CACERT: '/tls/ca.pem' }, /endpoints are http/],
    ['a certificate without its key', ['https://a:2379'], { PGDR_ETCD_CERT: '/tls/cert.pem' }, /both PGDR_ETCD_CERT and PGDR_ETCD_KEY/],
    ['an unreadable CA file', ['https://a:2379'], { PGDR_ETCD_CACERT: '/nope.pem' }, /cannot read PGDR_ETCD_CACERT/],
    ['a user without a password', ['http://a:2379'], { PGDR_ETCD_USER: 'u' }, /both PGDR_ETCD_USER and PGDR_ETCD_PASSWORD/],
  ])('refuses %s', (_what, endpoints, env, message) => {
    expect(() => resolveEtcdConnection(endpoints, env, readFile)).toThrow(UsageError);
    expect(() => resolveEtcdConnection(endpoints, env, readFile)).toThrow(message);
  });
});

describe('etcdIdHex', () => {
  it('prints etcd uint64 ids as etcdctl does', () => {
    expect(etcdIdHex('13668033151171901709')).toBe('bdae9bbc11dd390d');
    expect(etcdIdHex('1')).toBe('1');
    expect(() => etcdIdHex('-1')).toThrow();
  });
});
