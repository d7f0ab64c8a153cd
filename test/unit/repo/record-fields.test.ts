import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseClusterInfo } from '../../../src/repo/cluster-info.js';
import { isUtcTimestamp } from '../../../src/repo/record-fields.js';
import { parseStoreProbe } from '../../../src/repo/store-probe.js';

/**
 * cluster.json and the store probe record used to be checked with these zod schemas; `wal push` now checks them by
 * hand (src/repo/record-fields.ts) so as not to load zod. The hand checks must accept and refuse exactly what the
 * schemas did.
 */
const ClusterInfoSchema = z.object({
  format: z.literal(1),
  cluster: z.string().min(1),
  systemIdentifier: z.string().regex(/^\d+$/),
  pgMajor: z.number().int().positive(),
  created: z.iso.datetime(),
});
const StoreProbeSchema = z.object({
  format: z.literal(1),
  conditionalWrites: z.enum(['honoured', 'ignored']),
  probedAt: z.iso.datetime(),
  location: z.string(),
  pgdrVersion: z.string(),
});

const digits = (n: number, max: number) => fc.integer({ min: 0, max }).map((v) => String(v).padStart(n, '0'));
/** Timestamps near and across the edges of valid: month 13, day 31 of a short month, Feb 29 of every kind of year, 24:00, offsets. */
const timestampLike = fc
  .tuple(
    fc.oneof(digits(4, 9999), fc.constantFrom('2000', '1900', '2100', '2024', '2026', '0000', '0400')),
    fc.oneof(digits(2, 13), fc.constantFrom('02', '04', '12')),
    fc.oneof(digits(2, 32), fc.constantFrom('28', '29', '30', '31')),
    digits(2, 25),
    digits(2, 61),
    fc.option(digits(2, 61), { nil: undefined, freq: 5 }),
    fc.option(fc.stringMatching(/^\.\d{0,4}$/), { nil: undefined }),
    fc.oneof({ weight: 6, arbitrary: fc.constant('Z') }, { weight: 1, arbitrary: fc.constantFrom('', '+00:00', 'z', 'Z ') }),
  )
  .map(([y, mo, d, h, mi, s, frac, zone]) => `${y}-${mo}-${d}T${h}:${mi}${s === undefined ? '' : `:${s}`}${frac ?? ''}${zone}`);
const anyValue = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.integer(), { maxLength: 2 }));

describe('record field checks against the zod schemas they replace', () => {
  it('accepts exactly the timestamps z.iso.datetime() accepts', () => {
    const schema = z.iso.datetime();
    fc.assert(
      fc.property(fc.oneof(timestampLike, fc.string()), (text) => {
        expect(isUtcTimestamp(text)).toBe(schema.safeParse(text).success);
      }),
      { numRuns: 5000 },
    );
    expect(isUtcTimestamp(new Date().toISOString())).toBe(true);
    expect(isUtcTimestamp('2028-02-29T00:00:00Z')).toBe(true);
    expect(isUtcTimestamp('2026-02-29T00:00:00Z')).toBe(false);
  });

  it('reads cluster.json as the schema did: the same records accepted, unknown keys dropped, the rest refused', () => {
    const field = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: anyValue });
    const record = fc.record(
      {
        format: field(fc.constant(1)),
        cluster: field(fc.constantFrom('main', 'orders', '')),
        systemIdentifier: field(fc.constantFrom('7300000000000000001', '73x', '', '1')),
        pgMajor: field(fc.constantFrom(15, 16, 0, -1, 15.5, 2 ** 53)),
        created: field(timestampLike),
        extra: fc.string(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(record, (value) => {
        const expected = ClusterInfoSchema.safeParse(value);
        let got: unknown;
        try {
          got = parseClusterInfo(Buffer.from(JSON.stringify(value)), 'c/cluster.json');
        } catch (err) {
          expect(expected.success, `refused ${JSON.stringify(value)}: ${(err as Error).message}`).toBe(false);
          expect((err as Error).message).toMatch(/^c\/cluster\.json is not a pgdr cluster file: /);
          return;
        }
        expect(expected.success).toBe(true);
        expect(got).toEqual(expected.data);
      }),
      { numRuns: 3000 },
    );
  });

  it('reads the store probe record as the schema did', () => {
    const field = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: anyValue });
    const record = fc.record(
      {
        format: field(fc.constant(1)),
        conditionalWrites: field(fc.constantFrom('honoured', 'ignored', 'maybe')),
        probedAt: field(timestampLike),
        location: field(fc.string()),
        pgdrVersion: field(fc.constantFrom('0.1.0', '')),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(record, (value) => {
        const expected = StoreProbeSchema.safeParse(value);
        expect(parseStoreProbe(JSON.stringify(value))).toEqual(expected.success ? expected.data : null);
      }),
      { numRuns: 3000 },
    );
    expect(parseStoreProbe('not json')).toBeNull();
  });
});
