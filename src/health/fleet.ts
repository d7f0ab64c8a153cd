import { EXIT_CODE, worstState, type HealthReport, type HealthState } from './evaluate.js';

/**
 * `pgdr health --all` and `pgdr report --all`: every cluster of one repository judged in one run, for the operator
 * of several Patroni clusters who wants them on one page and one alert. Pure: the command gathers each cluster's
 * report; this only combines them.
 */
export interface FleetHealthReport {
  /** The repository location (secrets redacted). */
  repository: string;
  evaluatedAt: Date;
  /** The worst cluster's state (OK < WARNING < UNKNOWN < CRITICAL), or CRITICAL when no cluster could be judged. */
  status: HealthState;
  exitCode: number;
  /** By cluster name. */
  clusters: HealthReport[];
  /** Why no cluster could be judged: the repository did not answer, or holds no cluster. */
  problem?: { message: string; hint: string };
}

export function fleetHealth(repository: string, evaluatedAt: Date, clusters: readonly HealthReport[]): FleetHealthReport {
  if (clusters.length === 0) {
    return fleetFailure(repository, evaluatedAt, {
      message: `no cluster in repository ${repository}`,
      hint: 'check --repo (and the S3 prefix): a cluster is a first-level name holding cluster.json, backups/ or wal/',
    });
  }
  const sorted = [...clusters].sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
  const status = worstState(sorted.map((c) => c.status));
  return { repository, evaluatedAt, status, exitCode: EXIT_CODE[status], clusters: sorted };
}

/**
 * Nothing can be judged per cluster. CRITICAL, as one cluster's unreachable repository is: whatever the clusters'
 * state, nobody can restore from here.
 */
export function fleetFailure(repository: string, evaluatedAt: Date, problem: { message: string; hint: string }): FleetHealthReport {
  return { repository, evaluatedAt, status: 'CRITICAL', exitCode: EXIT_CODE.CRITICAL, clusters: [], problem };
}

/** "1 CRITICAL (gamma), 1 WARNING (beta), 1 OK": the states present, worst first, naming the clusters not OK. */
export function describeFleetStates(fleet: FleetHealthReport): string {
  const order: HealthState[] = ['CRITICAL', 'UNKNOWN', 'WARNING', 'OK'];
  const parts: string[] = [];
  for (const state of order) {
    const names = fleet.clusters.filter((c) => c.status === state).map((c) => c.cluster);
    if (names.length === 0) continue;
    parts.push(state === 'OK' ? `${names.length} OK` : `${names.length} ${state} (${names.join(', ')})`);
  }
  return parts.join(', ');
}
