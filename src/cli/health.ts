import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { loadPolicy, type Policy } from '../config/policy.js';
import { errorMessage, PgdrError, UsageError } from '../errors.js';
import { CHECK_NAMES, evaluateHealth, EXIT_CODE, worstState, type CheckName, type HealthReport } from '../health/evaluate.js';
import { repositoryLabel } from '../config/repositories.js';
import { fleetFailure, fleetHealth, type FleetHealthReport } from '../health/fleet.js';
import { gatherHealthFacts } from '../health/gather.js';
import { fleetHealthJson, healthJson, renderFleetHealthText, renderHealthText, renderRepositoriesHealthText, repositoriesHealthJson } from '../health/output.js';
import { renderFleetPrometheus, renderPrometheus, renderRepositoriesPrometheus } from '../health/prometheus.js';
import { healthSources } from '../health/sources.js';
import type { PgEndpoint } from '../postgres/connection.js';
import { parseTimestamp } from '../postgres/recovery-target.js';
import { listClusters } from '../repo/clusters.js';
import { mapConcurrently } from '../repo/concurrent-reads.js';
import { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './action.js';

type HealthFormat = 'text' | 'json' | 'prometheus';

interface HealthOptions {
  format?: string;
  check?: string;
  textfile?: string;
  now?: string;
  all?: boolean;
  cluster?: string;
}

/** Why `--all` skips the WAL check: one --pg-host cannot be every cluster's server. */
export const FLEET_WAL_REASON =
  'with --all only the repository is read; judge the WAL archive per cluster against its own server (pgdr health --cluster NAME with --pg-host or --patroni)';

/** Clusters judged at once by --all; each reads its own manifests several at a time already. */
export const CLUSTERS_IN_FLIGHT = 4;

export function registerHealthCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('health')
      .description(
        'check backup age, WAL archive lag, etcd snapshot age, the last restore drill and the repository; ' +
          'exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention, worst check wins)',
      )
      .option('--format <format>', 'text (Nagios status line + one line per check), json, or prometheus (text exposition format)', 'text')
      .option('--check <names>', `only these checks, comma-separated: ${CHECK_NAMES.join(', ')}`)
      .option('--textfile <path>', "also write the Prometheus metrics to this file atomically (node_exporter's textfile collector)")
      .option('--now <timestamp>', 'judge ages as of this moment (ISO 8601 with a zone) instead of the clock: for tests and what-ifs')
      .option('--all', 'every cluster in the repository in one run, grouped by cluster; the worst cluster sets the exit code')
      .addHelpText(
        'after',
        '\nA check whose input is not configured is SKIPPED and does not count: wal-archive without --pg-host/PGHOST or' +
          '\n--patroni; etcd-snapshot without --etcd and with no snapshot stored. A configured input that cannot be read' +
          '\nmakes its check UNKNOWN. Thresholds come from the policy file (health: section, see policies/README.md).' +
          '\nMetric names for --format prometheus are listed in docs/kubernetes.md.' +
          '\n\n--all finds every cluster under the repository (a first-level name holding cluster.json, backups/ or wal/)' +
          '\nand runs the checks for each. It reads only the repository, so wal-archive is SKIPPED: one server cannot be' +
          '\nevery cluster\'s; check it per cluster with --cluster. --json prints {status, exitCode, clusters: [...]},' +
          '\n--format prometheus labels every sample with its cluster.',
      ),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as HealthOptions;
      const format = healthFormat(ctx, opts.format);
      const only = parseCheckList(opts.check);
      const now = opts.now === undefined ? new Date() : parseTimestamp(opts.now, '--now').at;
      if (opts.all === true) {
        refuseClusterWithAll(opts.cluster);
        const fleet = await runFleetHealthChecks(ctx, now, only);
        if (opts.textfile !== undefined) await writeFileAtomically(opts.textfile, renderFleetPrometheus(fleet));
        if (format === 'prometheus') process.stdout.write(renderFleetPrometheus(fleet));
        else if (format === 'json') process.stdout.write(`${JSON.stringify(fleetHealthJson(fleet), null, 2)}\n`);
        else process.stdout.write(renderFleetHealthText(fleet));
        return fleet.exitCode;
      }
      const visits = ctx.repositoriesToVisit();
      if (visits.length > 1) {
        // Each repository judged on its own (backup age, etcd snapshots, drills); the worst sets the exit code.
        const reports = await mapConcurrently(visits, 2, async (r) => ({ name: repositoryLabel(r), report: await runHealthChecks(ctx.forRepository(r), now, only) }));
        const status = worstState(reports.map((r) => r.report.status));
        if (opts.textfile !== undefined) await writeFileAtomically(opts.textfile, renderRepositoriesPrometheus(reports));
        if (format === 'prometheus') process.stdout.write(renderRepositoriesPrometheus(reports));
        else if (format === 'json') process.stdout.write(`${JSON.stringify(repositoriesHealthJson(status, EXIT_CODE[status], reports), null, 2)}\n`);
        else process.stdout.write(renderRepositoriesHealthText(status, reports));
        return EXIT_CODE[status];
      }
      const report = await runHealthChecks(ctx, now, only);
      if (opts.textfile !== undefined) await writeFileAtomically(opts.textfile, renderPrometheus(report));
      if (format === 'prometheus') process.stdout.write(renderPrometheus(report));
      else if (format === 'json') process.stdout.write(`${JSON.stringify(healthJson(report), null, 2)}\n`);
      else process.stdout.write(renderHealthText(report));
      return report.exitCode;
    }),
  );
}

/** `--all` covers every cluster; a --cluster beside it would be silently ignored, so it is refused. */
export function refuseClusterWithAll(cluster: string | undefined): void {
  if (cluster !== undefined) {
    throw new UsageError('--all covers every cluster in the repository; --cluster names one', 'drop --cluster, or drop --all to look at that cluster alone');
  }
}

/** Reads the facts and judges them. */
export async function runHealthChecks(ctx: CommandContext, now: Date, only?: readonly CheckName[]): Promise<HealthReport> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store, layout } = ctx.openRepository();
  // A repository that does not receive WAL (an off-site one for daily fulls) has no archive to be behind.
  const repository = ctx.settings.repository;
  const noWal = repository !== undefined && !repository.receives.includes('wal') ? `repository ${repositoryLabel(repository)} does not receive WAL` : undefined;
  try {
    return await evaluateRepositoryHealth(ctx, store, layout, policy, now, { ...(only === undefined ? {} : { only }), ...(noWal === undefined ? {} : { walSkipped: noWal }) });
  } finally {
    await store.close();
  }
}

async function runFleetHealthChecks(ctx: CommandContext, now: Date, only?: readonly CheckName[]): Promise<FleetHealthReport> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store } = ctx.openRepository();
  try {
    return await evaluateFleetHealth(ctx, store, policy, now, only);
  } finally {
    await store.close();
  }
}

export interface ClusterHealthOptions {
  only?: readonly CheckName[];
  /** Part of an --all run: the WAL check is SKIPPED (FLEET_WAL_REASON) instead of using the configured server. */
  fleet?: boolean;
  /** Why the WAL check is SKIPPED for this repository (it does not receive WAL). */
  walSkipped?: string;
}

/** The checks over an open repository; shared with `pgdr report`, which goes on reading the same store. */
export async function evaluateRepositoryHealth(
  ctx: CommandContext,
  store: ObjectStore,
  layout: RepositoryLayout,
  policy: Policy,
  now: Date,
  options: ClusterHealthOptions = {},
): Promise<HealthReport> {
  const facts = await gatherHealthFacts(
    healthSources({
      store,
      layout,
      primary: options.fleet === true || options.walSkipped !== undefined ? null : leaderEndpoint(ctx),
      ...(options.fleet === true ? { serverNotConfiguredReason: FLEET_WAL_REASON } : options.walSkipped !== undefined ? { serverNotConfiguredReason: options.walSkipped } : {}),
      etcdConfigured: ctx.settings.etcd.length > 0,
    }),
  );
  return evaluateHealth(facts, policy.health, now, options.only === undefined ? {} : { only: options.only });
}

/** Every cluster of the repository judged; a repository that cannot be listed is the one CRITICAL finding. */
export async function evaluateFleetHealth(
  ctx: CommandContext,
  store: ObjectStore,
  policy: Policy,
  now: Date,
  only?: readonly CheckName[],
): Promise<FleetHealthReport> {
  const found = await findFleetClusters(store, now);
  if ('failure' in found) return found.failure;
  const reports = await mapConcurrently(found.clusters, CLUSTERS_IN_FLIGHT, (cluster) =>
    evaluateRepositoryHealth(ctx, store, new RepositoryLayout(cluster), policy, now, { ...(only === undefined ? {} : { only }), fleet: true }),
  );
  return fleetHealth(store.location, now, reports);
}

/** The clusters --all covers, or the fleet report that says the repository could not be listed. */
export async function findFleetClusters(store: ObjectStore, now: Date): Promise<{ clusters: string[] } | { failure: FleetHealthReport }> {
  try {
    return { clusters: await listClusters(store) };
  } catch (err) {
    return {
      failure: fleetFailure(store.location, now, {
        message: `repository unreachable: ${errorMessage(err)}`,
        hint: err instanceof PgdrError ? err.hint : 'check --repo, the storage endpoint and credentials',
      }),
    };
  }
}

/**
 * Where the WAL check connects: --pg-host as given; otherwise the leader, found through Patroni or etcd the way
 * `backup now` finds it (etcd alone is enough). null when nothing names a server: the check is SKIPPED.
 */
function leaderEndpoint(ctx: CommandContext): (() => Promise<PgEndpoint>) | null {
  if (ctx.settings.pgHost !== undefined) return async () => ctx.pgEndpoint();
  if (ctx.settings.patroni.length === 0 && ctx.settings.etcd.length === 0) return null;
  return async () => {
    // Loaded only when asked: etcd's gRPC client is heavy for a check that may not need it.
    const [{ clusterSourceSettings }, { resolveBackupSource }] = await Promise.all([import('./cluster.js'), import('../cluster/discover.js')]);
    const resolved = await resolveBackupSource(clusterSourceSettings(ctx, {}), { from: 'leader', waitMs: 0 });
    return resolved.endpoint;
  };
}

function healthFormat(ctx: CommandContext, value: string | undefined): HealthFormat {
  if (ctx.json) return 'json';
  if (value === 'text' || value === 'json' || value === 'prometheus' || value === undefined) return value ?? 'text';
  throw new UsageError(`--format ${JSON.stringify(value)} is not a health output format`, 'use --format text, json or prometheus');
}

export function parseCheckList(value: string | undefined): CheckName[] | undefined {
  if (value === undefined) return undefined;
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UsageError('--check names no check', `name one or more of ${CHECK_NAMES.join(', ')}`);
  for (const name of names) {
    if (!(CHECK_NAMES as readonly string[]).includes(name)) {
      throw new UsageError(`--check ${JSON.stringify(name)} is not a health check`, `choose from ${CHECK_NAMES.join(', ')}`);
    }
  }
  return names as CheckName[];
}

/** The textfile collector may read at any moment: write beside the target, then rename over it. */
async function writeFileAtomically(path: string, content: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, content, { mode: 0o644 });
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new UsageError(`cannot write --textfile ${path}: ${(err as Error).message}`, 'check that the directory exists and is writable');
  }
}
