import type { CheckMeasurements, CheckResult, HealthReport } from './evaluate.js';
import { STATE_VALUE } from './evaluate.js';
import type { FleetHealthReport } from './fleet.js';

/**
 * `pgdr health --format prometheus`: the Prometheus text exposition format (version 0.0.4), for node_exporter's
 * textfile collector (`--textfile FILE` writes it atomically) or any scraper that runs the command.
 *
 * Metric names (every sample has the label cluster="<name>"; a sample is left out when its value is unknown). With
 * --all every cluster's samples are in one document, each metric family once (one HELP and TYPE line):
 *
 *   pgdr_health_status                         overall state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
 *   pgdr_check_status{check}                   state of one check, same values; SKIPPED checks have no sample
 *   pgdr_health_evaluated_timestamp_seconds    when the checks ran (Unix time)
 *   pgdr_repository_up                         1 when the repository answered, else 0
 *   pgdr_backup_age_seconds                    age of the newest complete base backup (from its stop time)
 *   pgdr_backup_last_completed_timestamp_seconds  stop time of the newest complete base backup
 *   pgdr_backup_last_size_bytes                size of the newest complete backup before compression
 *   pgdr_backup_last_stored_bytes              ... as stored
 *   pgdr_backup_last_duration_seconds          ... from start to stop
 *   pgdr_backups{status}                       backups by status: complete, incomplete, invalid
 *   pgdr_wal_archive_lag_segments              completed WAL segments the repository does not have yet
 *   pgdr_wal_archive_lag_seconds               how long the oldest of them has waited (0 when caught up)
 *   pgdr_wal_archiver_failed_count             pg_stat_archiver.failed_count (since the statistics reset)
 *   pgdr_etcd_snapshot_age_seconds             age of the newest etcd snapshot
 *   pgdr_etcd_snapshot_last_timestamp_seconds  when it was taken
 *   pgdr_drill_age_seconds                     age of the newest restore drill
 *   pgdr_drill_last_timestamp_seconds          when it ran
 *   pgdr_drill_last_passed                     1 when it passed, 0 when it failed
 *   pgdr_check_threshold_seconds{check,level}  the policy's warning/critical ages, for alert rules and dashboards
 *   pgdr_check_threshold_segments{check,level} the policy's WAL lag thresholds in segments
 */

interface Sample {
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  samples: Sample[];
}

export function renderPrometheus(report: HealthReport): string {
  const metrics = new Metrics();
  addReport(metrics, report);
  return metrics.render();
}

/**
 * `pgdr health --all --format prometheus`. When no cluster could be judged (the repository did not answer), the
 * overall state and pgdr_repository_up are given once without a cluster label, so an alert on them still fires.
 */
export function renderFleetPrometheus(fleet: FleetHealthReport): string {
  const metrics = new Metrics();
  if (fleet.problem) {
    metrics.add('pgdr_health_status', HELP.status, STATE_VALUE[fleet.status], {});
    metrics.add('pgdr_health_evaluated_timestamp_seconds', HELP.evaluated, fleet.evaluatedAt.getTime() / 1000, {});
    metrics.add('pgdr_repository_up', HELP.repositoryUp, 0, {});
  }
  for (const report of fleet.clusters) addReport(metrics, report);
  return metrics.render();
}

/**
 * `pgdr health` over several repositories (the config file's repositories:, none named): each repository's report,
 * every sample labelled with the repository's name beside the cluster.
 */
export function renderRepositoriesPrometheus(reports: readonly { name: string; report: HealthReport }[]): string {
  const metrics = new Metrics();
  for (const { name, report } of reports) addReport(metrics, report, { repository: name });
  return metrics.render();
}

const HELP = {
  status: 'Overall pgdr health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.',
  evaluated: 'When pgdr health evaluated the checks (Unix time).',
  repositoryUp: 'Whether the repository answered (1) or not (0).',
};

/** Metric families in order of first appearance, each with its samples from every cluster. */
class Metrics {
  private readonly families = new Map<string, Family>();

  add(name: string, help: string, value: number | undefined, labels: Record<string, string>): void {
    if (value === undefined || !Number.isFinite(value)) return;
    let family = this.families.get(name);
    if (!family) {
      family = { name, help, samples: [] };
      this.families.set(name, family);
    }
    family.samples.push({ labels, value });
  }

  render(): string {
    const lines: string[] = [];
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
      lines.push(`# TYPE ${family.name} gauge`);
      for (const sample of family.samples) lines.push(`${family.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

function addReport(metrics: Metrics, report: HealthReport, extra: Record<string, string> = {}): void {
  const cluster = report.cluster;
  const add = (name: string, help: string, value: number | undefined, labels: Record<string, string> = {}): void =>
    metrics.add(name, help, value, { cluster, ...extra, ...labels });

  add('pgdr_health_status', HELP.status, STATE_VALUE[report.status]);
  for (const check of report.checks) {
    if (check.status === 'SKIPPED') continue;
    add('pgdr_check_status', 'State of one pgdr health check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.', STATE_VALUE[check.status], {
      check: check.check,
    });
  }
  add('pgdr_health_evaluated_timestamp_seconds', HELP.evaluated, report.evaluatedAt.getTime() / 1000);

  const byName = new Map(report.checks.map((c) => [c.check, c] as const));
  const repo = byName.get('repository');
  if (repo && repo.status !== 'SKIPPED') add('pgdr_repository_up', HELP.repositoryUp, repo.status === 'OK' ? 1 : 0);
  const backup = measured(byName.get('backup-age'));
  if (backup) {
    add('pgdr_backup_age_seconds', 'Age of the newest complete base backup, from its stop time.', backup.ageSeconds);
    add('pgdr_backup_last_completed_timestamp_seconds', 'Stop time of the newest complete base backup (Unix time).', backup.lastTimestampSeconds);
    add('pgdr_backup_last_size_bytes', 'Size of the newest complete base backup before compression.', backup.backupBytes);
    add('pgdr_backup_last_stored_bytes', 'Size of the newest complete base backup as stored.', backup.backupStoredBytes);
    add('pgdr_backup_last_duration_seconds', 'Duration of the newest complete base backup.', backup.backupDurationSeconds);
    const help = 'Base backups in the repository by status.';
    add('pgdr_backups', help, backup.completeBackups, { status: 'complete' });
    add('pgdr_backups', help, backup.incompleteBackups, { status: 'incomplete' });
    add('pgdr_backups', help, backup.invalidBackups, { status: 'invalid' });
  }
  const wal = measured(byName.get('wal-archive'));
  if (wal) {
    add('pgdr_wal_archive_lag_segments', 'Completed WAL segments not yet in the repository.', wal.lagSegments);
    add('pgdr_wal_archive_lag_seconds', 'How long the oldest WAL segment not yet in the repository has waited.', wal.lagSeconds);
    add('pgdr_wal_archiver_failed_count', 'pg_stat_archiver.failed_count of the server.', wal.archiverFailedCount);
  }
  const etcd = measured(byName.get('etcd-snapshot'));
  if (etcd) {
    add('pgdr_etcd_snapshot_age_seconds', 'Age of the newest etcd snapshot.', etcd.ageSeconds);
    add('pgdr_etcd_snapshot_last_timestamp_seconds', 'When the newest etcd snapshot was taken (Unix time).', etcd.lastTimestampSeconds);
  }
  const drill = measured(byName.get('drill'));
  if (drill) {
    add('pgdr_drill_age_seconds', 'Age of the newest restore drill.', drill.ageSeconds);
    add('pgdr_drill_last_timestamp_seconds', 'When the newest restore drill ran (Unix time).', drill.lastTimestampSeconds);
    add('pgdr_drill_last_passed', 'Whether the newest restore drill passed (1) or failed (0).', drill.drillPassed);
  }
  for (const check of report.checks) {
    if (check.status === 'SKIPPED') continue;
    const m = check.measurements;
    const help = 'Age thresholds of a pgdr health check from the policy.';
    add('pgdr_check_threshold_seconds', help, m.warningSeconds, { check: check.check, level: 'warning' });
    add('pgdr_check_threshold_seconds', help, m.criticalSeconds, { check: check.check, level: 'critical' });
    const segHelp = 'WAL archive lag thresholds in segments from the policy.';
    add('pgdr_check_threshold_segments', segHelp, m.warningSegments, { check: check.check, level: 'warning' });
    add('pgdr_check_threshold_segments', segHelp, m.criticalSegments, { check: check.check, level: 'critical' });
  }
}

function measured(check: CheckResult | undefined): CheckMeasurements | undefined {
  if (check === undefined || check.status === 'SKIPPED') return undefined;
  return check.measurements;
}

function formatLabels(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Label values escape backslash, double quote and newline (exposition format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isInteger(value)) return String(value);
  // Milliseconds are the finest unit any input has; more digits would be noise.
  return String(Math.round(value * 1000) / 1000);
}
