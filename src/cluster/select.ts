import { describeMember, type ClusterMember, type ClusterView } from './members.js';

/**
 * Which member pgdr backs up from: pure decisions over a ClusterView, so each rule has a unit test and the code
 * that talks to Patroni, etcd and PostgreSQL only carries them out.
 */
export type BackupFrom = 'leader' | 'replica';

export type SourceChoice =
  | { ok: true; member: ClusterMember; reason: string }
  | {
      ok: false;
      problem: string;
      /**
       * True when waiting may help (no leader yet, a replica still starting); false when the cluster is shaped so
       * that no amount of waiting gives an answer (a standby cluster asked for its primary).
       */
      retryable: boolean;
    };

export interface ReplicaChoiceOptions {
  /** Refuse replicas further behind than this many bytes; undefined: any lag. */
  maxLagBytes?: number;
}

/** Patroni states in which a member's PostgreSQL is up and following (3.0.x says running, later streaming). */
const FOLLOWING_STATES = new Set(['running', 'streaming']);

export function chooseBackupSource(view: ClusterView, from: BackupFrom, options: ReplicaChoiceOptions = {}): SourceChoice {
  return from === 'leader' ? chooseLeader(view) : chooseReplica(view, options);
}

/** The member holding the leader key, if it is a running primary with a known address. */
export function chooseLeader(view: ClusterView): SourceChoice {
  const leaders = view.members.filter((m) => m.role === 'leader' || m.role === 'standby_leader');
  if (leaders.length > 1) {
    return { ok: false, problem: `${leaders.map((m) => m.name).join(' and ')} all claim to lead`, retryable: true };
  }
  const leader = leaders[0] ?? (view.leader !== null ? view.members.find((m) => m.name === view.leader) : undefined);
  if (leader === undefined) {
    return {
      ok: false,
      problem: view.leader === null ? 'the cluster has no leader' : `the leader ${view.leader} is not among the registered members`,
      retryable: true,
    };
  }
  if (leader.role === 'standby_leader') {
    return {
      ok: false,
      problem: `this is a standby cluster: its leader ${leader.name} replicates from another cluster`,
      retryable: false,
    };
  }
  if (leader.state !== 'running') {
    return { ok: false, problem: `the leader ${leader.name} is ${leader.state || 'in an unknown state'}`, retryable: true };
  }
  if (leader.host === null || leader.port === null) {
    return { ok: false, problem: `the leader ${leader.name} did not publish its PostgreSQL address (conn_url)`, retryable: false };
  }
  return { ok: true, member: leader, reason: `${describeMember(leader)} holds the leader key` };
}

/**
 * The least-lagged healthy replica: running or streaming, its lag known, on the leader's timeline (a replica that
 * has not followed a failover yet would be backed up on a dead timeline), within maxLagBytes; and only while there
 * is a leader, which must finish the WAL of the standby's backup. Ties go to a
 * Patroni `clonefrom` member, then to the name, so the choice is stable.
 */
export function chooseReplica(view: ClusterView, options: ReplicaChoiceOptions = {}): SourceChoice {
  const leader = view.members.find((m) => m.role === 'leader' || m.name === view.leader);
  if (leader === undefined || leader.host === null || leader.port === null) {
    // Without a leader nothing archives the WAL that makes a standby's backup consistent (see discover.ts).
    return { ok: false, problem: 'the cluster has no leader to finish the WAL of a backup from a replica', retryable: true };
  }
  const replicas = view.members.filter((m) => m.role === 'replica' || m.role === 'sync_standby');
  if (replicas.length === 0) {
    return { ok: false, problem: 'the cluster has no replica', retryable: true };
  }
  const rejected: string[] = [];
  const healthy: Array<{ member: ClusterMember; lag: number }> = [];
  for (const member of replicas) {
    const why = replicaProblem(member, leader, options);
    if (why !== undefined) rejected.push(`${member.name}: ${why}`);
    else healthy.push({ member, lag: member.lagBytes as number });
  }
  if (healthy.length === 0) {
    return { ok: false, problem: `no healthy replica (${rejected.join('; ')})`, retryable: true };
  }
  healthy.sort(
    (a, b) =>
      a.lag - b.lag ||
      Number(b.member.tags.clonefrom === true) - Number(a.member.tags.clonefrom === true) ||
      a.member.name.localeCompare(b.member.name),
  );
  const best = healthy[0] as { member: ClusterMember; lag: number };
  const others = healthy.length > 1 ? `, the least lagged of ${healthy.length} healthy replicas` : '';
  return { ok: true, member: best.member, reason: `${describeMember(best.member)} is ${best.lag} bytes behind the leader${others}` };
}

function replicaProblem(member: ClusterMember, leader: ClusterMember, options: ReplicaChoiceOptions): string | undefined {
  if (!FOLLOWING_STATES.has(member.state)) return `state ${member.state || 'unknown'}`;
  if (member.host === null || member.port === null) return 'no PostgreSQL address (conn_url)';
  if (member.lagBytes === null) return 'lag unknown';
  if (leader.timeline !== null && member.timeline !== null && member.timeline !== leader.timeline) {
    return `on timeline ${member.timeline}, the leader is on ${leader.timeline}`;
  }
  if (options.maxLagBytes !== undefined && member.lagBytes > options.maxLagBytes) {
    return `${member.lagBytes} bytes behind, more than ${options.maxLagBytes}`;
  }
  return undefined;
}
