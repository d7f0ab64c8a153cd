import { parseScheduleSection } from '../../../src/schedule/config.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultPolicy, formatDuration, loadPolicy, parseDuration, parsePolicy, tryParseDuration } from '../../../src/config/policy.js';
import { UsageError } from '../../../src/errors.js';

const H = 3_600_000;
const D = 24 * H;
const defaultYaml = fileURLToPath(new URL('../../../policies/default.yaml', import.meta.url));

function problem(yaml: string): string {
  try {
    parsePolicy(yaml, 'p.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).hint).toMatch(/policies\/README.md/);
    return (err as Error).message;
  }
  throw new Error(`policy was accepted:\n${yaml}`);
}

describe('durations', () => {
  it('reads whole numbers with s, m, h, d, w and sums of them', () => {
    expect(tryParseDuration('26h')).toBe(26 * H);
    expect(tryParseDuration('30d')).toBe(30 * D);
    expect(tryParseDuration('35d')).toBe(35 * D);
    expect(tryParseDuration('90m')).toBe(90 * 60_000);
    expect(tryParseDuration('45s')).toBe(45_000);
    expect(tryParseDuration('2w')).toBe(14 * D);
    expect(tryParseDuration('1d12h')).toBe(36 * H);
    expect(tryParseDuration('0h')).toBe(0);
  });

  it('rejects junk', () => {
    for (const junk of ['', '26', 'h', '-1h', '1.5h', '26hours', '3 days', ' 1h', '1h ', '1H', '1y', '1M', '1d-2h', '999999999999w']) {
      expect(tryParseDuration(junk), junk).toBeUndefined();
    }
    expect(() => parseDuration('soon', '--window')).toThrow(/--window "soon" is not a duration/);
  });

  it('formats milliseconds back into the shortest exact text', () => {
    expect(formatDuration(26 * H)).toBe('1d2h');
    expect(formatDuration(30 * D)).toBe('30d');
    expect(formatDuration(90 * 60_000 + 5_000)).toBe('1h30m5s');
    expect(formatDuration(0)).toBe('0s');
    expect(tryParseDuration(formatDuration(1234 * 60_000))).toBe(1234 * 60_000);
  });
});

describe('policy file', () => {
  it('gives the documented defaults without a file and for an empty one', () => {
    const policy = loadPolicy();
    expect(policy.retention).toEqual({
      backups: { daily: 7, weekly: 4, monthly: 12, yearly: 0 },
      pitrWindow: 30 * D,
      garbageGrace: 24 * H,
      etcdSnapshots: { daily: 7, weekly: 4, monthly: 12, yearly: 0 },
    });
    expect(policy.health.backupAge).toEqual({ warning: 26 * H, critical: 48 * H });
    expect(policy.health.drillAge.critical).toBe(35 * D);
    expect(policy.drill).toEqual({ amcheck: true, checks: [] });
    expect(parsePolicy('', 'empty.yaml')).toEqual(policy);
    expect(parsePolicy('# nothing but a comment\n', 'c.yaml')).toEqual(policy);
  });

  it('policies/default.yaml says exactly what the built-in defaults are', () => {
    // Policy's type leaves the schedule section out (pgdr schedule owns it), but the parsed object carries it.
    const { schedule, ...rest } = loadPolicy(defaultYaml) as ReturnType<typeof loadPolicy> & { schedule?: unknown };
    expect(rest).toEqual(defaultPolicy());
    // The schedule section belongs to `pgdr schedule`, which validates it; the file must match its defaults too.
    const context = { etcdConfigured: true };
    expect(parseScheduleSection(schedule, defaultYaml, context)).toEqual(parseScheduleSection(undefined, 'defaults', context));
  });

  it('keeps defaults for every key a file does not name', () => {
    const policy = parsePolicy(
      `retention:
  backups: { daily: 3, weekly: 2, monthly: 2 }
  pitrWindow: 7d
health:
  backupAge: { warning: 2h }
drill:
  checks:
    - name: rows
      sql: select count(*) from t
      expect: { min: 1, max: 10 }
    - name: fresh
      sql: select max(at) from t
      expect: { maxAgeSeconds: 3600 }
    - name: flag
      sql: select true
      expect: { equals: true }
`,
      'p.yaml',
    );
    expect(policy.retention.backups).toEqual({ daily: 3, weekly: 2, monthly: 2, yearly: 0 });
    expect(policy.retention.pitrWindow).toBe(7 * D);
    expect(policy.retention.garbageGrace).toBe(24 * H);
    expect(policy.retention.etcdSnapshots.daily).toBe(7);
    expect(policy.health.backupAge).toEqual({ warning: 2 * H, critical: 48 * H });
    expect(policy.drill.amcheck).toBe(true);
    expect(policy.drill.checks).toEqual([
      { name: 'rows', sql: 'select count(*) from t', expect: { min: 1, max: 10 } },
      { name: 'fresh', sql: 'select max(at) from t', expect: { maxAgeSeconds: 3600 } },
      { name: 'flag', sql: 'select true', expect: { equals: true } },
    ]);
  });

  it('names the key of every mistake in one line', () => {
    expect(problem('retention: { backups: { dayly: 3 } }')).toBe('policy file p.yaml: retention.backups.dayly: unknown key');
    expect(problem('retention: { pitrWindow: 30 }')).toBe('policy file p.yaml: retention.pitrWindow: expected a duration such as 26h or 30d');
    expect(problem('retention: { garbageGrace: "1 day" }')).toMatch(/^policy file p.yaml: retention.garbageGrace: "1 day" is not a duration/);
    expect(problem('retention: { backups: { weekly: -1 } }')).toBe('policy file p.yaml: retention.backups.weekly: must not be negative');
    expect(problem('retention: { etcdSnapshots: { monthly: 1.5 } }')).toBe('policy file p.yaml: retention.etcdSnapshots.monthly: expected a whole number');
    expect(problem('health: { backupAge: { warning: 3d } }')).toBe('policy file p.yaml: health.backupAge.warning: warning must not be longer than critical');
    expect(problem('health: { walArchiveLag: { warningSegments: 99 } }')).toMatch(/health.walArchiveLag.warningSegments: warningSegments must not be more/);
    expect(problem('drill: { checks: [ { name: a, sql: "select 1", expect: {} } ] }')).toBe(
      'policy file p.yaml: drill.checks[0].expect: name at least one of min, max, equals, maxAgeSeconds',
    );
    expect(problem('drill: { checks: [ { name: a, sql: "  ", expect: { min: 1 } } ] }')).toBe('policy file p.yaml: drill.checks[0].sql: must not be empty');
    expect(problem('drill: { checks: [ { name: a, sql: "select 1", expect: { min: 2, max: 1 } } ] }')).toMatch(/drill.checks\[0\].expect.min: min must not be greater than max/);
    expect(problem('drill: { checks: [ { name: a, sql: "select 1", expect: { min: 1 } }, { name: a, sql: "select 2", expect: { min: 1 } } ] }')).toBe(
      'policy file p.yaml: drill.checks: check names must be unique',
    );
    expect(problem('drill: { amcheck: yes please }')).toBe('policy file p.yaml: drill.amcheck: expected true or false');
    expect(problem('- retention')).toBe('policy file p.yaml: (top level): expected a mapping with retention:, health: and drill: sections');
    expect(problem('retention: [')).toMatch(/^policy file p.yaml is not valid YAML: /);
    expect(problem('retention: {}\nretention: {}')).toMatch(/not valid YAML/);
  });

  describe('from disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-policy-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('reads a file and says which one it could not read', () => {
      const file = join(dir, 'small.yaml');
      writeFileSync(file, 'retention:\n  backups:\n    daily: 2\n');
      expect(loadPolicy(file).retention.backups.daily).toBe(2);
      expect(() => loadPolicy(join(dir, 'missing.yaml'))).toThrow(/cannot read policy file .*missing.yaml: ENOENT/);
    });
  });
});
