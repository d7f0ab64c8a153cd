import { connect, createServer, type Socket } from 'node:net';
import { freePort } from '../../harness/ports.js';
import { onCleanup } from './cleanup.js';

/**
 * A TCP proxy in front of a real server that holds every chunk for `delayMs` in each direction, so a request and
 * its answer cost at least 2 × delayMs: the round trip of a real S3 region, which MinIO on loopback does not have.
 * Chunks keep their order (equal timeouts fire in the order they were set).
 */
export interface LatencyProxy {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  close(): Promise<void>;
}

export async function startLatencyProxy(target: URL, delayMs: number): Promise<LatencyProxy> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => setTimeout(() => to.writable && to.write(chunk), delayMs));
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    delayed(client, upstream);
    delayed(upstream, client);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const unregister = onCleanup(`latency proxy on ${port}`, close);
  return { endpoint: `http://127.0.0.1:${port}`, close: unregister };
}
