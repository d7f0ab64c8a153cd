import { z } from 'zod';
import { ServiceError, UsageError } from '../errors.js';
import { openEtcdClient, type EtcdConnection } from '../etcd/connection.js';
import { normalizeRole, parseConnUrl, type ClusterMember, type ClusterView } from './members.js';

/**
 * Patroni's state as it keeps it in etcd (the etcd3 DCS), read without Patroni: useful when the REST APIs are
 * firewalled, or as a second opinion. Keys under <namespace>/<scope>/ (namespace /service by default):
 *   leader            the leader's member name (a key with a lease: it vanishes ttl seconds after the leader dies)
 *   members/<name>    JSON: conn_url, api_url, role, state, timeline, xlog_location, tags
 *   status            JSON: {"optime": <leader's WAL position>, ...}; optime/leader is the older form
 *   sync              JSON: {"leader": ..., "sync_standby": "a,b"} in synchronous mode
 *   history, config, initialize, failover: not needed here
 */

const DcsMemberSchema = z.looseObject({
  conn_url: z.string().optional(),
  api_url: z.string().optional(),
  state: z.string().optional(),
  role: z.string().optional(),
  timeline: z.number().int().positive().optional(),
  xlog_location: z.number().int().nonnegative().optional(),
  tags: z.record(z.string(), z.unknown()).optional(),
});

const DcsStatusSchema = z.looseObject({ optime: z.number().int().nonnegative().optional() });
const DcsSyncSchema = z.looseObject({ leader: z.string().nullable().optional(), sync_standby: z.string().nullable().optional() });

/** `/service` from `service`, `/service/` or `/service`: the form Patroni builds its paths with. */
export function normalizeNamespace(namespace: string): string {
  const trimmed = namespace.trim().replace(/^\/+|\/+$/g, '');
  if (trimmed === '' || /[\s]/.test(trimmed)) {
    throw new UsageError(`DCS namespace ${JSON.stringify(namespace)} is not valid`, "Patroni's default is /service; use --namespace /service");
  }
  return `/${trimmed}`;
}

export function checkScope(scope: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(scope)) {
    throw new UsageError(`Patroni scope ${JSON.stringify(scope)} is not valid`, "use the `scope` from Patroni's configuration, e.g. --scope pg-main");
  }
  return scope;
}

/** The ClusterView in the DCS keys of one scope. Pure: `entries` maps keys relative to <namespace>/<scope>/ to values. */
export function clusterViewFromDcs(endpoint: string, scope: string, entries: ReadonlyMap<string, string>): ClusterView {
  const leaderName = entries.get('leader')?.trim() || null;
  const syncStandbys = parseSync(entries.get('sync'));
  const leaderLsn = parseLeaderLsn(entries);
  const members: ClusterMember[] = [];
  for (const [key, value] of entries) {
    const match = /^members\/([^/]+)$/.exec(key);
    if (!match) continue;
    const name = match[1] as string;
    members.push(memberFromDcs(name, value, leaderName, syncStandbys, leaderLsn));
  }
  members.sort((a, b) => a.name.localeCompare(b.name));
  return { scope, source: { kind: 'etcd', endpoint }, leader: leaderName, members, paused: isPaused(entries.get('config')) };
}

function memberFromDcs(
  name: string,
  value: string,
  leaderName: string | null,
  syncStandbys: Set<string>,
  leaderLsn: number | undefined,
): ClusterMember {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    raw = undefined;
  }
  const parsed = DcsMemberSchema.safeParse(raw);
  if (!parsed.success) {
    // One unreadable entry must not hide the others: it is listed, and never chosen as a backup source.
    return { name, role: 'unknown', state: 'invalid DCS entry', host: null, port: null, apiUrl: null, timeline: null, lagBytes: null, tags: {} };
  }
  const data = parsed.data;
  const { host, port } = parseConnUrl(data.conn_url);
  const isLeader = name === leaderName;
  // As in Patroni's own GET /cluster, the leader key decides who leads; a member's self-reported role may be stale.
  const role = isLeader
    ? normalizeRole(data.role) === 'standby_leader'
      ? 'standby_leader'
      : 'leader'
    : syncStandbys.has(name)
      ? 'sync_standby'
      : 'replica';
  let lagBytes: number | null = null;
  if (!isLeader && data.xlog_location !== undefined && leaderLsn !== undefined) lagBytes = Math.max(0, leaderLsn - data.xlog_location);
  return {
    name,
    role,
    state: data.state ?? '',
    host,
    port,
    apiUrl: data.api_url ?? null,
    timeline: data.timeline ?? null,
    lagBytes,
    tags: data.tags ?? {},
  };
}

function parseLeaderLsn(entries: ReadonlyMap<string, string>): number | undefined {
  const status = entries.get('status');
  if (status !== undefined) {
    try {
      const parsed = DcsStatusSchema.safeParse(JSON.parse(status));
      if (parsed.success && parsed.data.optime !== undefined) return parsed.data.optime;
    } catch {
      // fall through to the legacy key
    }
  }
  const legacy = entries.get('optime/leader');
  if (legacy !== undefined && /^\d+$/.test(legacy.trim())) return Number(legacy.trim());
  return undefined;
}

function parseSync(value: string | undefined): Set<string> {
  if (value === undefined) return new Set();
  try {
    const parsed = DcsSyncSchema.safeParse(JSON.parse(value));
    if (!parsed.success || !parsed.data.sync_standby) return new Set();
    return new Set(parsed.data.sync_standby.split(',').map((s) => s.trim()).filter(Boolean));
  } catch {
    return new Set();
  }
}

function isPaused(config: string | undefined): boolean {
  if (config === undefined) return false;
  try {
    return (JSON.parse(config) as { pause?: unknown }).pause === true;
  } catch {
    return false;
  }
}

export interface DcsReadOptions {
  /** TLS material and credentials (from the environment, see src/etcd/connection.ts). */
  connection: EtcdConnection;
  namespace: string;
  timeoutMs: number;
}

/** All keys under a prefix from one etcd endpoint, as strings, with a hard deadline (the client's own retries included). */
async function readPrefix(endpoint: string, prefix: string, options: DcsReadOptions, keysOnly = false): Promise<Map<string, string>> {
  const { timeoutMs } = options;
  // One client per endpoint, so that "which endpoint answered" is known and a dead one costs one timeout.
  const client = await openEtcdClient(options.connection, endpoint, timeoutMs);
  let timer: NodeJS.Timeout | undefined;
  try {
    const request = client.getAll().prefix(prefix);
    const read = keysOnly ? request.keys().then((keys) => new Map(keys.map((k) => [k, '']))) : request.strings().then((o) => new Map(Object.entries(o)));
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([read, timeout]);
  } catch (err) {
    throw new ServiceError(`etcd at ${endpoint} is unreachable: ${firstLine((err as Error).message)}`, 'check that etcd runs there and that --etcd names its client URL (port 2379 by default)', err);
  } finally {
    if (timer) clearTimeout(timer);
    client.close();
  }
}

/** Reads one scope's DCS keys from one etcd endpoint. */
export async function readDcsCluster(endpoint: string, scope: string, options: DcsReadOptions): Promise<ClusterView> {
  const base = `${normalizeNamespace(options.namespace)}/${checkScope(scope)}/`;
  const raw = await readPrefix(endpoint, base, options);
  const entries = new Map<string, string>();
  for (const [key, value] of raw) entries.set(key.slice(base.length), value);
  if (entries.size === 0) {
    throw new UsageError(
      `etcd at ${endpoint} holds no Patroni keys under ${base}`,
      'check --scope (PGDR_SCOPE) and --namespace against the scope and namespace in the Patroni configuration',
    );
  }
  return clusterViewFromDcs(endpoint, scope, entries);
}

/** The Patroni scopes registered under a namespace: lets `--etcd` work without `--scope` when there is just one. */
export async function listDcsScopes(endpoint: string, options: DcsReadOptions): Promise<string[]> {
  const prefix = `${normalizeNamespace(options.namespace)}/`;
  const keys = await readPrefix(endpoint, prefix, options, true);
  return scopesFromKeys(prefix, [...keys.keys()]);
}

/** Pure: scope names from DCS key paths (a scope is any path with Patroni's `members/` or `leader` under it). */
export function scopesFromKeys(prefix: string, keys: readonly string[]): string[] {
  const scopes = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const [scope, ...rest] = key.slice(prefix.length).split('/');
    if (!scope || rest.length === 0) continue;
    const tail = rest.join('/');
    if (tail === 'leader' || tail === 'initialize' || tail === 'config' || tail.startsWith('members/')) scopes.add(scope);
  }
  return [...scopes].sort();
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? text;
}
