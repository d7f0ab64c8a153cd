import { describe, expect, it } from 'vitest';
import { excludeEachOther, supersedingBackupJob, type FiresAt } from '../../../src/schedule/backup-jobs.js';
import { parseScheduleSection } from '../../../src/schedule/config.js';
import { cronFiresAt, nextRuns } from '../../../src/schedule/cron.js';

/** A weekly full on Sunday and a daily incr at the same time, as policies/README.md suggests, plus a diff on Wednesday. */
const JOBS = parseScheduleSection(
  {
    jobs: {
      backup: { cron: '0 2 * * 0', type: 'full', engine: 'files' },
      'backup-incr': { cron: '0 2 * * *', type: 'incr', engine: 'files' },
      'backup-diff': { cron: '0 2 * * 3', type: 'diff', engine: 'files' },
    },
  },
  'test',
  { etcdConfigured: false },
).jobs;
const job = (name: string) => JOBS.find((j) => j.name === name)!;
const firesAt: FiresAt = (j, at) => cronFiresAt(j.cron, 'UTC', at);

describe('supersedingBackupJob', () => {
  it('never lets a backup into another repository supersede one (a full into b2 serves no restore from r2)', () => {
    const jobs = parseScheduleSection(
      { jobs: { backup: { cron: '0 2 * * *', type: 'incr', engine: 'files' }, 'backup-offsite': { cron: '0 2 * * *', type: 'full', repo: 'b2' } } },
      'test',
      { etcdConfigured: false },
    ).jobs;
    const at = new Date('2024-05-05T02:00:00Z');
    for (const j of jobs.filter((j) => j.backupType !== undefined)) expect(supersedingBackupJob(j, at, jobs, firesAt)).toBeUndefined();
    expect(jobs.find((j) => j.name === 'backup-offsite')!.repo).toBe('b2');
  });

  it('runs the full on Sunday, the diff on Wednesday and the incr on the other days, whichever timer fires first', () => {
    const week = nextRuns('0 2 * * *', 'UTC', new Date('2024-05-04T12:00:00Z'), 7); // Sunday 2024-05-05 to Saturday
    const runs = week.map((at) => {
      const running = JOBS.filter((j) => j.backupType !== undefined && firesAt(j, at) && supersedingBackupJob(j, at, JOBS, firesAt) === undefined);
      return `${at.toISOString().slice(0, 10)} ${running.map((j) => j.name).join(',')}`;
    });
    expect(runs).toEqual([
      '2024-05-05 backup',
      '2024-05-06 backup-incr',
      '2024-05-07 backup-incr',
      '2024-05-08 backup-diff',
      '2024-05-09 backup-incr',
      '2024-05-10 backup-incr',
      '2024-05-11 backup-incr',
    ]);
    expect(supersedingBackupJob(job('backup-incr'), new Date('2024-05-05T02:00:00Z'), JOBS, firesAt)?.name).toBe('backup');
    expect(supersedingBackupJob(job('backup-incr'), new Date('2024-05-08T02:00:00.400Z'), JOBS, firesAt)?.name).toBe('backup-diff');
  });

  it('leaves jobs that are not backups, disabled jobs and other moments alone, and breaks a tie by name', () => {
    const verify = JOBS.find((j) => j.name === 'verify')!;
    expect(supersedingBackupJob(verify, new Date('2024-05-05T05:00:00Z'), JOBS, firesAt)).toBeUndefined();
    const withoutFull = JOBS.map((j) => (j.name === 'backup' ? { ...j, enabled: false } : j));
    expect(supersedingBackupJob(job('backup-incr'), new Date('2024-05-05T02:00:00Z'), withoutFull, firesAt)).toBeUndefined();
    const twins = [
      { ...job('backup-incr'), name: 'backup-b' as const },
      { ...job('backup-incr'), name: 'backup-a' as const },
    ];
    expect(supersedingBackupJob(twins[0]!, new Date('2024-05-06T02:00:00Z'), twins, firesAt)?.name).toBe('backup-a');
    expect(supersedingBackupJob(twins[1]!, new Date('2024-05-06T02:00:00Z'), twins, firesAt)).toBeUndefined();
  });
});

describe('excludeEachOther', () => {
  it('keeps backups apart from each other and from themselves, and lets other jobs run beside them', () => {
    const expire = JOBS.find((j) => j.name === 'expire')!;
    expect(excludeEachOther(job('backup'), job('backup-incr'))).toBe(true);
    expect(excludeEachOther(expire, expire)).toBe(true);
    expect(excludeEachOther(job('backup'), expire)).toBe(false);
  });
});

describe('cronFiresAt', () => {
  it('matches to the second in the schedule time zone', () => {
    expect(cronFiresAt('0 2 * * 0', 'UTC', new Date('2024-05-05T02:00:00.900Z'))).toBe(true);
    expect(cronFiresAt('0 2 * * 0', 'UTC', new Date('2024-05-05T02:00:01Z'))).toBe(false);
    expect(cronFiresAt('0 2 * * 0', 'Europe/Berlin', new Date('2024-05-05T00:00:00Z'))).toBe(true);
    expect(cronFiresAt('*/10 * * * * *', 'UTC', new Date('2024-05-05T02:00:20Z'))).toBe(true);
  });
});
