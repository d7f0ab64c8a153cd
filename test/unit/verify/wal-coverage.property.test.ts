import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLsn } from '../../../src/postgres/lsn.js';
import type { TimelineHistory } from '../../../src/postgres/timeline-history.js';
import { formatWalSegmentName, historyFileName, walSegmentFromNumber } from '../../../src/postgres/wal-file-name.js';
import { buildWalIndex, checkWalCoverage, type ArchivedWalObject, type BackupWalFacts, type WalArchiveListing } from '../../../src/verify/wal-coverage.js';
import { oracleBuildWalIndex, oracleCheckWalCoverage } from './wal-coverage-oracle.js';
import { layout } from './fixtures.js';

/**
 * The coverage check walks each path once over segment numbers; the oracle (pgdr 0.1.0's check, kept in
 * wal-coverage-oracle.ts) spells out every segment of every backup. On random histories both must report the same
 * problems, in the same order, naming the same backups, and count the same segments.
 */

interface History {
  /** Timelines 1..count; each later one branches off an earlier one. */
  branches: { parent: number; switchSegment: number; switchOffset: number }[];
  /** Per timeline: present, missing entirely, or unreadable .history file. */
  historyState: ('present' | 'missing' | 'unreadable')[];
  /** Per timeline: which segment numbers are archived, each with an archive time. */
  segments: { n: number; minute: number }[][];
  extras: { timeline: number; n: number; kind: 'partial' | 'backup' }[];
  backups: { timeline: number; startSegment: number; startOffset: number; length: number; stopOffset: number }[];
  segmentSize: number;
}

const MAX_SEGMENT = 40;

const historyArbitrary: fc.Arbitrary<History> = fc
  .record({
    timelines: fc.integer({ min: 1, max: 4 }),
    segmentSize: fc.constantFrom(16 * 1024 * 1024, 1024 * 1024 * 1024),
  })
  .chain(({ timelines, segmentSize }) =>
    fc.record({
      segmentSize: fc.constant(segmentSize),
      branches: fc.array(
        fc.record({
          parent: fc.nat(),
          switchSegment: fc.integer({ min: 0, max: MAX_SEGMENT }),
          // Often exactly on a segment boundary: the switch segment then starts the new timeline.
          switchOffset: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffff })),
        }),
        { minLength: timelines - 1, maxLength: timelines - 1 },
      ),
      historyState: fc.array(fc.constantFrom<'present' | 'missing' | 'unreadable'>('present', 'present', 'present', 'present', 'missing', 'unreadable'), {
        minLength: timelines,
        maxLength: timelines,
      }),
      segments: fc.array(
        fc.oneof(
          // Mostly complete with a few holes, or sparse.
          fc.array(fc.record({ n: fc.integer({ min: 0, max: MAX_SEGMENT }), minute: fc.integer({ min: 0, max: 600 }) }), { maxLength: 45 }),
          fc.array(fc.record({ n: fc.integer({ min: 0, max: MAX_SEGMENT }), minute: fc.integer({ min: 0, max: 600 }) }), { maxLength: 8 }),
        ),
        { minLength: timelines, maxLength: timelines },
      ),
      extras: fc.array(
        fc.record({ timeline: fc.integer({ min: 1, max: timelines }), n: fc.integer({ min: 0, max: MAX_SEGMENT }), kind: fc.constantFrom<'partial' | 'backup'>('partial', 'backup') }),
        { maxLength: 3 },
      ),
      backups: fc.array(
        fc.record({
          timeline: fc.integer({ min: 1, max: timelines + 1 }),
          startSegment: fc.integer({ min: 0, max: MAX_SEGMENT + 3 }),
          startOffset: fc.integer({ min: 0, max: 0xffff }),
          length: fc.integer({ min: 0, max: 3 }),
          stopOffset: fc.integer({ min: 0, max: 0xffff }),
        }),
        { maxLength: 7 },
      ),
    }),
  );

function segmentName(timeline: number, n: number, segmentSize: number): string {
  return formatWalSegmentName(walSegmentFromNumber(timeline, BigInt(n), segmentSize));
}

/** The listing and backups a random history describes, in the shape verify hands to both checks. */
function materialize(h: History): { listing: WalArchiveListing; backups: BackupWalFacts[] } {
  const size = BigInt(h.segmentSize);
  const histories = new Map<number, TimelineHistory>();
  const built: TimelineHistory[] = [{ timeline: 1, entries: [] }];
  h.branches.forEach((branch, i) => {
    const timeline = i + 2;
    const parent = built[branch.parent % built.length]!;
    const lastSwitch = parent.entries.at(-1)?.switchLsn ?? 0n;
    let switchLsn = BigInt(branch.switchSegment) * size + BigInt(branch.switchOffset);
    if (switchLsn < lastSwitch) switchLsn = lastSwitch;
    built.push({ timeline, entries: [...parent.entries, { timeline: parent.timeline, switchLsn, reason: 'failover' }] });
  });
  const files: ArchivedWalObject[] = [];
  const unreadable = new Set<number>();
  const base = Date.UTC(2024, 4, 3, 0, 0, 0);
  built.forEach((history, i) => {
    const timeline = i + 1;
    if (timeline > 1) {
      const state = h.historyState[i];
      if (state !== 'missing') files.push({ name: historyFileName(timeline), lastModified: new Date(base) });
      if (state === 'present') histories.set(timeline, history);
      if (state === 'unreadable') unreadable.add(timeline);
    }
    const seen = new Set<number>();
    for (const { n, minute } of h.segments[i]!) {
      if (seen.has(n)) continue;
      seen.add(n);
      files.push({ name: segmentName(timeline, n, h.segmentSize), lastModified: new Date(base + minute * 60_000 + n) });
    }
  });
  for (const extra of h.extras) {
    const name = segmentName(extra.timeline, extra.n, h.segmentSize);
    files.push({ name: extra.kind === 'partial' ? `${name}.partial` : `${name}.00000028.backup`, lastModified: new Date(base) });
  }
  // A name foreign to the archive is skipped by both.
  files.push({ name: 'README', lastModified: new Date(base) });

  const backups = h.backups.map((b, i): BackupWalFacts => {
    const start = BigInt(b.startSegment) * size + BigInt(b.startOffset);
    const stop = BigInt(b.startSegment + b.length) * size + BigInt(b.stopOffset);
    return {
      backupId: `20240503T${String(10 + i).padStart(2, '0')}0000Z`,
      timeline: b.timeline,
      startLsn: formatLsn(start),
      stopLsn: formatLsn(stop < start ? start : stop),
    };
  });
  return { listing: { files, histories, unreadableHistories: unreadable, segmentSize: h.segmentSize }, backups };
}

describe('checkWalCoverage against the per-segment oracle', () => {
  it('reports the same problems, naming the same backups, on random histories', { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(historyArbitrary, (h) => {
        const { listing, backups } = materialize(h);
        const index = buildWalIndex(listing);
        const oracleIndex = oracleBuildWalIndex(listing);
        expect(index.paths.map((p) => [p.timeline, p.end?.segment, p.end?.archivedAt.toISOString()])).toEqual(
          oracleIndex.paths.map((p) => [p.timeline, p.end?.segment, p.end?.archivedAt.toISOString()]),
        );
        expect(index.timelinesWithoutHistory).toEqual(oracleIndex.timelinesWithoutHistory);
        const actual = checkWalCoverage(index, backups, layout);
        const expected = oracleCheckWalCoverage(oracleIndex, backups, layout);
        expect(actual.problems).toEqual(expected.problems);
        expect({ needed: actual.neededSegments, missing: actual.missingSegments }).toEqual({
          needed: expected.neededSegments,
          missing: expected.missingSegments,
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('finds gaps in the generated histories often enough to mean something', () => {
    // The property above proves little if the generator rarely produces a gap that breaks a backup.
    let withGaps = 0;
    let acrossTimelines = 0;
    fc.assert(
      fc.property(historyArbitrary, (h) => {
        const { listing, backups } = materialize(h);
        const problems = oracleCheckWalCoverage(oracleBuildWalIndex(listing), backups, layout).problems.filter((p) => p.kind === 'missing-wal');
        if (problems.length > 0) withGaps++;
        const runs = problems.map((p) => /segments ([0-9A-F]{8})[0-9A-F]{16} to ([0-9A-F]{8})/.exec(p.detail)).filter((m) => m !== null);
        if (runs.some((m) => m[1] !== m[2])) acrossTimelines++;
      }),
      { numRuns: 400, seed: 11 },
    );
    expect(withGaps).toBeGreaterThan(100);
    expect(acrossTimelines).toBeGreaterThan(0);
  });
});
