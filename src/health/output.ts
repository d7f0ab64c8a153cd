import type { CheckResult, HealthReport } from './evaluate.js';
import { describeFleetStates, type FleetHealthReport } from './fleet.js';

/**
 * Human and JSON forms of a health report. The text form is a Nagios plugin's: the first line is the status line
 * with performance data after '|', the following lines one per check (the "long output").
 */

export function renderHealthText(report: HealthReport): string {
  const perf = perfData(report.checks);
  const lines = [`PGDR ${report.status} - ${summaryOf(report)}${perf ? ` | ${perf}` : ''}`, ...checkLines(report)];
  return `${lines.join('\n')}\n`;
}

/**
 * `pgdr health --all`: a status line for the whole repository, then each cluster's status and checks, grouped.
 * Performance data is left out: Nagios reads it from the first line, and one line cannot carry every cluster's.
 */
export function renderFleetHealthText(fleet: FleetHealthReport): string {
  if (fleet.problem) return `PGDR ${fleet.status} - ${fleet.problem.message}\n${''.padEnd(8)}  hint: ${fleet.problem.hint}\n`;
  const lines = [`PGDR ${fleet.status} - ${fleet.clusters.length} cluster(s) in ${fleet.repository}: ${describeFleetStates(fleet)}`];
  for (const report of fleet.clusters) {
    lines.push('', `cluster ${report.cluster}: ${report.status} - ${summaryOf(report)}`, ...checkLines(report));
  }
  return `${lines.join('\n')}\n`;
}

/** The first failing check (the worst first), or how many passed. */
function summaryOf(report: HealthReport): string {
  const counted = report.checks.filter((c) => c.status !== 'SKIPPED');
  const bad = counted.filter((c) => c.status !== 'OK');
  const skipped = report.checks.length - counted.length;
  const first = bad.find((c) => c.status === report.status) ?? bad[0];
  return first === undefined
    ? `${counted.length} check(s) OK${skipped > 0 ? `, ${skipped} skipped` : ''}`
    : `${first.check}: ${first.message}${bad.length > 1 ? ` (and ${bad.length - 1} more)` : ''}`;
}

function checkLines(report: HealthReport): string[] {
  const lines: string[] = [];
  for (const check of report.checks) {
    lines.push(`${check.status.padEnd(8)}  ${check.check.padEnd(13)}  ${check.message}`);
    if (check.hint && check.status !== 'OK' && check.status !== 'SKIPPED') lines.push(`${''.padEnd(8)}  ${''.padEnd(13)}  hint: ${check.hint}`);
  }
  return lines;
}

/** Nagios performance data: 'label'=value[UOM];warn;crit;min;max, one item per measured age or lag. */
function perfData(checks: readonly CheckResult[]): string {
  const items: string[] = [];
  for (const check of checks) {
    if (check.status === 'SKIPPED') continue;
    const m = check.measurements;
    const label = check.check.replace(/-/g, '_');
    if (check.check === 'wal-archive') {
      if (m.lagSegments !== undefined) items.push(`wal_lag_segments=${m.lagSegments};${m.warningSegments ?? ''};${m.criticalSegments ?? ''};0`);
      if (m.lagSeconds !== undefined) items.push(`wal_lag=${round(m.lagSeconds)}s;${m.warningSeconds ?? ''};${m.criticalSeconds ?? ''};0`);
      continue;
    }
    if (m.ageSeconds !== undefined) items.push(`${label === 'backup_age' ? 'backup' : label}_age=${round(m.ageSeconds)}s;${m.warningSeconds ?? ''};${m.criticalSeconds ?? ''};0`);
  }
  return items.join(' ');
}

function round(n: number): number {
  return Math.round(n);
}

/** The --json document: the report with dates as ISO text and each check's measurements beside its state. */
export function healthJson(report: HealthReport): unknown {
  return {
    status: report.status,
    exitCode: report.exitCode,
    cluster: report.cluster,
    repository: report.repository,
    evaluatedAt: report.evaluatedAt.toISOString(),
    checks: report.checks.map((c) => ({
      check: c.check,
      status: c.status,
      message: c.message,
      ...(c.hint === undefined ? {} : { hint: c.hint }),
      ...c.measurements,
    })),
  };
}

/** The --all --json document: the combined state, then each cluster's report as `pgdr health --json` prints it. */
export function fleetHealthJson(fleet: FleetHealthReport): unknown {
  return {
    status: fleet.status,
    exitCode: fleet.exitCode,
    repository: fleet.repository,
    evaluatedAt: fleet.evaluatedAt.toISOString(),
    ...(fleet.problem === undefined ? {} : { problem: fleet.problem }),
    clusters: fleet.clusters.map((report) => healthJson(report)),
  };
}

/** Several repositories (the config file's repositories:): the worst state first, then each repository's checks. */
export function renderRepositoriesHealthText(status: string, reports: readonly { name: string; report: HealthReport }[]): string {
  const lines = [`PGDR ${status} - ${reports.length} repositories: ${reports.map(({ name, report }) => `${name} ${report.status}`).join(', ')}`];
  for (const { name, report } of reports) {
    lines.push('', `repository ${name} (${report.repository ?? 'not opened'}): ${report.status} - ${summaryOf(report)}`, ...checkLines(report));
  }
  return `${lines.join('\n')}\n`;
}

/** The --json document over several repositories: the combined state, then each as `pgdr health --repo NAME --json` prints it. */
export function repositoriesHealthJson(status: string, exitCode: number, reports: readonly { name: string; report: HealthReport }[]): unknown {
  return { status, exitCode, repositories: reports.map(({ name, report }) => ({ name, ...(healthJson(report) as object) })) };
}
