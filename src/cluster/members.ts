/**
 * What pgdr knows about a Patroni cluster, whichever way it learnt it (Patroni's REST API or the DCS keys in
 * etcd). Plain data, so that the planners in select.ts stay pure and testable.
 */

/**
 * Roles normalized across Patroni versions: Patroni 3 calls the primary `master` in member data and `leader` in
 * GET /cluster; Patroni 4 says `primary` and `leader`; a standby cluster's leader is `standby_leader`; synchronous
 * replicas are `sync_standby` (Patroni 4's quorum mode adds `quorum_standby`).
 */
export type MemberRole = 'leader' | 'standby_leader' | 'sync_standby' | 'replica' | 'unknown';

export interface ClusterMember {
  name: string;
  role: MemberRole;
  /** Patroni's state as reported: running, streaming, starting, stopped, crashed, in archive recovery, ... */
  state: string;
  /** Where PostgreSQL listens, from the member's conn_url; null when the member did not say. */
  host: string | null;
  port: number | null;
  /** The member's Patroni REST API (…/patroni), null when unknown. */
  apiUrl: string | null;
  timeline: number | null;
  /** Bytes of WAL behind the leader as Patroni last saw it; null for the leader and when unknown. */
  lagBytes: number | null;
  tags: Record<string, unknown>;
}

export type ViewSourceKind = 'patroni' | 'etcd';

export interface ClusterView {
  /** Patroni's scope (the cluster's name in the DCS), when the source told us. */
  scope: string | null;
  /** Which endpoint answered, for messages and `cluster status`. */
  source: { kind: ViewSourceKind; endpoint: string };
  /** Name of the member holding the leader key, or null (no leader: mid-failover, or the cluster is down). */
  leader: string | null;
  members: ClusterMember[];
  /** True when Patroni's maintenance mode (pause) is on: no automatic failover. */
  paused: boolean;
}

export function normalizeRole(raw: string | undefined): MemberRole {
  switch ((raw ?? '').toLowerCase()) {
    case 'leader':
    case 'master':
    case 'primary':
      return 'leader';
    case 'standby_leader':
    case 'standby-leader':
      return 'standby_leader';
    case 'sync_standby':
    case 'sync-standby':
    case 'quorum_standby':
      return 'sync_standby';
    case 'replica':
    case 'standby':
      return 'replica';
    default:
      return 'unknown';
  }
}

/** Host and port from a Patroni conn_url (postgres://host:port/dbname) or a bare host:port. */
export function parseConnUrl(connUrl: string | undefined): { host: string | null; port: number | null } {
  if (!connUrl) return { host: null, port: null };
  try {
    const url = new URL(connUrl.includes('://') ? connUrl : `postgres://${connUrl}`);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || null;
    const port = url.port === '' ? 5432 : Number(url.port);
    return { host, port: Number.isInteger(port) && port > 0 && port < 65536 ? port : null };
  } catch {
    return { host: null, port: null };
  }
}

export function describeMember(member: ClusterMember): string {
  const where = member.host !== null && member.port !== null ? ` (${member.host}:${member.port})` : '';
  return `${member.name}${where}`;
}
