import { z } from 'zod';
import { ServiceError, UsageError } from '../errors.js';
import { normalizeRole, type ClusterMember, type ClusterView } from './members.js';

/**
 * Patroni's REST API, read-only: GET /cluster (any member answers for the whole cluster, from the DCS) and
 * GET /patroni (this member's scope and system identifier). Answers are outside input and are validated; fields
 * a newer Patroni adds are ignored, and the role names of Patroni 3 and 4 are both understood.
 */

const PatroniClusterMemberSchema = z.looseObject({
  name: z.string().min(1),
  role: z.string(),
  state: z.string().optional(),
  api_url: z.string().optional(),
  host: z.string().optional(),
  port: z.number().int().min(1).max(65535).optional(),
  timeline: z.number().int().positive().optional(),
  // A number of bytes, or 'unknown' when Patroni has no position for the member.
  lag: z.union([z.number(), z.string()]).optional(),
  tags: z.record(z.string(), z.unknown()).optional(),
});

const PatroniClusterSchema = z.looseObject({
  members: z.array(PatroniClusterMemberSchema),
  pause: z.boolean().optional(),
  scope: z.string().optional(),
});

const PatroniStatusSchema = z.looseObject({
  patroni: z.looseObject({ version: z.string().optional(), scope: z.string().optional() }).optional(),
  database_system_identifier: z.string().optional(),
});

export type PatroniCluster = z.infer<typeof PatroniClusterSchema>;

/** A Patroni REST endpoint given on the command line, checked and reduced to its origin. */
export function parsePatroniEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text.includes('://') ? text : `http://${text}`);
  } catch {
    throw new UsageError(`Patroni endpoint ${JSON.stringify(text)} is not a URL`, 'use --patroni http://host:8008[,http://host2:8008]');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`Patroni endpoint ${text} must be http:// or https://`, 'use --patroni http://host:8008');
  }
  if (url.username || url.password) {
    // Patroni serves GET without authentication; a password here would only end up in logs and process lists.
    throw new UsageError(`Patroni endpoint ${url.host} carries credentials`, 'drop user:password@ from --patroni: pgdr only reads GET /cluster, which needs none');
  }
  // GET /cluster lives at the root; an api_url copied from Patroni ends in /patroni, which is dropped.
  const path = url.pathname.replace(/\/patroni\/?$/, '').replace(/\/+$/, '');
  return `${url.protocol}//${url.host}${path}`;
}

/** The members of GET /cluster as a ClusterView. Pure: unit-tested with answers from Patroni 3 and 4. */
export function clusterViewFromPatroni(endpoint: string, body: unknown, scope: string | null): ClusterView {
  const parsed = PatroniClusterSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ServiceError(
      `Patroni at ${endpoint} answered GET /cluster with an unexpected document (${issue ? `${issue.path.join('.') || 'top level'}: ${issue.message}` : 'invalid'})`,
      'check that --patroni points at Patroni REST APIs (port 8008 by default), not at PostgreSQL or etcd',
    );
  }
  const members: ClusterMember[] = parsed.data.members.map((m) => {
    const role = normalizeRole(m.role);
    const connected = m.host !== undefined ? { host: m.host, port: m.port ?? 5432 } : { host: null, port: null };
    return {
      name: m.name,
      role,
      state: m.state ?? '',
      host: connected.host,
      port: connected.port,
      apiUrl: m.api_url ?? null,
      timeline: m.timeline ?? null,
      lagBytes: role === 'leader' || role === 'standby_leader' ? null : typeof m.lag === 'number' && m.lag >= 0 ? m.lag : null,
      tags: m.tags ?? {},
    };
  });
  const leader = members.find((m) => m.role === 'leader' || m.role === 'standby_leader');
  return {
    scope: parsed.data.scope ?? scope,
    source: { kind: 'patroni', endpoint },
    leader: leader?.name ?? null,
    members,
    paused: parsed.data.pause === true,
  };
}

export interface PatroniReadOptions {
  timeoutMs: number;
  /** When set, an endpoint that belongs to another scope is an error rather than a view of the wrong cluster. */
  expectScope?: string;
  fetch?: typeof fetch;
}

/** Reads the cluster through one Patroni endpoint. Throws ServiceError when the endpoint is down or answers wrong. */
export async function readPatroniCluster(endpoint: string, options: PatroniReadOptions): Promise<ClusterView> {
  const doFetch = options.fetch ?? fetch;
  const [clusterBody, status] = await Promise.all([
    getJson(doFetch, endpoint, '/cluster', options.timeoutMs),
    // Only for the scope: a member whose own status cannot be read can still answer for the cluster.
    getJson(doFetch, endpoint, '/patroni', options.timeoutMs).catch(() => undefined),
  ]);
  const statusParsed = status === undefined ? undefined : PatroniStatusSchema.safeParse(status);
  const scope = statusParsed?.success ? (statusParsed.data.patroni?.scope ?? null) : null;
  if (options.expectScope !== undefined && scope !== null && scope !== options.expectScope) {
    throw new UsageError(
      `Patroni at ${endpoint} serves scope ${JSON.stringify(scope)}, not ${JSON.stringify(options.expectScope)}`,
      'check --patroni and --scope (PGDR_PATRONI, PGDR_SCOPE): they name different clusters',
    );
  }
  return clusterViewFromPatroni(endpoint, clusterBody, scope);
}

async function getJson(doFetch: typeof fetch, endpoint: string, path: string, timeoutMs: number): Promise<unknown> {
  const url = `${endpoint}${path}`;
  let response: Response;
  try {
    response = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  } catch (err) {
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : describeFetchError(err);
    throw new ServiceError(`Patroni at ${endpoint} is unreachable: ${why}`, 'check that Patroni runs there and its REST API listens on that address', err);
  }
  const text = await response.text().catch(() => '');
  if (!response.ok) {
    throw new ServiceError(
      `Patroni at ${endpoint} answered GET ${path} with HTTP ${response.status}`,
      'check the Patroni log on that host; GET /cluster needs a working DCS connection',
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ServiceError(`Patroni at ${endpoint} answered GET ${path} with something that is not JSON`, 'check that --patroni points at a Patroni REST API');
  }
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
