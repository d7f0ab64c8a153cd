import { describe, expect, it } from 'vitest';
import { archiveWaitFailure, type ArchiverFacts } from '../../../src/backup/archive-wait.js';

const healthy: ArchiverFacts = {
  archivedCount: 40,
  lastArchivedWal: '000000010000000000000028',
  lastArchivedTime: new Date('2026-11-23T10:00:50Z'),
  failedCount: 0,
  lastFailedWal: null,
  lastFailedTime: null,
};
const what = 'WAL 000000010000000000000029 needed by this backup did not reach s3://b/p within 60 s';

describe('archiveWaitFailure', () => {
  it('with a failing archiver, says PostgreSQL is not archiving and where it failed', () => {
    const failing = { ...healthy, failedCount: 7, lastFailedWal: '000000010000000000000029', lastFailedTime: new Date('2026-11-23T10:01:00Z') };
    const error = archiveWaitFailure(failing, what);
    expect(error.exitCode).toBe(4);
    expect(error.message).toMatch(/^PostgreSQL is not archiving WAL: WAL 0+10+29 needed .*; archive_command last failed at 2026-11-23T10:01:00.000Z on 000000010000000000000029 \(7 failures/);
    expect(error.hint).toMatch(/archive_command/);
  });

  it('with a working archiver, says archiving is behind, not broken', () => {
    const error = archiveWaitFailure(healthy, what);
    expect(error.message).toMatch(/pg_stat_archiver shows no failure \(last success 000000010000000000000028 at .*\): archiving is behind/);
    expect(error.hint).toMatch(/raise --archive-wait/);
  });

  it('an old failure followed by successes is not "failing"', () => {
    const recovered = { ...healthy, failedCount: 2, lastFailedWal: '000000010000000000000010', lastFailedTime: new Date('2026-11-23T09:00:00Z') };
    expect(archiveWaitFailure(recovered, what).message).toMatch(/shows no failure/);
  });
});
