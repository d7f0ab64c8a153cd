import { describe, expect, it } from 'vitest';
import { defaultPolicy } from '../../../src/config/policy.js';
import { evaluateHealth, type HealthReport } from '../../../src/health/evaluate.js';
import { known, notConfigured, type HealthFacts } from '../../../src/health/facts.js';
import { healthJson, renderHealthText } from '../../../src/health/output.js';
import { escapeLabelValue, renderPrometheus } from '../../../src/health/prometheus.js';
import { parseExposition, sampleValue } from './exposition-parser.js';

const H = 3_600_000;
const NOW = new Date('2024-05-10T12:00:00Z');
const ago = (ms: number): Date => new Date(NOW.getTime() - ms);

function facts(backupAgeMs: number, cluster = 'main'): HealthFacts {
  return {
    cluster,
    repository: known({ location: 's3://bucket/pgdr' }),
    backups: known({
      newest: { backupId: '20240509T020000Z', startTime: ago(backupAgeMs + 90_000), stopTime: ago(backupAgeMs), bytes: 5_000_000, storedBytes: 1_250_000 },
      oldestStart: ago(10 * 24 * H),
      completeCount: 3,
      incompleteCount: 1,
      invalidIds: [],
      unrestorableIds: [],
    }),
    wal: notConfigured('no PostgreSQL configured (--pg-host/PGHOST or --patroni/PGDR_PATRONI)'),
    etcd: known({ newest: { snapshotId: '20240510T000000Z', takenAt: ago(12 * H) } }),
    drill: known({ last: { drillId: '20240501T070000Z', at: ago(9 * 24 * H), passed: true } }),
  };
}

const report = (backupAgeMs: number, cluster?: string): HealthReport => evaluateHealth(facts(backupAgeMs, cluster), defaultPolicy().health, NOW);

describe('renderPrometheus', () => {
  it('parses as the text exposition format, with the documented metric names', () => {
    const text = renderPrometheus(report(30 * H));
    const families = parseExposition(text);
    for (const family of families.values()) {
      expect(family.type).toBe('gauge');
      expect(family.help).toBeTruthy();
      expect(family.name).toMatch(/^pgdr_/);
    }
    expect(sampleValue(families, 'pgdr_health_status', { cluster: 'main' })).toBe(1);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'backup-age' })).toBe(1);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'repository' })).toBe(0);
    expect(sampleValue(families, 'pgdr_check_status', { check: 'wal-archive' })).toBeUndefined(); // SKIPPED
    expect(sampleValue(families, 'pgdr_backup_age_seconds')).toBe(30 * 3600);
    expect(sampleValue(families, 'pgdr_backup_last_completed_timestamp_seconds')).toBe(ago(30 * H).getTime() / 1000);
    expect(sampleValue(families, 'pgdr_backup_last_duration_seconds')).toBe(90);
    expect(sampleValue(families, 'pgdr_backup_last_size_bytes')).toBe(5_000_000);
    expect(sampleValue(families, 'pgdr_backups', { status: 'incomplete' })).toBe(1);
    expect(sampleValue(families, 'pgdr_repository_up')).toBe(1);
    expect(sampleValue(families, 'pgdr_etcd_snapshot_age_seconds')).toBe(12 * 3600);
    expect(sampleValue(families, 'pgdr_drill_last_passed')).toBe(1);
    expect(sampleValue(families, 'pgdr_drill_age_seconds')).toBe(9 * 24 * 3600);
    expect(sampleValue(families, 'pgdr_check_threshold_seconds', { check: 'backup-age', level: 'critical' })).toBe(48 * 3600);
    expect(sampleValue(families, 'pgdr_health_evaluated_timestamp_seconds')).toBe(NOW.getTime() / 1000);
    expect(families.has('pgdr_wal_archive_lag_segments')).toBe(false);
  });

  it('gives OK 0, WARNING 1, CRITICAL 2 as pgdr_health_status', () => {
    for (const [age, value] of [
      [H, 0],
      [27 * H, 1],
      [49 * H, 2],
    ] as const) {
      expect(sampleValue(parseExposition(renderPrometheus(report(age))), 'pgdr_health_status')).toBe(value);
    }
  });

  it('escapes label values', () => {
    expect(escapeLabelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    // Cluster names cannot hold these characters, but the output must stay parseable whatever a label holds.
    const families = parseExposition(renderPrometheus(report(H, 'we"ird\\name')));
    expect(families.get('pgdr_health_status')?.samples[0]?.labels.cluster).toBe('we"ird\\name');
  });
});

describe('the exposition parser used above', () => {
  it('rejects what Prometheus rejects', () => {
    expect(() => parseExposition('metric 1')).toThrow(/newline/);
    expect(() => parseExposition('1bad 1\n')).toThrow(/metric name/);
    expect(() => parseExposition('m{a="x} 1\n')).toThrow(/unterminated/);
    expect(() => parseExposition('m{a=x} 1\n')).toThrow(/quoted/);
    expect(() => parseExposition('m one\n')).toThrow(/bad value/);
    expect(() => parseExposition('m 1\nm 2\n')).toThrow(/duplicate/);
    expect(() => parseExposition('a 1\nb 1\na{x="1"} 1\n')).toThrow(/two places/);
    expect(() => parseExposition('m 1\n# TYPE m gauge\n')).toThrow(/TYPE after samples/);
  });
});

describe('renderHealthText', () => {
  it('starts with a Nagios status line and performance data, then one line per check', () => {
    const text = renderHealthText(report(27 * H));
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe(
      'PGDR WARNING - backup-age: newest complete backup 20240509T020000Z finished 27 h ago (warning past 26 h) | ' +
        'backup_age=97200s;93600;172800;0 etcd_snapshot_age=43200s;93600;172800;0 drill_age=777600s;2764800;3024000;0',
    );
    expect(lines).toContain('WARNING   backup-age     newest complete backup 20240509T020000Z finished 27 h ago (warning past 26 h)');
    expect(lines.some((l) => l.startsWith('SKIPPED   wal-archive    no PostgreSQL configured'))).toBe(true);
    expect(lines.some((l) => /^\s+hint: check why backups stopped/.test(l))).toBe(true);
  });

  it('summarises an all-OK run', () => {
    expect(renderHealthText(report(H)).split('\n')[0]).toMatch(/^PGDR OK - 4 check\(s\) OK, 1 skipped \| backup_age=3600s/);
  });
});

describe('healthJson', () => {
  it('has the state, exit code and each check with its measurements', () => {
    const json = healthJson(report(49 * H)) as { status: string; exitCode: number; evaluatedAt: string; checks: Array<Record<string, unknown>> };
    expect(json.status).toBe('CRITICAL');
    expect(json.exitCode).toBe(2);
    expect(json.evaluatedAt).toBe(NOW.toISOString());
    expect(json.checks.find((c) => c.check === 'backup-age')).toMatchObject({ status: 'CRITICAL', ageSeconds: 49 * 3600, criticalSeconds: 48 * 3600 });
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
  });
});
