import type { Policy } from '../config/policy.js';
import { formatDuration } from '../config/policy.js';
import type { BackupCatalog } from '../repo/catalog.js';
import type { RetentionPlan } from '../retention/plan.js';
import { formatBytes } from '../stream/progress.js';
import { escapeXml, formatSeconds, renderBackupChart, type BackupChartPoint } from './chart.js';
import type { HealthReport } from './evaluate.js';
import { describeFleetStates, type FleetHealthReport } from './fleet.js';

/**
 * `pgdr report`: the health checks, the backup list, the retention plan and a chart of backup sizes and durations,
 * as Markdown (for a wiki or a ticket) and as one self-contained HTML page (the chart inline). Pure renderers over
 * plain data; the command gathers the data and writes the files.
 */

export interface ReportInput {
  generatedAt: Date;
  health: HealthReport;
  catalog: BackupCatalog;
  /** The plan `pgdr expire` would carry out now, or why it could not be made. */
  retention: { plan: RetentionPlan; policy: Policy } | { error: string };
}

interface BackupRow {
  backupId: string;
  status: 'complete' | 'incomplete' | 'invalid';
  start: string;
  stop: string;
  duration: string;
  size: string;
  stored: string;
  timeline: string;
  retention: string;
}

export function chartPoints(catalog: BackupCatalog): BackupChartPoint[] {
  return catalog.complete.map((m) => ({
    backupId: m.backupId,
    startTime: new Date(m.startTime),
    bytes: m.bytes,
    storedBytes: m.storedBytes,
    durationSeconds: Math.max(0, new Date(m.stopTime).getTime() - new Date(m.startTime).getTime()) / 1000,
  }));
}

function backupRows(input: ReportInput): BackupRow[] {
  const verdicts = 'plan' in input.retention ? new Map(input.retention.plan.backups.map((v) => [v.backupId, v.reason])) : new Map<string, string>();
  const rows: BackupRow[] = [
    ...input.catalog.complete.map((m) => ({
      backupId: m.backupId,
      status: 'complete' as const,
      start: moment(new Date(m.startTime)),
      stop: moment(new Date(m.stopTime)),
      duration: formatSeconds(Math.max(0, new Date(m.stopTime).getTime() - new Date(m.startTime).getTime()) / 1000),
      size: formatBytes(m.bytes),
      stored: formatBytes(m.storedBytes),
      timeline: String(m.timeline),
      retention: verdicts.get(m.backupId) ?? '-',
    })),
    ...input.catalog.incomplete.map((b) => ({
      backupId: b.backupId,
      status: 'incomplete' as const,
      start: '-',
      stop: '-',
      duration: '-',
      size: '-',
      stored: formatBytes(b.storedBytes),
      timeline: '-',
      retention: 'garbage once older than the grace period',
    })),
    ...input.catalog.invalid.map((b) => ({
      backupId: b.backupId,
      status: 'invalid' as const,
      start: '-',
      stop: '-',
      duration: '-',
      size: '-',
      stored: '-',
      timeline: '-',
      retention: b.problem,
    })),
  ];
  return rows.sort((a, b) => a.backupId.localeCompare(b.backupId));
}

function retentionSummary(input: ReportInput): string[] {
  if (!('plan' in input.retention)) return [`The retention plan could not be made: ${input.retention.error}`];
  const { plan, policy } = input.retention;
  const t = policy.retention.backups;
  const lines = [
    `Policy: keep the newest ${t.daily} daily, ${t.weekly} weekly, ${t.monthly} monthly and ${t.yearly} yearly backups; ` +
      `PITR window ${formatDuration(policy.retention.pitrWindow)} (every moment since ${moment(plan.windowStart)} stays restorable).`,
  ];
  lines.push(
    plan.deleted.length === 0
      ? `\`pgdr expire\` would keep all ${plan.kept.length} complete backup(s).`
      : `\`pgdr expire\` would keep ${plan.kept.length} and delete ${plan.deleted.length} backup(s): ${plan.deleted.map((m) => m.backupId).join(', ')}.`,
  );
  return lines;
}

export function renderReportMarkdown(input: ReportInput, chartFile: string): string {
  const { health } = input;
  const out: string[] = [
    `# pgdr report: cluster ${health.cluster}`,
    '',
    `Generated ${moment(input.generatedAt)} from ${health.repository ?? '(repository unreachable)'}. ` +
      `Overall health: **${health.status}** (exit ${health.exitCode}).`,
    '',
    ...clusterMarkdown(input, chartFile, '##'),
  ];
  return out.join('\n');
}

/** `pgdr report --all`: every cluster of the repository on one page. */
export interface FleetReportInput {
  generatedAt: Date;
  fleet: FleetHealthReport;
  /** One per cluster, in the fleet's order. */
  clusters: ReportInput[];
}

/** One page: a table with a line per cluster, then each cluster's report as a section. */
export function renderFleetReportMarkdown(input: FleetReportInput, chartFileOf: (cluster: string) => string): string {
  const { fleet } = input;
  const out: string[] = [`# pgdr report: ${fleet.clusters.length} cluster(s) in ${fleet.repository}`, '', fleetLine(input), ''];
  if (fleet.problem) return [...out, `${fleet.problem.message}. ${fleet.problem.hint}.`, ''].join('\n');
  out.push('| cluster | health | newest backup | backups | finding |', '|---|---|---|---|---|');
  for (const row of fleetRows(input)) out.push(`| ${[row.cluster, row.status, row.newest, row.backups, row.finding].map(cell).join(' | ')} |`);
  out.push('');
  for (const cluster of input.clusters) {
    const { health } = cluster;
    out.push(`## Cluster ${health.cluster}`, '', `Overall health: **${health.status}** (exit ${health.exitCode}).`, '', ...clusterMarkdown(cluster, chartFileOf(health.cluster), '###'));
  }
  return out.join('\n');
}

function fleetLine(input: FleetReportInput): string {
  const { fleet } = input;
  const states = fleet.problem ? '' : `: ${describeFleetStates(fleet)}`;
  return `Generated ${moment(input.generatedAt)}. Overall health: **${fleet.status}** (exit ${fleet.exitCode})${states}.`;
}

interface FleetRow {
  cluster: string;
  status: string;
  newest: string;
  backups: string;
  finding: string;
}

function fleetRows(input: FleetReportInput): FleetRow[] {
  return input.clusters.map(({ health, catalog }) => {
    const newest = [...catalog.complete].sort((a, b) => a.stopTime.localeCompare(b.stopTime)).at(-1);
    const worst = health.checks.find((c) => c.status === health.status && c.status !== 'OK');
    return {
      cluster: health.cluster,
      status: health.status,
      newest: newest === undefined ? '-' : `${newest.backupId} (stopped ${moment(new Date(newest.stopTime))})`,
      backups: `${catalog.complete.length} complete, ${catalog.incomplete.length} incomplete, ${catalog.invalid.length} invalid`,
      finding: worst === undefined ? '-' : `${worst.check}: ${worst.message}`,
    };
  });
}

/** Health checks, backups, retention plan and chart of one cluster, under headings of the given level. */
function clusterMarkdown(input: ReportInput, chartFile: string, level: string): string[] {
  const { health } = input;
  const out: string[] = [
    `${level} Health checks`,
    '',
    '| check | status | finding |',
    '|---|---|---|',
    ...health.checks.map((c) => `| ${cell(c.check)} | ${cell(c.status)} | ${cell(c.message + (c.hint && c.status !== 'OK' && c.status !== 'SKIPPED' ? ` (${c.hint})` : ''))} |`),
    '',
    `${level} Backups`,
    '',
    `${input.catalog.complete.length} complete, ${input.catalog.incomplete.length} incomplete, ${input.catalog.invalid.length} invalid.`,
    '',
  ];
  const rows = backupRows(input);
  if (rows.length > 0) {
    out.push('| backup | status | start | stop | duration | size | stored | timeline | retention |', '|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      out.push(`| ${[r.backupId, r.status, r.start, r.stop, r.duration, r.size, r.stored, r.timeline, r.retention].map(cell).join(' | ')} |`);
    }
    out.push('');
  }
  out.push(`${level} Retention plan`, '', ...retentionSummary(input), '', `${level} Backup sizes and durations`, '', `![Backup sizes and durations over time](${chartFile})`, '');
  return out;
}

const HTML_STYLE = [
  '<style>',
  'body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}',
  'table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}',
  'th{background:#f4f4f4}.s-ok{color:#1a7f37}.s-warning{color:#9a6700}.s-critical{color:#cf222e;font-weight:bold}',
  '.s-unknown{color:#8250df}.s-skipped{color:#777}.hint{color:#555;font-size:90%}',
  '</style>',
];

const statusClass = (s: string): string => `s-${s.toLowerCase()}`;

export function renderReportHtml(input: ReportInput): string {
  const { health } = input;
  const h = escapeXml;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>pgdr report: cluster ${h(health.cluster)}</title>`,
    ...HTML_STYLE,
    '</head>',
    '<body>',
    `<h1>pgdr report: cluster ${h(health.cluster)}</h1>`,
    `<p>Generated ${h(moment(input.generatedAt))} from ${h(health.repository ?? '(repository unreachable)')}. ` +
      `Overall health: <strong class="${statusClass(health.status)}">${h(health.status)}</strong> (exit ${health.exitCode}).</p>`,
    ...clusterHtml(input, 'h2'),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** The one-page HTML of `pgdr report --all`, every chart inline. */
export function renderFleetReportHtml(input: FleetReportInput): string {
  const { fleet } = input;
  const h = escapeXml;
  const title = `pgdr report: ${fleet.clusters.length} cluster(s) in ${fleet.repository}`;
  const out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">', `<title>${h(title)}</title>`, ...HTML_STYLE, '</head>', '<body>'];
  out.push(`<h1>${h(title)}</h1>`, `<p>${h(fleetLine(input)).replace(/\*\*([^*]+)\*\*/, `<strong class="${statusClass(fleet.status)}">$1</strong>`)}</p>`);
  if (fleet.problem) {
    out.push(`<p>${h(fleet.problem.message)}. <span class="hint">${h(fleet.problem.hint)}.</span></p>`);
  } else {
    out.push('<table><thead><tr><th>cluster</th><th>health</th><th>newest backup</th><th>backups</th><th>finding</th></tr></thead><tbody>');
    for (const row of fleetRows(input)) {
      out.push(
        `<tr><td><a href="#cluster-${h(row.cluster)}">${h(row.cluster)}</a></td><td class="${statusClass(row.status)}">${h(row.status)}</td>` +
          `<td>${h(row.newest)}</td><td>${h(row.backups)}</td><td>${h(row.finding)}</td></tr>`,
      );
    }
    out.push('</tbody></table>');
    for (const cluster of input.clusters) {
      const { health } = cluster;
      out.push(
        `<h2 id="cluster-${h(health.cluster)}">Cluster ${h(health.cluster)}</h2>`,
        `<p>Overall health: <strong class="${statusClass(health.status)}">${h(health.status)}</strong> (exit ${health.exitCode}).</p>`,
        ...clusterHtml(cluster, 'h3'),
      );
    }
  }
  out.push('</body>', '</html>', '');
  return out.join('\n');
}

function clusterHtml(input: ReportInput, heading: 'h2' | 'h3'): string[] {
  const { health } = input;
  const h = escapeXml;
  const rows = backupRows(input);
  return [
    `<${heading}>Health checks</${heading}>`,
    '<table><thead><tr><th>check</th><th>status</th><th>finding</th></tr></thead><tbody>',
    ...health.checks.map(
      (c) =>
        `<tr><td>${h(c.check)}</td><td class="${statusClass(c.status)}">${h(c.status)}</td><td>${h(c.message)}` +
        `${c.hint && c.status !== 'OK' && c.status !== 'SKIPPED' ? `<br><span class="hint">${h(c.hint)}</span>` : ''}</td></tr>`,
    ),
    '</tbody></table>',
    `<${heading}>Backups</${heading}>`,
    `<p>${input.catalog.complete.length} complete, ${input.catalog.incomplete.length} incomplete, ${input.catalog.invalid.length} invalid.</p>`,
    ...(rows.length === 0
      ? []
      : [
          '<table><thead><tr><th>backup</th><th>status</th><th>start</th><th>stop</th><th>duration</th><th>size</th><th>stored</th><th>timeline</th><th>retention</th></tr></thead><tbody>',
          ...rows.map((r) => `<tr>${[r.backupId, r.status, r.start, r.stop, r.duration, r.size, r.stored, r.timeline, r.retention].map((v) => `<td>${h(v)}</td>`).join('')}</tr>`),
          '</tbody></table>',
        ]),
    `<${heading}>Retention plan</${heading}>`,
    ...retentionSummary(input).map((line) => `<p>${h(line).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`),
    `<${heading}>Backup sizes and durations</${heading}>`,
    renderBackupChart(chartPoints(input.catalog)).trimEnd(),
  ];
}

/** Markdown table cells: a pipe would end the cell and a newline the row. */
function cell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function moment(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
