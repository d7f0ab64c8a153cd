import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../../src/postgres/lsn.js';
import { rootTimelineHistory, parseTimelineHistory } from '../../../src/postgres/timeline-history.js';
import { buildWalIndex, checkWalCoverage, timelineForSegment, walNeededOnPath } from '../../../src/verify/wal-coverage.js';
import { archive, archivedAt, backup, layout, range, seg } from './fixtures.js';

const MIB16 = 16 * 1024 * 1024;
// Two backups on timeline 1: A runs in segment 2, B in segment 3.
const a = backup({ backupId: '20240503T090000Z', startLsn: '0/2000028', stopLsn: '0/2000138' });
const b = backup({ backupId: '20240503T093000Z', startLsn: '0/3000028', stopLsn: '0/3000138' });

describe('checkWalCoverage', () => {
  it('finds nothing wrong when every segment from each backup to the newest one is archived', () => {
    const index = archive(range(1, 2, 6));
    const report = checkWalCoverage(index, [a, b], layout);
    expect(report.problems).toEqual([]);
    expect(report.neededSegments).toBe(5);
    expect(report.missingSegments).toBe(0);
    expect(index.paths.map((p) => [p.timeline, p.end?.segment])).toEqual([[1, seg(1, 6)]]);
  });

  it('says which backups a missing segment keeps from which moment', () => {
    const index = archive([...range(1, 2, 3), ...range(1, 5, 6)]);
    const { problems } = checkWalCoverage(index, [a, b], layout);
    expect(problems).toEqual([
      {
        kind: 'missing-wal',
        key: `main/wal/00000001/${seg(1, 4)}.zst`,
        // Segment 5 was archived at 10:05: the first moment beyond the gap.
        detail: `backups 20240503T090000Z and 20240503T093000Z cannot reach 2024-05-03 10:05:00 UTC: segment ${seg(1, 4)} missing`,
        breaks: ['20240503T090000Z', '20240503T093000Z'],
      },
    ]);
  });

  it('tells a backup that cannot become consistent from one that cannot reach later moments', () => {
    const index = archive([seg(1, 2), ...range(1, 4, 6)]);
    const { problems } = checkWalCoverage(index, [a, b], layout);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.detail).toBe(
      `backup 20240503T093000Z cannot become consistent and backup 20240503T090000Z cannot reach 2024-05-03 10:04:00 UTC: segment ${seg(1, 3)} missing`,
    );
    expect(problems[0]!.breaks).toEqual(['20240503T090000Z', '20240503T093000Z']);
  });

  it('reports a run of missing segments once', () => {
    const index = archive([...range(1, 2, 3), ...range(1, 7, 8)]);
    const { problems } = checkWalCoverage(index, [a, b], layout);
    expect(problems.map((p) => p.detail)).toEqual([
      `backups 20240503T090000Z and 20240503T093000Z cannot reach 2024-05-03 10:07:00 UTC: segments ${seg(1, 4)} to ${seg(1, 6)} (3) missing`,
    ]);
  });

  it('splits a run where the backups it breaks change', () => {
    // Segments 2 and 3 missing: 2 is A's own, 3 is B's own and A's reach.
    const index = archive(range(1, 4, 5));
    const { problems } = checkWalCoverage(index, [a, b], layout);
    expect(problems.map((p) => p.detail)).toEqual([
      `backup 20240503T090000Z cannot become consistent: segment ${seg(1, 2)} missing`,
      `backup 20240503T093000Z cannot become consistent and backup 20240503T090000Z cannot reach 2024-05-03 10:04:00 UTC: segment ${seg(1, 3)} missing`,
    ]);
  });

  it('reports a backup whose WAL was never archived at all', () => {
    const { problems } = checkWalCoverage(archive([]), [a], layout);
    expect(problems.map((p) => p.detail)).toEqual([`backup 20240503T090000Z cannot become consistent: segment ${seg(1, 2)} missing`]);
  });

  it('follows a timeline switch: the switch segment comes from the new timeline', () => {
    const history = { 2: '1\t0/5000100\tno recovery target specified\n' };
    const files = [...range(1, 2, 4), `${seg(1, 5)}.partial`, ...range(2, 5, 7)];
    const index = archive(files, history);
    expect(index.paths.map((p) => p.timeline)).toEqual([2]);
    const report = checkWalCoverage(index, [a], layout);
    expect(report.problems).toEqual([]);
    expect(report.neededSegments).toBe(6);
    expect(walNeededOnPath(index, a, index.paths[0]).segments.map((s) => s.name)).toEqual([...range(1, 2, 4), ...range(2, 5, 7)]);

    const gap = archive(files.filter((f) => f !== seg(2, 6)), history);
    expect(checkWalCoverage(gap, [a], layout).problems.map((p) => p.detail)).toEqual([
      `backup 20240503T090000Z cannot reach 2024-05-03 10:07:00 UTC: segment ${seg(2, 6)} missing`,
    ]);
  });

  it('checks every timeline path through a backup, including a branch that died', () => {
    const histories = { 2: '1\t0/5000000\tfailover\n', 3: '1\t0/6000000\tsecond failover\n' };
    const healthy = archive([...range(1, 2, 5), seg(2, 5), ...range(3, 6, 7)], histories);
    expect(healthy.paths.map((p) => [p.timeline, p.end?.segment])).toEqual([
      [2, seg(2, 5)],
      [3, seg(3, 7)],
    ]);
    expect(checkWalCoverage(healthy, [a], layout).problems).toEqual([]);
    // Segment 1/4 serves both paths: one problem, not two.
    const broken = archive([...range(1, 2, 3), seg(1, 5), seg(2, 5), ...range(3, 6, 7)], histories);
    expect(checkWalCoverage(broken, [a], layout).problems.map((p) => p.detail)).toEqual([
      `backup 20240503T090000Z cannot reach 2024-05-03 10:05:00 UTC: segment ${seg(1, 4)} missing`,
    ]);
  });

  it('takes the moment a gap keeps out of reach only from backups that need WAL that far', () => {
    // Timeline 2 branches off at segment 5. Backup x claims timeline 1 but stops past the switch, so no stored path
    // holds it: it needs 1/2..1/6 on timeline 1 alone. Backup a lies on the path to 2 and reaches its end, 2/9.
    // Segments 1/3 to 1/7 are missing: for a the next archived one is 2/5; for x none it needs (1/8 is past its
    // stop, and is needed only by the later stray backup y), so 1/8's earlier arrival must not be used.
    const x = backup({ backupId: '20240503T091000Z', startLsn: '0/2000028', stopLsn: '0/6000100', timeline: 1 });
    const y = backup({ backupId: '20240503T092000Z', startLsn: '0/9000028', stopLsn: '0/9000100', timeline: 1 });
    const files = [seg(1, 2), seg(1, 8), seg(1, 9), ...range(2, 5, 9)].map((name) => ({
      name,
      // 1/8 arrived before 2/5.
      lastModified: name === seg(1, 8) ? archivedAt(1) : archivedAt(parseInt(name.slice(16), 16)),
    }));
    files.push({ name: '00000002.history', lastModified: archivedAt(0) });
    const index = buildWalIndex({ files, histories: new Map([[2, parseTimelineHistory(2, '1\t0/5000000\tfailover\n')]]), segmentSize: MIB16 });
    expect(checkWalCoverage(index, [a, x, y], layout).problems.map((p) => p.detail)).toEqual([
      `backup 20240503T091000Z cannot become consistent and backup 20240503T090000Z cannot reach 2024-05-03 10:05:00 UTC: segments ${seg(1, 3)} to ${seg(1, 4)} (2) missing`,
      `backup 20240503T091000Z cannot become consistent: segments ${seg(1, 5)} to ${seg(1, 6)} (2) missing`,
    ]);
  });

  it('reports a timeline whose history file is missing', () => {
    const index = archive([...range(1, 2, 4), ...range(2, 5, 6)]);
    const { problems } = checkWalCoverage(index, [a], layout);
    expect(problems).toEqual([
      {
        kind: 'missing-history',
        key: 'main/wal/00000002/00000002.history.zst',
        detail:
          'timeline 2 has WAL in the repository but no 00000002.history: recovery cannot follow it, so backup 20240503T090000Z cannot reach past the switch to it',
        breaks: ['20240503T090000Z'],
      },
    ]);
  });
});

describe('walNeededOnPath', () => {
  it('stops at untilLsn but never before the backup is consistent', () => {
    const index = archive(range(1, 2, 9));
    const path = index.paths[0];
    expect(walNeededOnPath(index, a, path, parseLsn('0/4000000')).segments.map((s) => [s.name, s.role])).toEqual([
      [seg(1, 2), 'consistency'],
      [seg(1, 3), 'reach'],
      [seg(1, 4), 'reach'],
    ]);
    expect(walNeededOnPath(index, b, path, parseLsn('0/1000000')).segments.map((s) => s.name)).toEqual([seg(1, 3)]);
    expect(walNeededOnPath(index, b, undefined).segments.map((s) => s.name)).toEqual([seg(1, 3)]);
  });
});

describe('timelineForSegment', () => {
  it('reads each segment from the newest timeline begun by then', () => {
    const history = parseTimelineHistory(3, '1\t0/5000100\ta\n2\t0/7000000\tb\n');
    expect([4, 5, 6, 7, 8].map((n) => timelineForSegment(history, BigInt(n), MIB16))).toEqual([1, 2, 2, 3, 3]);
    expect(timelineForSegment(rootTimelineHistory(), 100n, MIB16)).toBe(1);
  });
});
