import { createHash, createHmac } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { registerCleanup } from './cleanup.js';
import type { MinioServer } from './minio.js';

/**
 * A fault wrapper around a real MinIO: an HTTP proxy that pgdr talks to instead of MinIO, and that can misbehave
 * the way real stores do:
 *   pass                 forward everything as it is;
 *   ignore-conditional   drop If-None-Match and If-Match (as an S3 server that does not support them: every
 *                        conditional PUT "succeeds" and replaces), re-signing the request so MinIO accepts it;
 *   stall                accept connections and requests, then never answer (a hung load balancer or store).
 * The objects stay in the real MinIO, so everything pgdr wrote is read back from a real server.
 */
export type ProxyMode = 'pass' | 'ignore-conditional' | 'stall';

export interface S3FaultProxy {
  /** http://127.0.0.1:PORT: give this to pgdr as the S3 endpoint. */
  readonly endpoint: string;
  mode: ProxyMode;
  /** Requests seen, by method, and conditional headers dropped. */
  readonly counts: { requests: number; droppedConditions: number; stalled: number };
  /** The environment pgdr reads (MinIO's credentials, this proxy as PGDR_S3_ENDPOINT). */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

class NodeSha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    throw new Error('not needed');
  }
}

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

const CONDITIONAL = new Set(['if-none-match', 'if-match']);

export async function startS3FaultProxy(minio: MinioServer, initialMode: ProxyMode = 'pass'): Promise<S3FaultProxy> {
  const upstream = new URL(minio.endpoint);
  const signer = new SignatureV4({
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    region: minio.region,
    service: 's3',
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  const sockets = new Set<Socket>();
  const counts = { requests: 0, droppedConditions: 0, stalled: 0 };
  let mode = initialMode;

  const forward = async (req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> => {
    let headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    if (mode === 'ignore-conditional' && Object.keys(headers).some((h) => CONDITIONAL.has(h))) {
      counts.droppedConditions++;
      headers = await resign(signer, req, headers, body);
    }
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', (err) => {
      res.destroy(err);
    });
    out.end(body);
  };

  const server: Server = createServer((req, res) => {
    counts.requests++;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (mode === 'stall') {
        // Never answer; the socket stays open until the client gives up or the proxy stops.
        counts.stalled++;
        return;
      }
      forward(req, res, Buffer.concat(chunks)).catch((err: unknown) => res.destroy(err as Error));
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the fault proxy did not get a port');
  const endpoint = `http://127.0.0.1:${address.port}`;

  const stop = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    unregister();
  };
  const unregister = registerCleanup(`S3 fault proxy ${endpoint}`, stop);
  return {
    endpoint,
    get mode() {
      return mode;
    },
    set mode(next: ProxyMode) {
      mode = next;
      // Requests stalled so far stay stalled; the client's own timeout ends them.
    },
    counts,
    env: () => ({ ...minio.env(), PGDR_S3_ENDPOINT: endpoint }),
    stop,
  };
}

/** The request signed again without its conditional headers (the payload hash header is kept as the client sent it). */
async function resign(signer: SignatureV4, req: IncomingMessage, headers: Record<string, string>, body: Buffer): Promise<Record<string, string>> {
  const url = new URL(req.url ?? '/', 'http://proxy');
  const query: Record<string, string> = {};
  for (const [key, value] of url.searchParams) query[key] = value;
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (CONDITIONAL.has(name) || name === 'authorization' || name === 'x-amz-date') continue;
    kept[name] = value;
  }
  const [hostname, port] = (headers.host ?? '').split(':');
  const signed = await signer.sign({
    method: req.method ?? 'GET',
    protocol: 'http:',
    hostname: hostname ?? '127.0.0.1',
    ...(port ? { port: Number(port) } : {}),
    path: url.pathname,
    query,
    headers: kept,
    body,
  });
  return signed.headers as Record<string, string>;
}
