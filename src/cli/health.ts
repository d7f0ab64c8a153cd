import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { loadPolicy, type Policy } from '../config/policy.js';
import { UsageError } from '../errors.js';
import { CHECK_NAMES, evaluateHealth, type CheckName, type HealthReport } from '../health/evaluate.js';
import { gatherHealthFacts } from '../health/gather.js';
import { healthJson, renderHealthText } from '../health/output.js';
import { renderPrometheus } from '../health/prometheus.js';
import { healthSources } from '../health/sources.js';
import type { PgEndpoint } from '../postgres/connection.js';
import { parseTimestamp } from '../postgres/recovery-target.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { addCommonOptions, type CommandContext } from './context.js';
import type { Action } from './main.js';

type HealthFormat = 'text' | 'json' | 'prometheus';

interface HealthOptions {
  format?: string;
  check?: string;
  textfile?: string;
  now?: string;
}

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
      .addHelpText(
        'after',
        '\nA check whose input is not configured is SKIPPED and does not count: wal-archive without --pg-host/PGHOST or' +
          '\n--patroni; etcd-snapshot without --etcd and with no snapshot stored. A configured input that cannot be read' +
          '\nmakes its check UNKNOWN. Thresholds come from the policy file (health: section, see policies/README.md).' +
          '\nMetric names for --format prometheus are listed in docs/kubernetes.md.',
      ),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as HealthOptions;
      const format = healthFormat(ctx, opts.format);
      const only = parseCheckList(opts.check);
      const now = opts.now === undefined ? new Date() : parseTimestamp(opts.now, '--now').at;
      const report = await runHealthChecks(ctx, now, only);
      if (opts.textfile !== undefined) await writeFileAtomically(opts.textfile, renderPrometheus(report));
      if (format === 'prometheus') process.stdout.write(renderPrometheus(report));
      else if (format === 'json') process.stdout.write(`${JSON.stringify(healthJson(report), null, 2)}\n`);
      else process.stdout.write(renderHealthText(report));
      return report.exitCode;
    }),
  );
}

/** Reads the facts and judges them. */
export async function runHealthChecks(ctx: CommandContext, now: Date, only?: readonly CheckName[]): Promise<HealthReport> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store, layout } = ctx.openRepository();
  try {
    return await evaluateRepositoryHealth(ctx, store, layout, policy, now, only);
  } finally {
    await store.close();
  }
}

/** The checks over an open repository; shared with `pgdr report`, which goes on reading the same store. */
export async function evaluateRepositoryHealth(
  ctx: CommandContext,
  store: ObjectStore,
  layout: RepositoryLayout,
  policy: Policy,
  now: Date,
  only?: readonly CheckName[],
): Promise<HealthReport> {
  const facts = await gatherHealthFacts(
    healthSources({
      store,
      layout,
      primary: leaderEndpoint(ctx),
      etcdConfigured: ctx.settings.etcd.length > 0,
    }),
  );
  return evaluateHealth(facts, policy.health, now, only === undefined ? {} : { only });
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
