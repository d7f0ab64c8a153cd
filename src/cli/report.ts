import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadPolicy } from '../config/policy.js';
import { errorMessage, UsageError } from '../errors.js';
import { renderBackupChart } from '../health/chart.js';
import { chartPoints, renderReportHtml, renderReportMarkdown, type ReportInput } from '../health/report.js';
import { parseTimestamp } from '../postgres/recovery-target.js';
import { readBackupCatalog, type BackupCatalog } from '../repo/catalog.js';
import { planRetention } from '../retention/plan.js';
import { addCommonOptions, type CommandContext } from './context.js';
import { evaluateRepositoryHealth } from './health.js';
import type { Action } from './main.js';

const CHART_FILE = 'chart.svg';

export function registerReportCommands(program: Command, action: Action): void {
  addCommonOptions(
    program
      .command('report')
      .description(`write a health report (report.md, report.html and ${CHART_FILE}): health checks, backups, retention plan, size and duration chart`)
      .option('--out <dir>', 'directory to write the report into (created if missing)', '.')
      .option('--now <timestamp>', 'judge ages and plan retention as of this moment (ISO 8601 with a zone) instead of the clock'),
  ).action(
    action(async (ctx: CommandContext, options: unknown) => {
      const opts = options as { out: string; now?: string };
      const now = opts.now === undefined ? new Date() : parseTimestamp(opts.now, '--now').at;
      const input = await gatherReport(ctx, now);
      const outDir = resolve(opts.out);
      const files = { markdown: join(outDir, 'report.md'), html: join(outDir, 'report.html'), chart: join(outDir, CHART_FILE) };
      try {
        await mkdir(outDir, { recursive: true });
        await writeFile(files.markdown, renderReportMarkdown(input, CHART_FILE));
        await writeFile(files.html, renderReportHtml(input));
        await writeFile(files.chart, renderBackupChart(chartPoints(input.catalog)));
      } catch (err) {
        throw new UsageError(`cannot write the report into ${outDir}: ${errorMessage(err)}`, 'choose a writable directory with --out');
      }
      ctx.emit(
        { outDir, files: Object.values(files), status: input.health.status, exitCode: input.health.exitCode },
        `report written to ${files.markdown}, ${files.html} and ${files.chart}; health ${input.health.status}`,
      );
    }),
  );
}

/** The report's data; a repository that does not answer still gives a report (that says so). */
async function gatherReport(ctx: CommandContext, now: Date): Promise<ReportInput> {
  const policy = loadPolicy(ctx.settings.policy);
  const { store, layout } = ctx.openRepository();
  try {
    const health = await evaluateRepositoryHealth(ctx, store, layout, policy, now);
    let catalog: BackupCatalog = { complete: [], incomplete: [], invalid: [] };
    let retention: ReportInput['retention'];
    try {
      catalog = await readBackupCatalog(store, layout);
      retention = { plan: planRetention(catalog.complete, policy, now), policy };
    } catch (err) {
      retention = { error: errorMessage(err) };
    }
    return { generatedAt: now, health, catalog, retention };
  } finally {
    await store.close();
  }
}
