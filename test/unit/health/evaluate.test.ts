import { describe, expect, it } from 'vitest';
import { defaultPolicy, parsePolicy } from '../../../src/config/policy.js';
import { ageState, evaluateHealth, formatAge, walArchiveLag, worstState, type CheckResult } from '../../../src/health/evaluate.js';
import { failed, known, notConfigured, type HealthFacts, type ServerWalFacts } from '../../../src/health/facts.js';
import { backupFacts } from '../../../src/health/gather.js';
import { currentSegment } from '../../../src/health/sources.js';
import { filesBackup } from '../retention/fixtures.js';

const H = 3_600_000;
const D = 24 * H;
const NOW = new Date('2024-05-10T12:00:00Z');
const ago = (ms: number): Date => new Date(NOW.getTime() - ms);

function server(overrides: Partial<ServerWalFacts> = {}): ServerWalFacts {
  return {
    source: '127.0.0.1:5432',
    currentWalFile: '000000010000000000000010',
    walSegmentSize: 16 * 1024 * 1024,
    archiveMode: 'on',
    serverTime: NOW,
    archiver: {
      archivedCount: 15,
      lastArchivedWal: '00000001000000000000000F',
      lastArchivedTime: ago(60_000),
      failedCount: 0,
      lastFailedWal: null,
      lastFailedTime: null,
    },
    walFiles: [],
    ...overrides,
  };
}

/** A healthy deployment: every check OK at NOW. */
function healthyFacts(): HealthFacts {
  return {
    cluster: 'main',
    repository: known({ location: 'file:///repo' }),
    backups: known({
      newest: { backupId: '20240510T020000Z', startTime: ago(10 * H + 600_000), stopTime: ago(10 * H), bytes: 1000, storedBytes: 400 },
      oldestStart: ago(40 * D),
      completeCount: 12,
      incompleteCount: 0,
      invalidIds: [],
      unrestorableIds: [],
    }),
    wal: known({ server: server(), newestArchived: { name: '00000001000000000000000F', storedAt: ago(60_000) }, aheadOfServer: null }),
    etcd: known({ newest: { snapshotId: '20240510T060000Z', takenAt: ago(6 * H) } }),
    drill: known({ last: { drillId: '20240501T070000Z', at: ago(9 * D), passed: true } }),
  };
}

function check(facts: HealthFacts, name: CheckResult['check'], now = NOW): CheckResult {
  const report = evaluateHealth(facts, defaultPolicy().health, now);
  const found = report.checks.find((c) => c.check === name);
  if (!found) throw new Error(`no ${name} check`);
  return found;
}

describe('evaluateHealth', () => {
  it('is OK with exit 0 when everything is fresh', () => {
    const report = evaluateHealth(healthyFacts(), defaultPolicy().health, NOW);
    expect(report.checks.map((c) => [c.check, c.status])).toEqual([
      ['repository', 'OK'],
      ['backup-age', 'OK'],
      ['wal-archive', 'OK'],
      ['etcd-snapshot', 'OK'],
      ['drill', 'OK'],
    ]);
    expect(report.status).toBe('OK');
    expect(report.exitCode).toBe(0);
    expect(report.evaluatedAt).toEqual(NOW);
  });

  describe('backup age (default WARNING past 26 h, CRITICAL past 48 h)', () => {
    const at = (ageMs: number): HealthFacts => {
      const facts = healthyFacts();
      if (facts.backups.kind !== 'known' || facts.backups.value.newest === null) throw new Error('fixture');
      facts.backups.value.newest.stopTime = ago(ageMs);
      facts.backups.value.newest.startTime = ago(ageMs + 600_000);
      return facts;
    };
    it.each([
      [25 * H, 'OK', 0],
      [26 * H, 'OK', 0],
      [26 * H + 1000, 'WARNING', 1],
      [48 * H, 'WARNING', 1],
      [48 * H + 1000, 'CRITICAL', 2],
      [10 * D, 'CRITICAL', 2],
    ] as const)('age %d ms is %s (exit %d)', (ageMs, state, exit) => {
      const report = evaluateHealth(at(ageMs), defaultPolicy().health, NOW);
      expect(report.checks.find((c) => c.check === 'backup-age')?.status).toBe(state);
      expect(report.status).toBe(state);
      expect(report.exitCode).toBe(exit);
    });

    it('reports the age and the threshold passed', () => {
      const c = check(at(27 * H), 'backup-age');
      expect(c.message).toBe('newest complete backup 20240510T020000Z finished 27 h ago (warning past 26 h)');
      expect(c.hint).toMatch(/pgdr backup now/);
      expect(c.measurements).toMatchObject({ ageSeconds: 27 * 3600, warningSeconds: 26 * 3600, criticalSeconds: 48 * 3600, backupDurationSeconds: 600 });
    });

    it('takes its thresholds from the policy', () => {
      const policy = parsePolicy('health:\n  backupAge: {warning: 2h, critical: 4h}\n', 'test.yaml');
      const facts = at(3 * H);
      expect(evaluateHealth(facts, policy.health, NOW).checks.find((c) => c.check === 'backup-age')?.status).toBe('WARNING');
      expect(evaluateHealth(at(5 * H), policy.health, NOW).checks.find((c) => c.check === 'backup-age')?.status).toBe('CRITICAL');
    });

    it('is CRITICAL when there is no complete backup', () => {
      const facts = healthyFacts();
      facts.backups = known({ newest: null, oldestStart: null, completeCount: 0, incompleteCount: 1, invalidIds: [], unrestorableIds: [] });
      const c = check(facts, 'backup-age');
      expect(c.status).toBe('CRITICAL');
      expect(c.message).toBe('no complete base backup in the repository');
    });

    it('warns about invalid manifests even when the newest backup is fresh', () => {
      const facts = healthyFacts();
      if (facts.backups.kind === 'known') facts.backups.value.invalidIds = ['20240101T000000Z'];
      const c = check(facts, 'backup-age');
      expect(c.status).toBe('WARNING');
      expect(c.message).toMatch(/1 invalid manifest\(s\): 20240101T000000Z/);
    });

    it('counts only backups that can be restored, and warns about those whose chain lacks a member', () => {
      const full = filesBackup({ start: '2024-05-01T02:00:00Z', type: 'full' });
      const gone = filesBackup({ start: '2024-05-02T02:00:00Z', type: 'full' });
      const incr = filesBackup({ start: '2024-05-03T02:00:00Z', type: 'incr', chain: [gone] });
      const value = backupFacts({ complete: [full, incr], incomplete: [], invalid: [] });
      expect(value.newest?.backupId).toBe(full.backupId);
      expect(value.unrestorableIds).toEqual([incr.backupId]);
      const facts = healthyFacts();
      facts.backups = known(value);
      const c = check(facts, 'backup-age');
      expect(c.status).toBe('CRITICAL'); // the full is weeks old at NOW
      expect(c.message).toContain(`newest complete backup ${full.backupId}`);
      expect(c.message).toContain(`1 backup(s) cannot be restored, their chain lacks a member: ${incr.backupId}`);

      const fresh = healthyFacts();
      if (fresh.backups.kind === 'known') fresh.backups.value.unrestorableIds = [incr.backupId];
      expect(check(fresh, 'backup-age')).toMatchObject({ status: 'WARNING', hint: expect.stringContaining('broken-chain') });

      const none = healthyFacts();
      none.backups = known(backupFacts({ complete: [incr], incomplete: [], invalid: [] }));
      expect(check(none, 'backup-age')).toMatchObject({ status: 'CRITICAL', message: expect.stringMatching(/^no base backup in the repository can be restored: 1 build/) });
    });

    it('treats a stop time in the future (clock skew) as age 0', () => {
      const c = check(at(-H), 'backup-age');
      expect(c.status).toBe('OK');
      expect(c.measurements.ageSeconds).toBe(0);
    });
  });

  describe('drill (default WARNING past 32 d, CRITICAL past 35 d or failed)', () => {
    const drillAt = (ageMs: number, passed = true): HealthFacts => {
      const facts = healthyFacts();
      facts.drill = known({ last: { drillId: '20240401T070000Z', at: ago(ageMs), passed, ...(passed ? {} : { failure: 'pg_amcheck found corruption' }) } });
      return facts;
    };
    it.each([
      [31 * D, 'OK'],
      [32 * D, 'OK'],
      [32 * D + 1000, 'WARNING'],
      [35 * D, 'WARNING'],
      [35 * D + 1000, 'CRITICAL'],
    ] as const)('a passed drill %d ms old is %s', (ageMs, state) => {
      expect(check(drillAt(ageMs), 'drill').status).toBe(state);
    });

    it('is CRITICAL when the last drill failed, however recent', () => {
      const c = check(drillAt(H, false), 'drill');
      expect(c.status).toBe('CRITICAL');
      expect(c.message).toBe('last restore drill 20240401T070000Z FAILED 60 min ago: pg_amcheck found corruption');
      expect(c.measurements.drillPassed).toBe(0);
    });

    it('without any drill: WARNING while the repository is younger than the critical age, CRITICAL after', () => {
      const young = healthyFacts();
      young.drill = known({ last: null });
      if (young.backups.kind === 'known') young.backups.value.oldestStart = ago(3 * D);
      expect(check(young, 'drill').status).toBe('WARNING');
      const old = healthyFacts();
      old.drill = known({ last: null });
      expect(check(old, 'drill').status).toBe('CRITICAL');
      expect(check(old, 'drill').message).toBe('no restore drill recorded; the oldest backup started 40 d ago');
    });
  });

  describe('etcd snapshot age (default 26 h / 48 h)', () => {
    const snapAt = (ageMs: number): HealthFacts => {
      const facts = healthyFacts();
      facts.etcd = known({ newest: { snapshotId: '20240509T000000Z', takenAt: ago(ageMs) } });
      return facts;
    };
    it.each([
      [26 * H, 'OK'],
      [26 * H + 1, 'WARNING'],
      [48 * H + 1, 'CRITICAL'],
    ] as const)('%d ms old is %s', (ageMs, state) => {
      expect(check(snapAt(ageMs), 'etcd-snapshot').status).toBe(state);
    });
    it('is CRITICAL when etcd is configured but nothing was snapshotted', () => {
      const facts = healthyFacts();
      facts.etcd = known({ newest: null });
      expect(check(facts, 'etcd-snapshot').status).toBe('CRITICAL');
    });
    it('is SKIPPED, and not counted, when etcd is not used', () => {
      const facts = healthyFacts();
      facts.etcd = notConfigured('no etcd endpoints configured');
      const report = evaluateHealth(facts, defaultPolicy().health, NOW);
      expect(report.checks.find((c) => c.check === 'etcd-snapshot')).toMatchObject({ status: 'SKIPPED', message: 'no etcd endpoints configured' });
      expect(report.status).toBe('OK');
    });
  });

  describe('WAL archive', () => {
    const walFacts = (current: string, newest: string | null, overrides: Partial<ServerWalFacts> = {}, storedAt = ago(60_000)): HealthFacts => {
      const facts = healthyFacts();
      facts.wal = known({ server: server({ currentWalFile: current, ...overrides }), newestArchived: newest === null ? null : { name: newest, storedAt }, aheadOfServer: null });
      return facts;
    };

    it('is CRITICAL when the repository holds WAL the server cannot have written', () => {
      const ahead = (name: string): HealthFacts => {
        const facts = walFacts('000000020000000000000010', '00000002000000000000000F');
        if (facts.wal.kind === 'known') facts.wal.value.aheadOfServer = { name, storedAt: ago(30_000) };
        return facts;
      };
      const own = check(ahead('000000020000000000000011'), 'wal-archive');
      expect(own.status).toBe('CRITICAL');
      expect(own.message).toBe(
        `the repository holds 000000020000000000000011 (stored ${ago(30_000).toISOString()}), at or past the segment server 127.0.0.1:5432 writes ` +
          "(000000020000000000000010): another server archives under this cluster's name",
      );
      expect(own.hint).toMatch(/^find the other server whose archive_command uses this --cluster/);
      // The lag is still measured: the server's own archiving may be fine.
      expect(own.measurements.lagSegments).toBe(0);
      expect(check(ahead('000000010000000000000012'), 'wal-archive').message).toMatch(/^the repository holds 000000010000000000000012 .*, past the segment server/);
      expect(check(ahead('00000003.history'), 'wal-archive').message).toMatch(
        /^the repository holds WAL of timeline 3 \(00000003\.history, stored .*\), but server 127\.0\.0\.1:5432 is on timeline 2: a server promoted from a copy/,
      );
      expect(evaluateHealth(ahead('000000020000000000000011'), defaultPolicy().health, NOW).exitCode).toBe(2);
    });

    it('is OK when the newest archived segment is the one before the current', () => {
      const c = check(walFacts('000000010000000000000010', '00000001000000000000000F'), 'wal-archive');
      expect(c.status).toBe('OK');
      expect(c.measurements.lagSegments).toBe(0);
      expect(c.measurements.lagSeconds).toBe(0);
    });

    it('counts the missing segments across a log id boundary and a timeline switch', () => {
      // 2/00000003 on timeline 2 against 1/000000FE on timeline 1: FF, 2/00, 2/01, 2/02 are missing.
      const lag = walArchiveLag(
        { server: server({ currentWalFile: '000000020000000200000003', walFiles: null }), newestArchived: { name: '0000000100000001000000FE', storedAt: ago(5 * 60_000) }, aheadOfServer: null },
        NOW,
      );
      expect(lag).toEqual({ lagSegments: 4, lagMs: 5 * 60_000, firstMissing: null });
    });

    it('measures the wait from the oldest missing segment in pg_wal, on the server clock', () => {
      const serverTime = new Date(NOW.getTime() + 3_600_000); // an hour of skew must not matter
      const walFiles = [
        { name: '00000001000000000000000E', modified: new Date(serverTime.getTime() - 50 * 60_000) },
        { name: '000000010000000000000010', modified: new Date(serverTime.getTime() - 20 * 60_000) },
        { name: '000000010000000000000011', modified: new Date(serverTime.getTime() - 10 * 60_000) },
        { name: '000000010000000000000012', modified: serverTime },
        { name: 'archive_status', modified: serverTime },
        { name: '00000002.history', modified: serverTime },
      ];
      const facts = walFacts('000000010000000000000012', '00000001000000000000000F', { serverTime, walFiles }, ago(3 * H));
      const c = check(facts, 'wal-archive');
      expect(c.measurements.lagSegments).toBe(2);
      expect(c.measurements.lagSeconds).toBe(20 * 60);
      expect(c.status).toBe('WARNING'); // past 15 min, below 1 h
      expect(c.message).toMatch(/^2 completed segment\(s\) not in the repository, oldest waiting 20 min/);
    });

    it.each([
      [8, 'OK'],
      [9, 'WARNING'],
      [32, 'WARNING'],
      [33, 'CRITICAL'],
    ] as const)('%d missing segments (waiting 1 min) are %s', (missing, state) => {
      const current = (0x10 + missing + 1).toString(16).toUpperCase().padStart(8, '0');
      const walFiles = [{ name: '000000010000000000000011', modified: ago(60_000) }];
      const c = check(walFacts(`0000000100000000${current}`, '000000010000000000000010', { walFiles }), 'wal-archive');
      expect(c.measurements.lagSegments).toBe(missing);
      expect(c.status).toBe(state);
    });

    it('is CRITICAL past an hour of waiting, even for one segment', () => {
      const walFiles = [{ name: '000000010000000000000010', modified: ago(H + 1000) }];
      const c = check(walFacts('000000010000000000000011', '00000001000000000000000F', { walFiles }), 'wal-archive');
      expect(c.status).toBe('CRITICAL');
    });

    it('is CRITICAL when archive_command keeps failing', () => {
      const facts = walFacts('000000010000000000000010', '00000001000000000000000F', {
        archiver: {
          archivedCount: 15,
          lastArchivedWal: '00000001000000000000000F',
          lastArchivedTime: ago(10 * 60_000),
          failedCount: 3,
          lastFailedWal: '000000010000000000000010',
          lastFailedTime: ago(30_000),
        },
      });
      const c = check(facts, 'wal-archive');
      expect(c.status).toBe('CRITICAL');
      expect(c.message).toMatch(/^archive_command is failing on 127\.0\.0\.1:5432: 000000010000000000000010 failed at/);
      expect(c.measurements.archiverFailedCount).toBe(3);
    });

    it('forgives an old failure once archiving succeeded again', () => {
      const facts = walFacts('000000010000000000000010', '00000001000000000000000F', {
        archiver: {
          archivedCount: 15,
          lastArchivedWal: '00000001000000000000000F',
          lastArchivedTime: ago(60_000),
          failedCount: 3,
          lastFailedWal: '00000001000000000000000E',
          lastFailedTime: ago(H),
        },
      });
      expect(check(facts, 'wal-archive').status).toBe('OK');
    });

    it('is CRITICAL with archive_mode off or nothing archived', () => {
      expect(check(walFacts('000000010000000000000010', '00000001000000000000000F', { archiveMode: 'off' }), 'wal-archive').status).toBe('CRITICAL');
      const none = check(walFacts('000000010000000000000010', null), 'wal-archive');
      expect(none.status).toBe('CRITICAL');
      expect(none.message).toMatch(/^no WAL segment in the repository/);
    });

    it('is SKIPPED without PostgreSQL and UNKNOWN when the server cannot be read', () => {
      const skippedFacts = healthyFacts();
      skippedFacts.wal = notConfigured('no PostgreSQL configured');
      expect(check(skippedFacts, 'wal-archive').status).toBe('SKIPPED');
      const down = healthyFacts();
      down.wal = failed('cannot connect to PostgreSQL at 127.0.0.1:1: ECONNREFUSED', 'check --pg-host');
      const c = check(down, 'wal-archive');
      expect(c).toMatchObject({ status: 'UNKNOWN', message: 'cannot read the WAL archive state: cannot connect to PostgreSQL at 127.0.0.1:1: ECONNREFUSED', hint: 'check --pg-host' });
      expect(evaluateHealth(down, defaultPolicy().health, NOW).exitCode).toBe(3);
    });
  });

  it('is CRITICAL when the repository is unreachable, with the dependent checks UNKNOWN', () => {
    const facts = healthyFacts();
    facts.repository = failed('connect ECONNREFUSED 127.0.0.1:9000');
    facts.backups = failed('repository did not answer');
    facts.drill = failed('repository did not answer');
    const report = evaluateHealth(facts, defaultPolicy().health, NOW);
    expect(report.checks.find((c) => c.check === 'repository')?.status).toBe('CRITICAL');
    expect(report.checks.find((c) => c.check === 'backup-age')?.status).toBe('UNKNOWN');
    expect(report.status).toBe('CRITICAL');
    expect(report.exitCode).toBe(2);
    expect(report.repository).toBeNull();
  });

  it('evaluates only the checks asked for', () => {
    const facts = healthyFacts();
    facts.drill = known({ last: null });
    const report = evaluateHealth(facts, defaultPolicy().health, NOW, { only: ['wal-archive'] });
    expect(report.checks.map((c) => c.check)).toEqual(['wal-archive']);
    expect(report.status).toBe('OK');
  });
});

describe('worstState', () => {
  it('orders OK < WARNING < UNKNOWN < CRITICAL and ignores SKIPPED', () => {
    expect(worstState([])).toBe('OK');
    expect(worstState(['SKIPPED'])).toBe('OK');
    expect(worstState(['OK', 'WARNING'])).toBe('WARNING');
    expect(worstState(['WARNING', 'UNKNOWN'])).toBe('UNKNOWN');
    expect(worstState(['UNKNOWN', 'CRITICAL', 'WARNING'])).toBe('CRITICAL');
  });
});

describe('ageState and formatAge', () => {
  it('keeps the milder state exactly at a threshold', () => {
    expect(ageState(10, { warning: 10, critical: 20 })).toBe('OK');
    expect(ageState(11, { warning: 10, critical: 20 })).toBe('WARNING');
    expect(ageState(20, { warning: 10, critical: 20 })).toBe('WARNING');
    expect(ageState(21, { warning: 10, critical: 20 })).toBe('CRITICAL');
  });
  it('prints short ages', () => {
    expect(formatAge(45_000)).toBe('45 s');
    expect(formatAge(12 * 60_000)).toBe('12 min');
    expect(formatAge(26 * H)).toBe('26 h');
    expect(formatAge(5.25 * H)).toBe('5.3 h');
    expect(formatAge(35 * D)).toBe('35 d');
  });
});

describe('currentSegment', () => {
  it('names the segment holding the insert position, also exactly on a segment boundary', () => {
    const MiB16 = 16 * 1024 * 1024;
    // Right after pg_switch_wal() the insert position is 0/5000000 and pg_walfile_name() says ...04.
    expect(currentSegment('000000020000000000000004', '0/5000000', MiB16)).toBe('000000020000000000000005');
    expect(currentSegment('000000020000000000000005', '0/5000028', MiB16)).toBe('000000020000000000000005');
    expect(currentSegment('0000000100000001000000FF', '2/0', MiB16)).toBe('000000010000000200000000');
  });
});
