import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlwaysLeaderGate, PatroniLeaderGate } from '../../../src/schedule/leader-gate.js';

/**
 * GET /leader answered by a tiny HTTP server on 127.0.0.1 with the status codes Patroni 3.0.2 uses (200 on the
 * member holding the leader key, 503 elsewhere); the real Patroni cluster is exercised by the integration tests.
 */
let server: Server;
let base: string;
let status = 200;
const paths: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    paths.push(req.url ?? '');
    if (req.url === '/slow/leader') return; // never answers
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ state: 'running', role: status === 200 ? 'master' : 'replica' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('PatroniLeaderGate', () => {
  it('asks GET /leader: 200 is the leader, 503 is not, anything else is unknown', async () => {
    const gate = new PatroniLeaderGate(base);
    status = 200;
    expect(await gate.check()).toEqual({ kind: 'leader', detail: `${base} holds the leader key` });
    status = 503;
    expect(await gate.check()).toEqual({ kind: 'not-leader', detail: `${base} is not the leader` });
    status = 500;
    expect(await gate.check()).toEqual({ kind: 'unknown', detail: `Patroni at ${base} answered GET /leader with HTTP 500` });
    expect(paths.slice(-3)).toEqual(['/leader', '/leader', '/leader']);
  });

  it('accepts an api_url as Patroni publishes it (…/patroni) and a bare host:port', async () => {
    status = 200;
    expect((await new PatroniLeaderGate(`${base}/patroni`).check()).kind).toBe('leader');
    expect((await new PatroniLeaderGate(base.replace('http://', '')).check()).kind).toBe('leader');
  });

  it('is unknown when Patroni does not answer', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const refused = await new PatroniLeaderGate(`http://127.0.0.1:${port}`).check();
    expect(refused).toMatchObject({ kind: 'unknown' });
    expect(refused.detail).toMatch(/unreachable: ECONNREFUSED/);
    const slow = await new PatroniLeaderGate(`${base}/slow`, { timeoutMs: 100 }).check();
    expect(slow).toEqual({ kind: 'unknown', detail: `Patroni at ${base}/slow is unreachable: no answer within 100 ms` });
  });

  it('refuses a URL with credentials or a bad scheme', () => {
    expect(() => new PatroniLeaderGate('http://user:secret@127.0.0.1:8008')).toThrow(/credentials/);
    expect(() => new PatroniLeaderGate('ftp://127.0.0.1:8008')).toThrow(/http/);
  });
});

describe('AlwaysLeaderGate', () => {
  it('lets every run through', async () => {
    expect((await new AlwaysLeaderGate().check()).kind).toBe('leader');
  });
});
