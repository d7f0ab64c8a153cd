import type { Policy } from '../config/policy.js';
import { formatDuration } from '../config/policy.js';
import type { BackupCatalog } from '../repo/catalog.js';
import type { RetentionPlan } from '../retention/plan.js';
import { formatBytes } from '../stream/progress.js';
import { escapeXml, formatSeconds, renderBackupChart, type BackupChartPoint } from './chart.js';
import type { HealthReport } from './evaluate.js';

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
    '## Health checks',
    '',
    '| check | status | finding |',
    '|---|---|---|',
    ...health.checks.map((c) => `| ${cell(c.check)} | ${cell(c.status)} | ${cell(c.message + (c.hint && c.status !== 'OK' && c.status !== 'SKIPPED' ? ` (${c.hint})` : ''))} |`),
    '',
    '## Backups',
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
  out.push('## Retention plan', '', ...retentionSummary(input), '', '## Backup sizes and durations', '', `![Backup sizes and durations over time](${chartFile})`, '');
  return out.join('\n');
}

export function renderReportHtml(input: ReportInput): string {
  const { health } = input;
  const h = escapeXml;
  const rows = backupRows(input);
  const statusClass = (s: string): string => `s-${s.toLowerCase()}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>pgdr report: cluster ${h(health.cluster)}</title>`,
    '<style>',
    'body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}',
    'table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}',
    'th{background:#f4f4f4}.s-ok{color:#1a7f37}.s-warning{color:#9a6700}.s-critical{color:#cf222e;font-weight:bold}',
    '.s-unknown{color:#8250df}.s-skipped{color:#777}.hint{color:#555;font-size:90%}',
    '</style>',
    '</head>',
    '<body>',
    `<h1>pgdr report: cluster ${h(health.cluster)}</h1>`,
    `<p>Generated ${h(moment(input.generatedAt))} from ${h(health.repository ?? '(repository unreachable)')}. ` +
      `Overall health: <strong class="${statusClass(health.status)}">${h(health.status)}</strong> (exit ${health.exitCode}).</p>`,
    '<h2>Health checks</h2>',
    '<table><thead><tr><th>check</th><th>status</th><th>finding</th></tr></thead><tbody>',
    ...health.checks.map(
      (c) =>
        `<tr><td>${h(c.check)}</td><td class="${statusClass(c.status)}">${h(c.status)}</td><td>${h(c.message)}` +
        `${c.hint && c.status !== 'OK' && c.status !== 'SKIPPED' ? `<br><span class="hint">${h(c.hint)}</span>` : ''}</td></tr>`,
    ),
    '</tbody></table>',
    '<h2>Backups</h2>',
    `<p>${input.catalog.complete.length} complete, ${input.catalog.incomplete.length} incomplete, ${input.catalog.invalid.length} invalid.</p>`,
    ...(rows.length === 0
      ? []
      : [
          '<table><thead><tr><th>backup</th><th>status</th><th>start</th><th>stop</th><th>duration</th><th>size</th><th>stored</th><th>timeline</th><th>retention</th></tr></thead><tbody>',
          ...rows.map((r) => `<tr>${[r.backupId, r.status, r.start, r.stop, r.duration, r.size, r.stored, r.timeline, r.retention].map((v) => `<td>${h(v)}</td>`).join('')}</tr>`),
          '</tbody></table>',
        ]),
    '<h2>Retention plan</h2>',
    ...retentionSummary(input).map((line) => `<p>${h(line).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`),
    '<h2>Backup sizes and durations</h2>',
    renderBackupChart(chartPoints(input.catalog)).trimEnd(),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Markdown table cells: a pipe would end the cell and a newline the row. */
function cell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function moment(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
