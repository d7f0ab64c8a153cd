import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killQuietly, registerCleanup, removeDirQuietly } from './cleanup.js';
import { freePort } from './ports.js';

/** A real MinIO server on 127.0.0.1, in its own temp directory, with random credentials and one bucket. */
export interface MinioServer {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: 'us-east-1';
  /** With `tls: true`: the self-signed certificate it serves (PEM), to trust through NODE_EXTRA_CA_CERTS. */
  readonly caFile: string | undefined;
  /** The environment pgdr reads: AWS credentials and region, PGDR_S3_ENDPOINT, PGDR_S3_FORCE_PATH_STYLE=1. */
  env(): Record<string, string>;
  /** `objectLock`: a bucket with S3 Object Lock enabled (and so versioning), as `mc mb --with-lock` makes one. */
  createBucket(name: string, options?: { objectLock?: boolean }): Promise<void>;
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the data directory: for fault tests; start() brings it back. */
  kill(): void;
  /** Starts the server again on the same port and data directory. */
  start(): Promise<void>;
}

const STARTUP_DEADLINE_MS = 30_000;
const OUTPUT_TAIL_BYTES = 4_000;

export function minioBinary(): string {
  const path = process.env.PGDR_MINIO_BIN ?? join(homedir(), '.cache', 'pgdr', 'bin', 'minio');
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`MinIO server binary not found or not executable at ${path}: run bash test/setup/ensure-deps.sh`);
  }
  return path;
}

export async function startMinio(options: { tls?: boolean } = {}): Promise<MinioServer> {
  const binary = minioBinary();
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-minio-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  let consolePort = await freePort();
  while (consolePort === port) consolePort = await freePort();
  const certsDir = join(dir, 'certs');
  const caFile = options.tls ? join(certsDir, 'public.crt') : undefined;
  if (options.tls) {
    // A self-signed certificate for 127.0.0.1, as a private CA would issue one: pgdr must not trust it unasked.
    mkdirSync(certsDir);
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-keyout', join(certsDir, 'private.key'), '-out', join(certsDir, 'public.crt'),
      '-subj', '/CN=pgdr-test-minio', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
  }
  const ca = caFile === undefined ? undefined : readFileSync(caFile);
  const endpoint = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const accessKey = `pgdr${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(24).toString('base64url');
  const bucket = `pgdr-test-${randomBytes(4).toString('hex')}`;

  let child: ChildProcess | undefined;
  let killed: ChildProcess | undefined;
  let output = '';

  const adminClient = (): S3Client =>
    new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
      maxAttempts: 3,
      ...(ca === undefined ? {} : { requestHandler: new NodeHttpHandler({ httpsAgent: new HttpsAgent({ ca }) }) }),
    });

  const launch = async (): Promise<void> => {
    output = '';
    const proc = spawn(
      binary,
      ['server', dataDir, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet', ...(options.tls ? ['--certs-dir', certsDir] : [])],
      {
        // Credentials travel in the environment, never in argv where `ps` would show them.
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: dir,
          MINIO_ROOT_USER: accessKey,
          MINIO_ROOT_PASSWORD: secretKey,
          MINIO_BROWSER: 'off',
          MINIO_UPDATE: 'off',
          MINIO_CI_CD: '1',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child = proc;
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    let exited: string | undefined;
    proc.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${code}`}`;
    });
    proc.once('error', (err) => {
      exited = `could not start: ${err.message}`;
    });

    const deadline = Date.now() + STARTUP_DEADLINE_MS;
    for (;;) {
      if (exited !== undefined) {
        throw new Error(`MinIO ${exited} before it was ready on ${endpoint}; its output ends with:\n${output}`);
      }
      if (await isLive(`${endpoint}/minio/health/live`, ca)) return;
      if (Date.now() > deadline) {
        killQuietly(proc.pid);
        throw new Error(
          `MinIO did not answer ${endpoint}/minio/health/live within ${STARTUP_DEADLINE_MS / 1000} s; its output ends with:\n${output}`,
        );
      }
      await sleep(100);
    }
  };

  const waitForExit = async (proc: ChildProcess, timeoutMs: number): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    await Promise.race([new Promise<void>((resolve) => proc.once('exit', () => resolve())), sleep(timeoutMs)]);
  };

  const halt = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined) return;
    killQuietly(proc.pid, 'SIGTERM');
    await waitForExit(proc, 5_000);
    if (proc.exitCode === null && proc.signalCode === null) {
      killQuietly(proc.pid, 'SIGKILL');
      await waitForExit(proc, 5_000);
    }
  };

  const unregister = registerCleanup(
    `minio on ${endpoint}`,
    async () => {
      await halt();
      removeDirQuietly(dir);
    },
    () => {
      killQuietly(child?.pid);
      killQuietly(killed?.pid);
      removeDirQuietly(dir);
    },
  );

  const createBucket = async (name: string, bucketOptions: { objectLock?: boolean } = {}): Promise<void> => {
    const client = adminClient();
    try {
      await client.send(new CreateBucketCommand({ Bucket: name, ...(bucketOptions.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
    } finally {
      client.destroy();
    }
  };

  try {
    await launch();
    await createBucket(bucket);
  } catch (err) {
    await halt();
    removeDirQuietly(dir);
    unregister();
    throw err;
  }

  return {
    endpoint,
    bucket,
    accessKey,
    secretKey,
    region: 'us-east-1',
    caFile,
    env: () => ({
      AWS_ACCESS_KEY_ID: accessKey,
      AWS_SECRET_ACCESS_KEY: secretKey,
      AWS_REGION: 'us-east-1',
      PGDR_S3_ENDPOINT: endpoint,
      PGDR_S3_FORCE_PATH_STYLE: '1',
    }),
    createBucket,
    stop: async () => {
      await halt();
      removeDirQuietly(dir);
      unregister();
    },
    kill: () => {
      killed = child;
      child = undefined;
      killQuietly(killed?.pid, 'SIGKILL');
    },
    start: async () => {
      if (child !== undefined) throw new Error(`MinIO on ${endpoint} is already running`);
      // The port is free again only once the killed process is gone.
      if (killed !== undefined) await waitForExit(killed, 10_000);
      killed = undefined;
      try {
        await launch();
      } catch (err) {
        await halt();
        throw err;
      }
    },
  };
}

/** MinIO's liveness endpoint answers 200; over TLS the harness trusts its own certificate, and only that one. */
function isLive(url: string, ca: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const request = (url.startsWith('https:') ? httpsGet : httpGet)(url, { timeout: 1_000, ...(ca === undefined ? {} : { ca }) }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}
