import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JOB_NAMES, loadScheduleConfig, parseScheduleSection } from '../../../src/schedule/config.js';

const dir = mkdtempSync(join(tmpdir(), 'pgdr-schedule-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseScheduleSection', () => {
  it('defaults to the CronJobs timetable, etcd snapshots only with etcd configured', () => {
    const config = parseScheduleSection(undefined, 'test', { etcdConfigured: false });
    expect(config).toMatchObject({ timeZone: 'UTC', leaderGate: 'patroni', localPatroni: undefined, gracePeriodMs: 600_000, lockTtlMs: 300_000 });
    expect(config.jobs.map((j) => [j.name, j.cron, j.enabled, j.command.join(' ')])).toEqual([
      ['backup', '0 2 * * *', true, 'backup now'],
      ['wal-archive-check', '*/5 * * * *', true, 'health --check wal-archive'],
      ['etcd-snapshot', '15 */6 * * *', false, 'etcd snapshot'],
      ['expire', '0 4 * * *', true, 'expire'],
      ['verify', '0 5 * * 0', true, 'verify'],
      ['drill', '0 6 1 * *', true, 'drill'],
    ]);
    expect(config.jobs.find((j) => j.name === 'backup')?.timeoutMs).toBe(12 * 3_600_000);
    expect(parseScheduleSection({}, 'test', { etcdConfigured: true }).jobs.find((j) => j.name === 'etcd-snapshot')?.enabled).toBe(true);
  });

  it('takes every key from the section', () => {
    const config = parseScheduleSection(
      {
        timeZone: 'Europe/Berlin',
        leaderGate: 'none',
        localPatroni: 'http://10.0.0.5:8008',
        gracePeriod: '30s',
        lockTtl: '2m',
        jobs: { backup: { cron: '30 1 * * *', timeout: '3h' }, verify: { args: ['--quick'] }, drill: { enabled: false }, 'etcd-snapshot': { enabled: true } },
      },
      'test',
      { etcdConfigured: false },
    );
    expect(config).toMatchObject({ timeZone: 'Europe/Berlin', leaderGate: 'none', localPatroni: 'http://10.0.0.5:8008', gracePeriodMs: 30_000, lockTtlMs: 120_000 });
    const job = (name: string) => config.jobs.find((j) => j.name === name);
    expect(job('backup')).toMatchObject({ cron: '30 1 * * *', timeoutMs: 3 * 3_600_000, enabled: true });
    expect(job('verify')?.command).toEqual(['verify', '--quick']);
    expect(job('drill')?.enabled).toBe(false);
    expect(job('etcd-snapshot')?.enabled).toBe(true);
  });

  it.each([
    [{ jobs: { backup: { cron: '0 25 * * *' } } }, /schedule\.jobs\.backup\.cron: "0 25 \* \* \*" is not a cron expression: hour/],
    [{ jobs: { backups: {} } }, /schedule\.jobs\.backups: unknown key \(jobs are backup, wal-archive-check/],
    [{ jobs: { backup: { cron: 2 } } }, /schedule\.jobs\.backup\.cron: expected a cron expression/],
    [{ jobs: { expire: { args: ['--repo', 's3://other'] } } }, /passes --repo/],
    [{ timeZone: 'Moon/Base' }, /schedule\.timeZone: "Moon\/Base" is not a time zone/],
    [{ gracePeriod: 'ten minutes' }, /schedule\.gracePeriod: "ten minutes" is not a duration/],
    [{ leaderGate: 'etcd' }, /schedule\.leaderGate: expected patroni or none/],
    [{ colour: 'blue' }, /schedule\.colour: unknown key/],
  ])('refuses %j with one line naming the key', (section, message) => {
    expect(() => parseScheduleSection(section, 'policy file p.yaml', { etcdConfigured: false })).toThrow(message);
  });

  it('takes more backup jobs, each with its type and engine, after the fixed jobs', () => {
    const config = parseScheduleSection(
      {
        jobs: {
          backup: { cron: '0 2 * * 0', type: 'full', engine: 'files' },
          'backup-incr': { cron: '0 2 * * *', type: 'incr', engine: 'files', args: ['--jobs', '4'] },
          'backup-diff': { cron: '30 2 * * 3', type: 'diff', timeout: '6h' },
        },
      },
      'test',
      { etcdConfigured: false },
    );
    expect(config.jobs.map((j) => [j.name, j.cron, j.command.join(' '), j.backupType ?? null])).toEqual([
      ['backup', '0 2 * * 0', 'backup now --type full --engine files', 'full'],
      ['wal-archive-check', '*/5 * * * *', 'health --check wal-archive', null],
      ['etcd-snapshot', '15 */6 * * *', 'etcd snapshot', null],
      ['expire', '0 4 * * *', 'expire', null],
      ['verify', '0 5 * * 0', 'verify', null],
      ['drill', '0 6 1 * *', 'drill', null],
      ['backup-diff', '30 2 * * 3', 'backup now --type diff', 'diff'],
      ['backup-incr', '0 2 * * *', 'backup now --type incr --engine files --jobs 4', 'incr'],
    ]);
    expect(config.jobs.find((j) => j.name === 'backup-diff')).toMatchObject({ enabled: true, timeoutMs: 6 * 3_600_000 });
    // Without type: the backup job takes what backup now takes by default, a full one.
    expect(parseScheduleSection(undefined, 'test', { etcdConfigured: false }).jobs[0]).toMatchObject({ command: ['backup', 'now'], backupType: 'full' });
  });

  it.each([
    [{ jobs: { 'backup-incr': { type: 'incr' } } }, /schedule\.jobs\.backup-incr\.cron: expected a cron expression/],
    [{ jobs: { 'backup-incr': { cron: '0 2 * * *', type: 'incr', engine: 'basebackup' } } }, /schedule\.jobs\.backup-incr\.engine: a diff or incr backup needs the files engine/],
    [{ jobs: { 'backup-incr': { cron: '0 2 * * *', args: ['--type', 'incr'] } } }, /schedule\.jobs\.backup-incr\.args: give the backup type and engine as type: and engine:/],
    [{ jobs: { 'backup-incr': { cron: '0 2 * * *', type: 'weekly' } } }, /schedule\.jobs\.backup-incr\.type: expected full, diff or incr/],
    [{ jobs: { 'backup-incr': { cron: '0 2 * * *', colour: 'blue' } } }, /schedule\.jobs\.backup-incr\.colour: unknown key$/],
    [{ jobs: { 'backup-Incr': { cron: '0 2 * * *' } } }, /schedule\.jobs\.backup-Incr: unknown key \(jobs are .*, or backup-<name> for another backup job/],
    [{ jobs: { verify: { type: 'full' } } }, /schedule\.jobs\.verify\.type: unknown key \(type: belongs to backup jobs\)/],
  ])('refuses the backup job %j with one line naming the key', (section, message) => {
    expect(() => parseScheduleSection(section, 'policy file p.yaml', { etcdConfigured: false })).toThrow(message);
  });

  it('lists every job name', () => {
    expect(JOB_NAMES).toEqual(['backup', 'wal-archive-check', 'etcd-snapshot', 'expire', 'verify', 'drill']);
  });
});

describe('loadScheduleConfig', () => {
  it('reads only the schedule section of the policy file', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'retention:\n  backups: {daily: 3}\nschedule:\n  jobs:\n    backup: {cron: "0 3 * * *"}\n');
    expect(loadScheduleConfig(file, { etcdConfigured: false }).jobs[0]).toMatchObject({ name: 'backup', cron: '0 3 * * *' });
    expect(loadScheduleConfig(undefined, { etcdConfigured: false }).jobs[0]?.cron).toBe('0 2 * * *');
  });

  it('names the file in errors', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'schedule:\n  jobs:\n    drill: {cron: "0 0 31 2 *"}\n');
    expect(() => loadScheduleConfig(file, { etcdConfigured: false })).toThrow(`policy file ${file}: schedule.jobs.drill.cron`);
    expect(() => loadScheduleConfig(join(dir, 'missing.yaml'), { etcdConfigured: false })).toThrow(/cannot read policy file/);
    writeFileSync(join(dir, 'broken.yaml'), 'schedule: [\n');
    expect(() => loadScheduleConfig(join(dir, 'broken.yaml'), { etcdConfigured: false })).toThrow(/not valid YAML/);
  });
});
