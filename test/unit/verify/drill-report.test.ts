import { describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import { parseDrillReport, serializeDrillReport, type DrillReport } from '../../../src/verify/drill-report.js';
import { formatVerifyReport, type VerifyReport } from '../../../src/verify/verify-repository.js';

const report: DrillReport = {
  format: 1,
  drillId: '20240601T020000Z',
  cluster: 'main',
  backupId: '20240531T020000Z',
  target: 'latest (end of the archived WAL)',
  mode: 'newest',
  startedAt: '2024-06-01T02:00:00.000Z',
  finishedAt: '2024-06-01T02:03:10.000Z',
  rtoSeconds: 171.4,
  result: 'failed',
  wal: { ok: true, detail: 'all WAL the restore reads is archived (3 segments, A to C)' },
  checks: [{ name: 'orders', ok: false, detail: 'value 12 is not at least 1000' }],
  amcheck: { ok: true, detail: 'pg_amcheck --all found no corruption' },
  recovered: { timeline: 2, lsn: '0/7000060', lastTransactionAt: '2024-06-01T01:59:58.000Z' },
  error: 'check "orders" failed: value 12 is not at least 1000',
  failures: ['check "orders" failed: value 12 is not at least 1000'],
  host: 'db-1',
  pgdrVersion: '0.1.0',
};

describe('drill reports', () => {
  it('round-trip through their stored form', () => {
    expect(parseDrillReport(serializeDrillReport(report), report.drillId)).toEqual(report);
  });

  it('are refused when damaged, misplaced or of another shape', () => {
    expect(() => parseDrillReport(Buffer.from('{"format":'), report.drillId)).toThrow(RepositoryError);
    expect(() => parseDrillReport(serializeDrillReport(report), '20240602T020000Z')).toThrow(/names drill 20240601T020000Z/);
    const wrong = Buffer.from(JSON.stringify({ ...report, result: 'maybe' }));
    expect(() => parseDrillReport(wrong, report.drillId)).toThrow(/drill report 20240601T020000Z is invalid: result: /);
  });
});

describe('formatVerifyReport', () => {
  const base: VerifyReport = {
    ok: true,
    quick: false,
    checked: {
      backups: 2,
      invalidBackups: 0,
      incompleteBackups: 0,
      backupObjects: 2,
      bytesHashed: 2048,
      chains: 0,
      fileLists: 0,
      walFiles: 9,
      walSegmentsNeeded: 7,
      walSegmentsMissing: 0,
      timelinePaths: 1,
      etcdSnapshots: 1,
      drillReports: 3,
      objectsListed: 20,
      foreignObjects: 0,
      pendingWrites: 0,
    },
    problems: [],
    notes: [],
    objects: [],
    archiveEnd: { segment: '000000010000000000000009', archivedAt: '2024-06-01T02:00:00.000Z' },
    retention: null,
    timings: { listing: 0.1, manifests: 0.1, backupObjects: 2, wal: 0.2, rest: 0.1, total: 2.5 },
  };

  it('prints one line per problem, with what it breaks, and a verdict', () => {
    expect(formatVerifyReport(base).split('\n')).toEqual([
      'checked 2 backups (2 objects, 2048 bytes hashed), 9 WAL files on 1 timeline paths (7 segments needed), 1 etcd snapshots, 3 drill reports, 20 objects in all',
      'archive reaches 000000010000000000000009 (archived 2024-06-01T02:00:00.000Z)',
      'verify: OK, no problems found',
    ]);
    const broken: VerifyReport = {
      ...base,
      ok: false,
      problems: [
        { kind: 'missing-wal', key: 'k', detail: 'backups X and Y cannot reach 2024-05-03 10:00:00 UTC: segment S missing', breaks: ['X', 'Y'] },
      ],
    };
    const chained: VerifyReport = { ...base, checked: { ...base.checked, chains: 3, fileLists: 4 } };
    expect(formatVerifyReport(chained).split('\n')[0]).toMatch(/20 objects in all; 3 backup chains, 4 file lists read$/);
    expect(formatVerifyReport({ ...chained, quick: true }).split('\n')[0]).toMatch(/20 objects in all; 3 backup chains$/);
    expect(formatVerifyReport(broken).split('\n').slice(-2)).toEqual([
      'missing-wal: backups X and Y cannot reach 2024-05-03 10:00:00 UTC: segment S missing',
      'verify: 1 problem found',
    ]);
  });
});
