import { readFileSync } from 'node:fs';
import type { Etcd3, IOptions } from 'etcd3';
import { secretFromEnv } from '../config/secret-env.js';
import { UsageError } from '../errors.js';

/**
 * How pgdr reaches etcd: endpoints from --etcd / PGDR_ETCD, TLS material and credentials from the environment
 * only (PGDR_ETCD_CACERT, PGDR_ETCD_CERT, PGDR_ETCD_KEY, PGDR_ETCD_USER, PGDR_ETCD_PASSWORD; the last two also as
 * PGDR_ETCD_USER_FILE and PGDR_ETCD_PASSWORD_FILE naming a file, see src/config/secret-env.ts), so that no secret is
 * ever on a command line. TLS verification is always on: there is no switch to skip it.
 */
export interface EtcdConnection {
  /** Normalised client URLs: scheme://host:port. */
  endpoints: string[];
  /** Present for https endpoints: a CA bundle (else the system's roots) and an optional client certificate. */
  tls: { ca: Buffer | undefined; cert: Buffer | undefined; key: Buffer | undefined } | undefined;
  auth: { username: string; password: string } | undefined;
}

const DEFAULT_CLIENT_PORT = '2379';

export function normaliseEtcdEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text.includes('://') ? text : `http://${text}`);
  } catch {
    throw new UsageError(`etcd endpoint ${JSON.stringify(text)} is not a URL`, 'use client URLs like http://10.0.0.1:2379 (comma-separated in --etcd or PGDR_ETCD)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`etcd endpoint ${JSON.stringify(text)} uses ${url.protocol}, not http: or https:`, 'use client URLs like https://10.0.0.1:2379');
  }
  if (url.username !== '' || url.password !== '') {
    // Said without echoing the URL: it holds a secret.
    throw new UsageError('an etcd endpoint URL carries credentials', 'remove them from the URL; set PGDR_ETCD_USER and PGDR_ETCD_PASSWORD in the environment instead');
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new UsageError(`etcd endpoint ${JSON.stringify(text)} has a path or query`, 'give only scheme, host and port, e.g. http://10.0.0.1:2379');
  }
  return `${url.protocol}//${url.hostname.includes(':') && !url.hostname.startsWith('[') ? `[${url.hostname}]` : url.hostname}:${url.port || DEFAULT_CLIENT_PORT}`;
}

export function resolveEtcdConnection(
  endpoints: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => Buffer = (path) => readFileSync(path),
): EtcdConnection {
  if (endpoints.length === 0) {
    throw new UsageError('no etcd endpoints given', 'pass --etcd http://host:2379[,http://host2:2379...] or set PGDR_ETCD');
  }
  const normalised = [...new Set(endpoints.map(normaliseEtcdEndpoint))];
  const secure = normalised.filter((e) => e.startsWith('https:'));
  if (secure.length !== 0 && secure.length !== normalised.length) {
    throw new UsageError('etcd endpoints mix http and https', 'use https for every endpoint of a TLS cluster (or http for every one)');
  }
  const file = (variable: 'PGDR_ETCD_CACERT' | 'PGDR_ETCD_CERT' | 'PGDR_ETCD_KEY'): Buffer | undefined => {
    const path = env[variable];
    if (path === undefined || path === '') return undefined;
    try {
      return readFile(path);
    } catch (err) {
      throw new UsageError(`cannot read ${variable} file ${path}: ${(err as Error).message}`, `check the path in ${variable} and that pgdr's user may read it`);
    }
  };
  const wantsTls = ['PGDR_ETCD_CACERT', 'PGDR_ETCD_CERT', 'PGDR_ETCD_KEY'].filter((v) => (env[v] ?? '') !== '');
  let tls: EtcdConnection['tls'];
  if (secure.length > 0) {
    tls = { ca: file('PGDR_ETCD_CACERT'), cert: file('PGDR_ETCD_CERT'), key: file('PGDR_ETCD_KEY') };
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new UsageError('a client certificate needs both PGDR_ETCD_CERT and PGDR_ETCD_KEY', 'set both, or neither');
    }
  } else if (wantsTls.length > 0) {
    throw new UsageError(`${wantsTls.join(', ')} set, but the etcd endpoints are http`, 'use https:// endpoints for a TLS cluster, or unset the TLS variables');
  }
  const username = secretFromEnv('PGDR_ETCD_USER', env, (path) => readFile(path).toString('utf8')) ?? '';
  const password = secretFromEnv('PGDR_ETCD_PASSWORD', env, (path) => readFile(path).toString('utf8')) ?? '';
  if ((username === '') !== (password === '')) {
    throw new UsageError('etcd authentication needs both PGDR_ETCD_USER and PGDR_ETCD_PASSWORD (or their _FILE forms)', 'set both in the environment, or neither');
  }
  return { endpoints: normalised, tls, auth: username === '' ? undefined : { username, password } };
}

/**
 * A client bound to ONE endpoint: a snapshot must come from a member pgdr can name in the manifest, and the
 * etcd3 client would otherwise spread calls over every host it knows.
 */
export async function openEtcdClient(connection: EtcdConnection, endpoint: string, unaryTimeoutMs = 10_000): Promise<Etcd3> {
  // etcd3 and gRPC (protobufjs) cost every command a tenth of a second to load: only what talks to etcd loads them.
  const { Etcd3 } = await import('etcd3');
  const options: IOptions = {
    hosts: [endpoint],
    dialTimeout: unaryTimeoutMs,
    // Streams get their own deadline from the caller; every short call gets this one.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + unaryTimeoutMs }),
  };
  if (connection.tls !== undefined) {
    // grpc-js verifies the server against `rootCertificate`, or the system's roots when it is absent.
    options.credentials = {
      rootCertificate: connection.tls.ca as Buffer,
      privateKey: connection.tls.key,
      certChain: connection.tls.cert,
    };
  }
  if (connection.auth !== undefined) options.auth = { username: connection.auth.username, password: connection.auth.password };
  return new Etcd3(options);
}

/** etcd's uint64 ids arrive as decimal strings; etcdctl and the manifest print them as hex. */
export function etcdIdHex(decimal: string): string {
  if (!/^\d+$/.test(decimal)) throw new Error(`not an etcd id: ${JSON.stringify(decimal)}`);
  return BigInt(decimal).toString(16);
}
