import { setTimeout as sleep } from 'node:timers/promises';
import { PgdrError, ServiceError, UsageError, errorMessage } from '../errors.js';
import { PostgresSetupError, withConnection, type PgEndpoint } from '../postgres/connection.js';
import { resolveEtcdConnection } from '../etcd/connection.js';
import { checkScope, listDcsScopes, type DcsReadOptions, normalizeNamespace, readDcsCluster } from './etcd-dcs.js';
import { describeMember, type ClusterMember, type ClusterView, type ViewSourceKind } from './members.js';
import { parsePatroniEndpoint, readPatroniCluster } from './patroni-api.js';
import { chooseBackupSource, type BackupFrom, type ReplicaChoiceOptions } from './select.js';

/**
 * Finding the member to act on, right before acting: ask every configured source (Patroni REST endpoints first,
 * then etcd), tolerate any one of them being down, check the chosen member's PostgreSQL really is what the DCS
 * says (a killed leader keeps its key until its lease runs out), and while the cluster has no usable leader —
 * mid-failover — ask again until a deadline.
 */

export interface ClusterSourceSettings {
  /** Patroni REST endpoints as configured (--patroni / PGDR_PATRONI). */
  patroni: readonly string[];
  /** etcd client URLs as configured (--etcd / PGDR_ETCD). */
  etcd: readonly string[];
  /** Patroni scope, needed to read etcd directly unless etcd holds exactly one scope. */
  scope?: string;
  /** Patroni's DCS namespace, /service by default. */
  namespace: string;
  /** Per request to one endpoint. */
  requestTimeoutMs: number;
  /** User for the probes and the backup; host and port come from the DCS. Undefined: libpq's PGUSER. */
  pgUser?: string;
  /** Where etcd TLS material and credentials are read from (PGDR_ETCD_*); default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ClusterReader {
  kind: ViewSourceKind;
  endpoint: string;
  read(): Promise<ClusterView>;
}

export function hasClusterSources(settings: Pick<ClusterSourceSettings, 'patroni' | 'etcd'>): boolean {
  return settings.patroni.length > 0 || settings.etcd.length > 0;
}

/** One reader per configured endpoint, validated up front so that a typo is a usage error, not a timeout. */
export function clusterReaders(settings: ClusterSourceSettings): ClusterReader[] {
  const scope = settings.scope === undefined ? undefined : checkScope(settings.scope);
  const namespace = normalizeNamespace(settings.namespace);
  const timeoutMs = settings.requestTimeoutMs;
  // A scope learnt from Patroni (GET /patroni) or found in etcd serves the etcd readers that follow.
  let knownScope = scope;
  const readers: ClusterReader[] = settings.patroni.map((text) => {
    const endpoint = parsePatroniEndpoint(text);
    return {
      kind: 'patroni' as const,
      endpoint,
      read: async () => {
        const view = await readPatroniCluster(endpoint, { timeoutMs, expectScope: scope });
        knownScope ??= view.scope ?? undefined;
        return view;
      },
    };
  });
  if (settings.etcd.length > 0) {
    const connection = resolveEtcdConnection(settings.etcd, settings.env ?? process.env);
    const options = { connection, namespace, timeoutMs };
    for (const endpoint of connection.endpoints) {
      readers.push({
        kind: 'etcd',
        endpoint,
        read: async () => {
          knownScope ??= await onlyScope(endpoint, options);
          return readDcsCluster(endpoint, knownScope, options);
        },
      });
    }
  }
  return readers;
}

async function onlyScope(endpoint: string, options: DcsReadOptions): Promise<string> {
  const { namespace } = options;
  const scopes = await listDcsScopes(endpoint, options);
  if (scopes.length === 1) return scopes[0] as string;
  if (scopes.length === 0) {
    throw new UsageError(`etcd at ${endpoint} holds no Patroni cluster under ${namespace}/`, 'check --etcd and --namespace (Patroni\'s `namespace`, /service by default)');
  }
  throw new UsageError(`etcd at ${endpoint} holds several Patroni clusters (${scopes.join(', ')})`, 'name one with --scope (or PGDR_SCOPE)');
}

export interface EndpointReport {
  kind: ViewSourceKind;
  endpoint: string;
  ok: boolean;
  error?: string;
}

/** Every source once, for `cluster status`: the best view (one with a leader, first source first) and each endpoint's health. */
export async function readClusterOnce(readers: readonly ClusterReader[]): Promise<{ view: ClusterView | null; endpoints: EndpointReport[] }> {
  const endpoints: EndpointReport[] = [];
  let best: ClusterView | null = null;
  for (const reader of readers) {
    try {
      const view = await reader.read();
      endpoints.push({ kind: reader.kind, endpoint: reader.endpoint, ok: true });
      if (best === null || (best.leader === null && view.leader !== null)) best = view;
    } catch (err) {
      if (err instanceof UsageError) throw err;
      endpoints.push({ kind: reader.kind, endpoint: reader.endpoint, ok: false, error: errorMessage(err) });
    }
  }
  return { view: best, endpoints };
}

export type Decision<T> = { ok: true; value: T } | { ok: false; problem: string; retryable: boolean };

export interface WaitOptions {
  /** Keep asking this long while the answer is "not yet"; 0 asks once. */
  waitMs: number;
  pollMs?: number;
  /** What is being looked for, for the error: "a leader", "a healthy replica". */
  what: string;
  log?: (message: string) => void;
  now?: () => number;
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * Asks the sources in turn until `decide` accepts a view, or the deadline passes. A source that is down or a view
 * that is "not yet" (no leader, a replica still starting) is noted and the next source is asked; a usage error
 * (wrong scope) or a non-retryable answer ends the wait at once.
 */
export async function waitForDecision<T>(
  readers: readonly ClusterReader[],
  decide: (view: ClusterView) => Promise<Decision<T>>,
  options: WaitOptions,
): Promise<T> {
  if (readers.length === 0) throw new UsageError('no Patroni or etcd endpoint is configured', 'pass --patroni URL[,URL] or --etcd URL[,URL] (PGDR_PATRONI, PGDR_ETCD)');
  const now = options.now ?? Date.now;
  const pause = options.sleep ?? ((ms: number) => sleep(ms));
  const pollMs = options.pollMs ?? 1000;
  const deadline = now() + options.waitMs;
  let lastProblems: string[] = [];
  let announced = false;
  for (;;) {
    const problems: string[] = [];
    for (const reader of readers) {
      let view: ClusterView;
      try {
        view = await reader.read();
      } catch (err) {
        if (err instanceof UsageError) throw err;
        problems.push(errorMessage(err));
        continue;
      }
      const decision = await decide(view);
      if (decision.ok) return decision.value;
      const problem = `${reader.kind} ${reader.endpoint}: ${decision.problem}`;
      if (!decision.retryable) throw new ServiceError(`cannot find ${options.what}: ${problem}`, hintFor(options.what));
      problems.push(problem);
    }
    lastProblems = problems;
    const left = deadline - now();
    if (left <= 0) break;
    if (!announced && options.log) {
      options.log(`no ${options.what.replace(/^an? /, '')} yet (${problems[0] ?? 'no answer'}); asking again for up to ${Math.round(options.waitMs / 1000)} s`);
      announced = true;
    }
    // The last round runs at the deadline itself, so a leader that appears just in time is found.
    await pause(Math.min(pollMs, left));
  }
  const waited = options.waitMs > 0 ? ` within ${Math.round(options.waitMs / 1000)} s` : '';
  throw new ServiceError(`found no ${options.what.replace(/^an? /, '')}${waited}: ${dedupe(lastProblems).join('; ')}`, hintFor(options.what));
}

function hintFor(what: string): string {
  return what.includes('replica')
    ? 'check `pgdr cluster status`; back up from the leader (--from leader) while no replica is healthy'
    : 'check `pgdr cluster status` and `patronictl list`; a failover takes up to Patroni\'s ttl, raise --leader-wait to wait longer';
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)];
}

export interface ResolvedSource {
  from: BackupFrom;
  member: ClusterMember;
  endpoint: PgEndpoint;
  /** The leader, which a backup from a standby asks to finish its WAL segment; null when the view had none usable. */
  leader: { member: ClusterMember; endpoint: PgEndpoint } | null;
  view: ClusterView;
  reason: string;
}

/** What a probe of PostgreSQL found: whether it is a standby. */
export type RecoveryProbe = (endpoint: PgEndpoint) => Promise<boolean>;

export const probeInRecovery: RecoveryProbe = (endpoint) =>
  withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery');
    return rows[0]?.in_recovery === true;
  });

export interface ResolveOptions extends ReplicaChoiceOptions {
  from: BackupFrom;
  waitMs: number;
  pollMs?: number;
  log?: (message: string) => void;
  probe?: RecoveryProbe;
  readers?: readonly ClusterReader[];
  now?: () => number;
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * The member a backup reads from, resolved right before the backup starts: the leader (a primary that answers and
 * is out of recovery) or, with from=replica, the least-lagged healthy replica (a standby that answers).
 */
export async function resolveBackupSource(settings: ClusterSourceSettings, options: ResolveOptions): Promise<ResolvedSource> {
  const readers = options.readers ?? clusterReaders(settings);
  const probe = options.probe ?? probeInRecovery;
  const endpointOf = (member: ClusterMember): PgEndpoint => ({ host: member.host ?? undefined, port: member.port ?? undefined, user: settings.pgUser });
  return waitForDecision<ResolvedSource>(
    readers,
    async (view) => {
      const choice = chooseBackupSource(view, options.from, options);
      if (!choice.ok) return choice;
      const leaderMember = view.members.find((m) => m.role === 'leader' && m.host !== null && m.port !== null);
      const endpoint = endpointOf(choice.member);
      let inRecovery: boolean;
      try {
        inRecovery = await probe(endpoint);
      } catch (err) {
        if (err instanceof PgdrError && !(err instanceof ServiceError)) throw err;
        // A wrong password or a missing pg_hba.conf line is no failover: asking again until the deadline cannot help.
        if (err instanceof PostgresSetupError) throw err;
        return { ok: false, problem: `cannot connect to ${describeMember(choice.member)}: ${firstLine(errorMessage(err))}`, retryable: true };
      }
      if (options.from === 'leader' && inRecovery) {
        return { ok: false, problem: `${choice.member.name} holds the leader key but is still in recovery (promotion not finished)`, retryable: true };
      }
      if (options.from === 'replica' && !inRecovery) {
        return { ok: false, problem: `${choice.member.name} is listed as a replica but is not in recovery (it was promoted)`, retryable: true };
      }
      return {
        ok: true,
        value: {
          from: options.from,
          member: choice.member,
          endpoint,
          leader: leaderMember ? { member: leaderMember, endpoint: endpointOf(leaderMember) } : null,
          view,
          reason: `${choice.reason} (via ${view.source.kind} ${view.source.endpoint})`,
        },
      };
    },
    {
      waitMs: options.waitMs,
      pollMs: options.pollMs,
      what: options.from === 'leader' ? 'a leader' : 'a healthy replica',
      log: options.log,
      now: options.now,
      sleep: options.sleep,
    },
  );
}

/**
 * A standby does not switch WAL when a base backup stops (only a primary does), so the backup's last segment
 * reaches the archive only once the leader finishes it. Writing a small WAL record first makes sure there is
 * something to switch away from even on an idle leader, whose pg_switch_wal() would otherwise do nothing.
 */
export async function finishLeaderWalSegment(leader: PgEndpoint, note: string): Promise<string> {
  return withConnection(leader, async (client) => {
    await client.query("SELECT pg_logical_emit_message(false, 'pgdr', $1::text)", [note]);
    const { rows } = await client.query<{ lsn: string }>('SELECT pg_switch_wal()::text AS lsn');
    return rows[0]?.lsn ?? '';
  });
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? text;
}
