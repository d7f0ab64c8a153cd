import { describe, expect, it } from 'vitest';
import { defaultPolicy } from '../../../src/config/policy.js';
import { evaluateHealth, type HealthReport } from '../../../src/health/evaluate.js';
import { known, notConfigured, type HealthFacts } from '../../../src/health/facts.js';
import { describeFleetStates, fleetFailure, fleetHealth } from '../../../src/health/fleet.js';
import { fleetHealthJson, renderFleetHealthText } from '../../../src/health/output.js';
import { renderFleetPrometheus } from '../../../src/health/prometheus.js';
import { renderFleetReportHtml, renderFleetReportMarkdown, type ReportInput } from '../../../src/health/report.js';
import { parseExposition, sampleValue } from './exposition-parser.js';

const H = 3_600_000;
const NOW = new Date('2024-05-10T12:00:00Z');
const ago = (ms: number): Date => new Date(NOW.getTime() - ms);
const REPO = 's3://fleet/pgdr';

/** A cluster whose newest backup is `backupAgeMs` old (none when null); everything else fresh. */
function cluster(name: string, backupAgeMs: number | null): HealthReport {
  const facts: HealthFacts = {
    cluster: name,
    repository: known({ location: REPO }),
    backups: known({
      newest: backupAgeMs === null ? null : { backupId: '20240509T020000Z', startTime: ago(backupAgeMs + 60_000), stopTime: ago(backupAgeMs), bytes: 1000, storedBytes: 400 },
      oldestStart: backupAgeMs === null ? null : ago(3 * 24 * H),
      completeCount: backupAgeMs === null ? 0 : 1,
      incompleteCount: 0,
      invalidIds: [],
      unrestorableIds: [],
    }),
    wal: notConfigured('with --all only the repository is read'),
    etcd: notConfigured('no etcd'),
    drill: known({ last: { drillId: '20240505T070000Z', at: ago(5 * 24 * H), passed: true } }),
  };
  return evaluateHealth(facts, defaultPolicy().health, NOW);
}

describe('fleetHealth', () => {
  it('orders clusters by name and takes the worst state for the exit code', () => {
    const fleet = fleetHealth(REPO, NOW, [cluster('gamma', null), cluster('alpha', H), cluster('beta', 30 * H)]);
    expect(fleet.clusters.map((c) => [c.cluster, c.status])).toEqual([
      ['alpha', 'OK'],
      ['beta', 'WARNING'],
      ['gamma', 'CRITICAL'],
    ]);
    expect({ status: fleet.status, exitCode: fleet.exitCode }).toEqual({ status: 'CRITICAL', exitCode: 2 });
    expect(describeFleetStates(fleet)).toBe('1 CRITICAL (gamma), 1 WARNING (beta), 1 OK');
    expect(fleetHealth(REPO, NOW, [cluster('a', H), cluster('b', H)]).exitCode).toBe(0);
  });

  it('is CRITICAL when the repository holds no cluster, or could not be listed', () => {
    const empty = fleetHealth(REPO, NOW, []);
    expect(empty).toMatchObject({ status: 'CRITICAL', exitCode: 2, clusters: [], problem: { message: `no cluster in repository ${REPO}` } });
    const down = fleetFailure(REPO, NOW, { message: 'repository unreachable: connection refused', hint: 'check --repo' });
    expect(renderFleetHealthText(down)).toBe('PGDR CRITICAL - repository unreachable: connection refused\n          hint: check --repo\n');
  });
});

describe('fleet output', () => {
  const fleet = fleetHealth(REPO, NOW, [cluster('alpha', H), cluster('beta', 30 * H), cluster('gamma', null)]);

  it('prints one status line for the repository, then each cluster with its checks', () => {
    const lines = renderFleetHealthText(fleet).trimEnd().split('\n');
    expect(lines[0]).toBe(`PGDR CRITICAL - 3 cluster(s) in ${REPO}: 1 CRITICAL (gamma), 1 WARNING (beta), 1 OK`);
    expect(lines.filter((l) => l.startsWith('cluster '))).toEqual([
      'cluster alpha: OK - 3 check(s) OK, 2 skipped',
      'cluster beta: WARNING - backup-age: newest complete backup 20240509T020000Z finished 30 h ago (warning past 26 h)',
      'cluster gamma: CRITICAL - backup-age: no complete base backup in the repository',
    ]);
    const beta = lines.indexOf('cluster beta: WARNING - backup-age: newest complete backup 20240509T020000Z finished 30 h ago (warning past 26 h)');
    expect(lines.slice(beta + 1, beta + 3)).toEqual([
      'OK        repository     repository s3://fleet/pgdr is reachable',
      'WARNING   backup-age     newest complete backup 20240509T020000Z finished 30 h ago (warning past 26 h)',
    ]);
  });

  it('gives JSON with the combined state and each cluster as `pgdr health --json` prints it', () => {
    const json = fleetHealthJson(fleet) as { status: string; exitCode: number; clusters: { cluster: string; status: string; checks: unknown[] }[] };
    expect(json).toMatchObject({ status: 'CRITICAL', exitCode: 2, repository: REPO, evaluatedAt: NOW.toISOString() });
    expect(json.clusters.map((c) => [c.cluster, c.status, c.checks.length])).toEqual([
      ['alpha', 'OK', 5],
      ['beta', 'WARNING', 5],
      ['gamma', 'CRITICAL', 5],
    ]);
  });

  it('labels every sample with its cluster, each metric family once', () => {
    const text = renderFleetPrometheus(fleet);
    // The strict parser refuses a family that appears twice or a repeated series.
    const families = parseExposition(text);
    expect(text.match(/^# HELP pgdr_health_status /gm)).toHaveLength(1);
    for (const family of families.values()) for (const sample of family.samples) expect(Object.keys(sample.labels)).toContain('cluster');
    expect(sampleValue(families, 'pgdr_health_status', { cluster: 'alpha' })).toBe(0);
    expect(sampleValue(families, 'pgdr_health_status', { cluster: 'beta' })).toBe(1);
    expect(sampleValue(families, 'pgdr_health_status', { cluster: 'gamma' })).toBe(2);
    expect(sampleValue(families, 'pgdr_backup_age_seconds', { cluster: 'beta' })).toBe(30 * 3600);
    expect(sampleValue(families, 'pgdr_backup_age_seconds', { cluster: 'gamma' })).toBeUndefined();
    expect(sampleValue(families, 'pgdr_check_status', { cluster: 'gamma', check: 'backup-age' })).toBe(2);

    const down = parseExposition(renderFleetPrometheus(fleetFailure(REPO, NOW, { message: 'repository unreachable', hint: 'check --repo' })));
    expect(down.get('pgdr_repository_up')?.samples).toEqual([{ name: 'pgdr_repository_up', labels: {}, value: 0 }]);
    expect(sampleValue(down, 'pgdr_health_status')).toBe(2);
  });

  it('writes one report page with a line per cluster and a section for each', () => {
    const inputs: ReportInput[] = fleet.clusters.map((health) => ({
      generatedAt: NOW,
      health,
      catalog: { complete: [], incomplete: [], invalid: [] },
      retention: { error: 'no policy in this test' },
    }));
    const md = renderFleetReportMarkdown({ generatedAt: NOW, fleet, clusters: inputs }, (c) => `chart-${c}.svg`);
    expect(md).toMatch(new RegExp(`^# pgdr report: 3 cluster\\(s\\) in ${REPO.replace(/\//g, '\\/')}\\n`));
    expect(md).toContain('Overall health: **CRITICAL** (exit 2): 1 CRITICAL (gamma), 1 WARNING (beta), 1 OK.');
    expect(md).toContain('| gamma | CRITICAL | - | 0 complete, 0 incomplete, 0 invalid | backup-age: no complete base backup in the repository |');
    expect(md.match(/^## Cluster \w+$/gm)).toEqual(['## Cluster alpha', '## Cluster beta', '## Cluster gamma']);
    expect(md.match(/^### Health checks$/gm)).toHaveLength(3);
    expect(md).toContain('![Backup sizes and durations over time](chart-beta.svg)');
    const html = renderFleetReportHtml({ generatedAt: NOW, fleet, clusters: inputs });
    expect(html.match(/<h2 id="cluster-\w+">/g)).toEqual(['<h2 id="cluster-alpha">', '<h2 id="cluster-beta">', '<h2 id="cluster-gamma">']);
    expect(html.match(/<svg /g)).toHaveLength(3);
    expect(html).toContain('<strong class="s-critical">CRITICAL</strong>');
  });
});
