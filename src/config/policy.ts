import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { tryParseDuration } from './duration.js';

/**
 * The policy file: what `pgdr expire` keeps, the thresholds `pgdr health` alarms on, and the SQL checks
 * `pgdr drill` runs on a restored copy. One zod schema validates the YAML; every key has a default, so an empty file
 * (or no file at all) is the documented default policy in policies/default.yaml, and a file may name only the keys it
 * changes. policies/README.md describes every key.
 */

export { formatDuration, parseDuration, tryParseDuration } from './duration.js';

const durationSchema = z
  .string({ error: 'expected a duration such as 26h or 30d' })
  .refine((text) => tryParseDuration(text) !== undefined, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a duration: write a whole number and a unit (s, m, h, d, w), e.g. 26h or 30d`,
  })
  .transform((text) => tryParseDuration(text)!);

/** A duration with a default, parsed like any value the file gives (so defaults are written the same way). */
const duration = (fallback: string) => durationSchema.prefault(fallback);

const count = (fallback: number) =>
  z
    .number({ error: 'expected a whole number' })
    .int('expected a whole number')
    .min(0, 'must not be negative')
    .max(10_000, 'must be at most 10000')
    .default(fallback);

const tiers = (defaults: TierCounts) =>
  z
    .object({
      daily: count(defaults.daily),
      weekly: count(defaults.weekly),
      monthly: count(defaults.monthly),
      yearly: count(defaults.yearly),
    })
    .strict()
    .prefault({});

/** An age threshold pair: WARNING past `warning`, CRITICAL past `critical` (both in milliseconds). */
const ageThresholds = (warning: string, critical: string) =>
  z
    .object({ warning: duration(warning), critical: duration(critical) })
    .strict()
    .refine((t) => t.warning <= t.critical, { error: 'warning must not be longer than critical', path: ['warning'] })
    .prefault({});

const DrillExpectSchema = z
  .object({
    min: z.number({ error: 'expected a number' }).optional(),
    max: z.number({ error: 'expected a number' }).optional(),
    equals: z.union([z.string(), z.number(), z.boolean()], { error: 'expected a string, number or boolean' }).optional(),
    maxAgeSeconds: z.number({ error: 'expected a number of seconds' }).int('expected whole seconds').positive('must be positive').optional(),
  })
  .strict()
  .refine((e) => e.min !== undefined || e.max !== undefined || e.equals !== undefined || e.maxAgeSeconds !== undefined, {
    error: 'name at least one of min, max, equals, maxAgeSeconds',
  })
  .refine((e) => e.min === undefined || e.max === undefined || e.min <= e.max, { error: 'min must not be greater than max', path: ['min'] });

const DrillCheckSchema = z
  .object({
    name: z.string({ error: 'expected a name' }).regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$/, 'use letters, digits, space, dot, dash, underscore (at most 80)'),
    sql: z.string({ error: 'expected an SQL query' }).trim().min(1, 'must not be empty'),
    expect: DrillExpectSchema,
  })
  .strict();

export const PolicySchema = z
  .object({
    retention: z
      .object({
        backups: tiers({ daily: 7, weekly: 4, monthly: 12, yearly: 0 }),
        pitrWindow: duration('30d'),
        garbageGrace: duration('24h'),
        etcdSnapshots: tiers({ daily: 7, weekly: 4, monthly: 12, yearly: 0 }),
      })
      .strict()
      .prefault({}),
    health: z
      .object({
        backupAge: ageThresholds('26h', '48h'),
        walArchiveLag: z
          .object({
            warningSegments: count(8),
            criticalSegments: count(32),
            warning: duration('15m'),
            critical: duration('1h'),
          })
          .strict()
          .refine((t) => t.warningSegments <= t.criticalSegments, { error: 'warningSegments must not be more than criticalSegments', path: ['warningSegments'] })
          .refine((t) => t.warning <= t.critical, { error: 'warning must not be longer than critical', path: ['warning'] })
          .prefault({}),
        etcdSnapshotAge: ageThresholds('26h', '48h'),
        drillAge: ageThresholds('32d', '35d'),
      })
      .strict()
      .prefault({}),
    drill: z
      .object({
        amcheck: z.boolean({ error: 'expected true or false' }).default(true),
        checks: z
          .array(DrillCheckSchema, { error: 'expected a list of checks' })
          .default([])
          .refine((checks) => new Set(checks.map((c) => c.name)).size === checks.length, { error: 'check names must be unique' }),
      })
      .strict()
      .prefault({}),
    /** Job schedules for `pgdr schedule`; validated by src/schedule/config.ts, which owns their shape. */
    schedule: z.unknown().optional(),
  })
  .strict();

export interface TierCounts {
  /** Keep the newest backup of each of the newest N days (UTC) that have one. */
  daily: number;
  /** ... of each of the newest N ISO weeks (Monday to Sunday, UTC). */
  weekly: number;
  /** ... of each of the newest N calendar months (UTC). */
  monthly: number;
  /** ... of each of the newest N calendar years (UTC). */
  yearly: number;
}

export interface RetentionPolicy {
  backups: TierCounts;
  /** Milliseconds before "now" from which every moment must stay restorable. */
  pitrWindow: number;
  /** Milliseconds an interrupted backup's or snapshot's objects (no manifest) are left alone before expire removes them. */
  garbageGrace: number;
  etcdSnapshots: TierCounts;
}

/** Milliseconds: WARNING once an age passes `warning`, CRITICAL once it passes `critical`. */
export interface AgeThresholds {
  warning: number;
  critical: number;
}

export interface HealthPolicy {
  /** Age of the newest complete base backup. */
  backupAge: AgeThresholds;
  /**
   * How far the WAL archive may trail the server: in segments (the server's current WAL file against the newest
   * archived one) and in milliseconds (how long the archive has been behind).
   */
  walArchiveLag: AgeThresholds & { warningSegments: number; criticalSegments: number };
  /** Age of the newest complete etcd snapshot. */
  etcdSnapshotAge: AgeThresholds;
  /** Age of the newest restore drill (a failed newest drill is CRITICAL whatever its age). */
  drillAge: AgeThresholds;
}

export interface DrillExpectation {
  /** The query's single value must be a number at least this. */
  min?: number;
  /** ... at most this. */
  max?: number;
  /** ... equal to this (compared as text when the value is not a number or boolean). */
  equals?: string | number | boolean;
  /** The value is a timestamp no older than this many seconds, measured from the point the drill restored to. */
  maxAgeSeconds?: number;
}

export interface DrillCheck {
  name: string;
  /** One query returning one row with one column. */
  sql: string;
  expect: DrillExpectation;
}

export interface DrillPolicy {
  /** Run pg_amcheck on the restored copy. */
  amcheck: boolean;
  checks: DrillCheck[];
}

export interface Policy {
  retention: RetentionPolicy;
  health: HealthPolicy;
  drill: DrillPolicy;
}

// The interfaces above are what other modules read; this line fails to compile if the schema drifts from them.
const schemaMatchesPolicy: (parsed: z.output<typeof PolicySchema>) => Policy = (parsed) => parsed;
void schemaMatchesPolicy;

const HINT = 'see policies/README.md for every key; policies/default.yaml is the documented default';

/** Parses a policy from YAML text; `source` names the file in errors. */
export function parsePolicy(text: string, source: string): Policy {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const first = ((err as Error).message ?? '').split('\n')[0]?.replace(/:$/, '');
    throw new UsageError(`policy file ${source} is not valid YAML: ${first}`, 'fix the YAML syntax; policies/README.md describes the file', err);
  }
  // An empty file is the default policy.
  const result = PolicySchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    let path = issue.path;
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      path = [...issue.path, issue.keys[0] ?? '?'];
      message = 'unknown key';
    } else if (path.length === 0 && issue.code === 'invalid_type') {
      message = 'expected a mapping with retention:, health: and drill: sections';
    }
    const where = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i > 0 ? '.' : ''}${String(p)}`)).join('');
    throw new UsageError(`policy file ${source}: ${where || '(top level)'}: ${message}`, HINT);
  }
  return result.data;
}

/** The default policy (what policies/default.yaml says), as a fresh object the caller may change. */
export function defaultPolicy(): Policy {
  return PolicySchema.parse({});
}

/**
 * Reads and validates the policy file at `path` (--policy / PGDR_POLICY / `policy:` in the config file); without a
 * path, the defaults.
 */
export function loadPolicy(path?: string): Policy {
  if (path === undefined || path === '') return defaultPolicy();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read policy file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'check the --policy path (or PGDR_POLICY)', err);
  }
  return parsePolicy(text, path);
}
