import { describe, expect, it } from 'vitest';
import { defaultPolicy } from '../../../src/config/policy.js';
import { escapeXml, niceMax, renderBackupChart } from '../../../src/health/chart.js';
import { evaluateHealth } from '../../../src/health/evaluate.js';
import { known, notConfigured } from '../../../src/health/facts.js';
import { backupFacts } from '../../../src/health/gather.js';
import { chartPoints, renderReportHtml, renderReportMarkdown, type ReportInput } from '../../../src/health/report.js';
import type { BackupCatalog } from '../../../src/repo/catalog.js';
import type { BackupManifest } from '../../../src/repo/manifest.js';
import { planRetention } from '../../../src/retention/plan.js';

const NOW = new Date('2024-05-10T12:00:00Z');

function manifest(startIso: string, minutes: number, bytes: number): BackupManifest {
  const start = new Date(startIso);
  const stop = new Date(start.getTime() + minutes * 60_000);
  return {
    format: 1,
    backupId: start.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z'),
    cluster: 'main',
    type: 'full',
    startTime: start.toISOString(),
    stopTime: stop.toISOString(),
    startLsn: '0/2000028',
    stopLsn: '0/2000100',
    timeline: 1,
    startWal: '000000010000000000000002',
    stopWal: '000000010000000000000002',
    systemIdentifier: '7300000000000000000',
    pgVersion: '15.8',
    pgVersionNum: 150008,
    source: '127.0.0.1:5432',
    compression: { algorithm: 'zstd', level: 3 },
    bytes,
    storedBytes: Math.round(bytes / 4),
    objects: [{ name: 'base.tar.zst', bytes, storedBytes: Math.round(bytes / 4), sha256: '0'.repeat(64), encoding: 'tar+zstd' }],
    pgdrVersion: '0.1.0',
  };
}

function input(): ReportInput {
  // Forty nightly backups: the default policy (7 daily, 4 weekly, 12 monthly, 30 d window) keeps some, deletes some.
  const complete = Array.from({ length: 40 }, (_, i) => manifest(new Date(Date.UTC(2024, 3, 1 + i, 2)).toISOString(), 5 + (i % 7), 100_000_000 + i * 1_000_000));
  const catalog: BackupCatalog = {
    complete,
    incomplete: [{ backupId: '20240510T020000Z', objectCount: 1, storedBytes: 4096, lastModified: NOW }],
    invalid: [{ backupId: '20240301T020000Z', problem: 'manifest of backup 20240301T020000Z is not valid JSON | truncated' }],
  };
  const policy = defaultPolicy();
  const facts = {
    cluster: 'main',
    repository: known({ location: 'file:///var/lib/pgdr' }),
    backups: known(backupFacts(catalog)),
    wal: notConfigured<never>('no PostgreSQL configured'),
    etcd: notConfigured<never>('no etcd'),
    drill: known({ last: { drillId: '20240501T060000Z', at: new Date('2024-05-01T06:30:00Z'), passed: true } }),
  };
  return {
    generatedAt: NOW,
    health: evaluateHealth(facts, policy.health, NOW),
    catalog,
    retention: { plan: planRetention(catalog.complete, policy, NOW), policy },
  };
}

describe('renderReportMarkdown', () => {
  const md = renderReportMarkdown(input(), 'chart.svg');

  it('has the health checks, the backup list with retention verdicts, the plan and the chart', () => {
    expect(md).toMatch(/^# pgdr report: cluster main\n/);
    expect(md).toContain('Overall health: **WARNING** (exit 1).');
    expect(md).toContain('| backup-age | WARNING |');
    expect(md).toContain('| wal-archive | SKIPPED | no PostgreSQL configured |');
    expect(md).toContain('40 complete, 1 incomplete, 1 invalid.');
    expect(md).toMatch(/\| 20240509T020000Z \| complete \| 2024-05-09 02:00:00 UTC \| 2024-05-09 02:\d\d:00 UTC \| \d+ min \| [\d.]+ MiB \| [\d.]+ MiB \| 1 \| keep \(daily 2024-05-09\) \|/);
    expect(md).toMatch(/\| 20240402T020000Z \| complete \|.*\| delete \|/);
    expect(md).toContain('| 20240510T020000Z | incomplete |');
    expect(md).toContain('Policy: keep the newest 7 daily, 4 weekly, 12 monthly and 0 yearly backups; PITR window 30d');
    expect(md).toMatch(/`pgdr expire` would keep \d+ and delete \d+ backup\(s\): 20240401T020000Z/);
    expect(md).toContain('![Backup sizes and durations over time](chart.svg)');
  });

  it('escapes pipes inside table cells', () => {
    expect(md).toContain('is not valid JSON \\| truncated');
  });

  it('says why there is no retention plan when it could not be made', () => {
    const broken: ReportInput = { ...input(), retention: { error: 'the repository lists backup X twice' } };
    expect(renderReportMarkdown(broken, 'chart.svg')).toContain('The retention plan could not be made: the repository lists backup X twice');
  });
});

describe('renderReportHtml', () => {
  it('is one self-contained page with the chart inline and every text escaped', () => {
    const base = input();
    const html = renderReportHtml({ ...base, health: { ...base.health, cluster: 'a<b>&"c' } });
    expect(html).toMatch(/^<!DOCTYPE html>\n<html lang="en">/);
    expect(html).toContain('<title>pgdr report: cluster a&lt;b&gt;&amp;&quot;c</title>');
    expect(html).not.toContain('a<b>');
    expect(html).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(html).toContain('<td class="s-warning">WARNING</td>');
    expect(html).toContain('<code>pgdr expire</code>');
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
  });
});

describe('renderBackupChart', () => {
  it('draws one point per backup and series, with dates on the time axis', () => {
    const svg = renderBackupChart(chartPoints(input().catalog));
    expect(svg.startsWith('<svg ')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<circle /g)).toHaveLength(3 * 40);
    expect(svg.match(/<path /g)).toHaveLength(3);
    expect(svg).toContain('>2024-04-01<');
    expect(svg).toContain('>2024-05-10<');
    expect(svg).toContain('<title>20240401T020000Z: 95.4 MiB before compression</title>');
    expect(svg).not.toMatch(/NaN|Infinity/);
  });

  it('copes with one backup and with none', () => {
    const one = renderBackupChart([{ backupId: 'x', startTime: NOW, bytes: 0, storedBytes: 0, durationSeconds: 0 }]);
    expect(one).not.toMatch(/NaN|Infinity/);
    expect(one.match(/<circle /g)).toHaveLength(3);
    expect(renderBackupChart([])).toContain('no complete backups to chart');
  });

  it('rounds axis maxima and escapes XML', () => {
    expect([niceMax(0), niceMax(0.3), niceMax(7), niceMax(130), niceMax(1000)]).toEqual([1, 0.5, 10, 200, 1000]);
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});
