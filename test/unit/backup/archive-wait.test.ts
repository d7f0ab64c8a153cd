import { describe, expect, it } from 'vitest';
import { judgeArchiveWait, type ArchiverFacts } from '../../../src/backup/archive-wait.js';

const healthy: ArchiverFacts = {
  archivedCount: 40,
  lastArchivedWal: '000000010000000000000028',
  lastArchivedTime: new Date('2026-11-23T10:00:50Z'),
  failedCount: 0,
  lastFailedWal: null,
  lastFailedTime: null,
};
const T0 = Date.parse('2026-11-23T10:00:00Z');

describe('judgeArchiveWait', () => {
  it('is fine while the walsender does not wait, and forgets an earlier wait', () => {
    expect(judgeArchiveWait(T0, { waiting: false, archiver: healthy }, T0 + 500_000, 60_000)).toEqual({ kind: 'fine', waitingSince: undefined });
  });

  it('measures the wait by the clock from the first sample that saw it', () => {
    expect(judgeArchiveWait(undefined, { waiting: true, archiver: healthy }, T0, 60_000)).toEqual({ kind: 'fine', waitingSince: T0 });
    expect(judgeArchiveWait(T0, { waiting: true, archiver: healthy }, T0 + 59_000, 60_000)).toEqual({ kind: 'fine', waitingSince: T0 });
  });

  it('after --archive-wait with a failing archiver, says PostgreSQL is not archiving and where it failed', () => {
    const failing = { ...healthy, failedCount: 7, lastFailedWal: '000000010000000000000029', lastFailedTime: new Date('2026-11-23T10:01:00Z') };
    const verdict = judgeArchiveWait(T0, { waiting: true, archiver: failing }, T0 + 61_000, 60_000);
    expect(verdict.kind).toBe('stuck');
    if (verdict.kind !== 'stuck') return;
    expect(verdict.error.exitCode).toBe(4);
    expect(verdict.error.message).toMatch(/PostgreSQL is not archiving WAL.*last failed at 2026-11-23T10:01:00.000Z on 000000010000000000000029 \(7 failures/);
    expect(verdict.error.hint).toMatch(/archive_command/);
  });

  it('after --archive-wait with a working archiver, says archiving is too slow, not broken', () => {
    const verdict = judgeArchiveWait(T0, { waiting: true, archiver: healthy }, T0 + 60_000, 60_000);
    expect(verdict.kind).toBe('stuck');
    if (verdict.kind !== 'stuck') return;
    expect(verdict.error.message).toMatch(/did not reach the backup's end within --archive-wait \(60 s\); pg_stat_archiver shows no failure/);
    expect(verdict.error.hint).toMatch(/raise --archive-wait/);
  });

  it('an old failure followed by successes is not "failing"', () => {
    const recovered = { ...healthy, failedCount: 2, lastFailedWal: '000000010000000000000010', lastFailedTime: new Date('2026-11-23T09:00:00Z') };
    const verdict = judgeArchiveWait(T0, { waiting: true, archiver: recovered }, T0 + 60_000, 60_000);
    expect(verdict.kind === 'stuck' && verdict.error.message).toMatch(/shows no failure/);
  });
});
