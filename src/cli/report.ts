import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadPolicy, type Policy } from '../config/policy.js';
import { errorMessage, UsageError } from '../errors.js';
import { renderBackupChart } from '../health/chart.js';
import { fleetHealth } from '../health/fleet.js';
import { EXIT_CODE, worstState, type HealthState } from '../health/evaluate.js';
import { repositoryLabel } from '../config/repositories.js';
import {
  chartPoints,
  renderFleetReportHtml,
  renderFleetReportMarkdown,
  renderReportHtml,
  renderReportMarkdown,
  type FleetReportInput,
  type ReportInput,
} from '../health/report.js';
import { parseTimestamp } from '../postgres/recovery-target.js';
import { readBackupCatalog, type BackupCatalog } from '../repo/catalog.js';
import { mapConcurrently } from '../repo/concurrent-reads.js';
import { RepositoryLayout } from '../repo/layout.js';
import { planRetention } from '../retention/plan.js';
import type { ObjectStore } from '../storage/object-store.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { CLUSTERS_IN_FLIGHT, evaluateRepositoryHealth, findFleetClusters, refuseClusterWithAll } from './health.js';
import type { Action } from './action.js';

const CHART_FILE = 'chart.svg';

export function registerReportCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('report')
      .description(`write a health report (report.md, report.html and ${CHART_FILE}): health checks, backups, retention plan, size and duration chart`)
      .option('--out <dir>', 'directory to write the report into (created if missing)', '.')
      .option('--now <timestamp>', 'judge ages and plan retention as of this moment (ISO 8601 with a zone) instead of the clock')
      .option('--all', `every cluster in the repository on one page (report.md, report.html, chart-<cluster>.svg), a section per cluster`),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as { out: string; now?: string; all?: boolean; cluster?: string };
      const now = opts.now === undefined ? new Date() : parseTimestamp(opts.now, '--now').at;
      if (opts.all === true) {
        refuseClusterWithAll(opts.cluster);
        await writeFleetReport(ctx, now, resolve(opts.out));
        return;
      }
      const visits = ctx.repositoriesToVisit();
      if (visits.length > 1) {
        // Several repositories and none named: a report for each, in a directory named after it.
        const written = [];
        for (const r of visits) written.push({ repository: repositoryLabel(r), ...(await writeReport(ctx.forRepository(r), now, join(resolve(opts.out), repositoryLabel(r)))) });
        const status = worstState(written.map((w) => w.status));
        ctx.emit(
          { outDir: resolve(opts.out), status, exitCode: EXIT_CODE[status], repositories: written },
          written.map((w) => `repository ${w.repository}: report written to ${w.files.join(', ')}; health ${w.status}`).join('\n'),
        );
        return;
      }
      const written = await writeReport(ctx, now, resolve(opts.out));
      ctx.emit(written, `report written to ${written.files[0]}, ${written.files[1]} and ${written.files[2]}; health ${written.status}`);
    }),
  );
}

/** report.md, report.html and the chart for the repository `ctx` works with. */
async function writeReport(ctx: CommandContext, now: Date, outDir: string): Promise<{ outDir: string; files: string[]; status: HealthState; exitCode: number }> {
  const input = await gatherReport(ctx, now);
  const files = { markdown: join(outDir, 'report.md'), html: join(outDir, 'report.html'), chart: join(outDir, CHART_FILE) };
  try {
    await mkdir(outDir, { recursive: true });
    await writeFile(files.markdown, renderReportMarkdown(input, CHART_FILE));
    await writeFile(files.html, renderReportHtml(input));
    await writeFile(files.chart, renderBackupChart(chartPoints(input.catalog)));
  } catch (err) {
    throw new UsageError(`cannot write the report into ${outDir}: ${errorMessage(err)}`, 'choose a writable directory with --out');
  }
  return { outDir, files: Object.values(files), status: input.health.status, exitCode: input.health.exitCode };
}

/** The report's data; a repository that does not answer still gives a report (that says so). */
async function gatherReport(ctx: CommandContext, now: Date): Promise<ReportInput> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store, layout } = ctx.openRepository();
  try {
    return await clusterReport(ctx, store, layout, policy, now, false);
  } finally {
    await store.close();
  }
}

async function clusterReport(ctx: CommandContext, store: ObjectStore, layout: RepositoryLayout, policy: Policy, now: Date, fleet: boolean): Promise<ReportInput> {
  const health = await evaluateRepositoryHealth(ctx, store, layout, policy, now, { fleet });
  let catalog: BackupCatalog = { complete: [], incomplete: [], invalid: [] };
  let retention: ReportInput['retention'];
  try {
    catalog = await readBackupCatalog(store, layout);
    retention = { plan: planRetention(catalog.complete, policy, now), policy };
  } catch (err) {
    retention = { error: errorMessage(err) };
  }
  return { generatedAt: now, health, catalog, retention };
}

/** `pgdr report --all`: one page for the whole repository, a chart file per cluster beside it. */
async function writeFleetReport(ctx: CommandContext, now: Date, outDir: string): Promise<void> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store } = ctx.openRepository();
  let input: FleetReportInput;
  try {
    const found = await findFleetClusters(store, now);
    if ('failure' in found) {
      input = { generatedAt: now, fleet: found.failure, clusters: [] };
    } else {
      const clusters = await mapConcurrently(found.clusters, CLUSTERS_IN_FLIGHT, (cluster) => clusterReport(ctx, store, new RepositoryLayout(cluster), policy, now, true));
      const fleet = fleetHealth(store.location, now, clusters.map((c) => c.health));
      // In the fleet's order (by name), which is the order its page shows them.
      const byName = new Map(clusters.map((c) => [c.health.cluster, c]));
      input = { generatedAt: now, fleet, clusters: fleet.clusters.map((h) => byName.get(h.cluster)!) };
    }
  } finally {
    await store.close();
  }
  const chartFile = (cluster: string): string => `chart-${cluster}.svg`;
  const files = [join(outDir, 'report.md'), join(outDir, 'report.html'), ...input.clusters.map((c) => join(outDir, chartFile(c.health.cluster)))];
  try {
    await mkdir(outDir, { recursive: true });
    await writeFile(files[0]!, renderFleetReportMarkdown(input, chartFile));
    await writeFile(files[1]!, renderFleetReportHtml(input));
    for (const cluster of input.clusters) await writeFile(join(outDir, chartFile(cluster.health.cluster)), renderBackupChart(chartPoints(cluster.catalog)));
  } catch (err) {
    throw new UsageError(`cannot write the report into ${outDir}: ${errorMessage(err)}`, 'choose a writable directory with --out');
  }
  const { fleet } = input;
  ctx.emit(
    { outDir, files, status: fleet.status, exitCode: fleet.exitCode, clusters: fleet.clusters.map((c) => ({ cluster: c.cluster, status: c.status, exitCode: c.exitCode })) },
    `report on ${fleet.clusters.length} cluster(s) written to ${files[0]} and ${files[1]}; health ${fleet.status}`,
  );
}
