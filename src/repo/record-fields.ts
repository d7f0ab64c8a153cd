/**
 * Field checks for the small JSON records that `wal push` reads on every call (cluster.json, the store probe). They
 * are checked by hand rather than with zod: loading zod costs a cold `wal push` more time than compressing a segment
 * (docs/benchmarks.md, "Where the time of a push goes"). The unit tests hold them to what the zod schemas accepted.
 */

/** A plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const UTC_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?Z$/;

/**
 * A UTC time in ISO 8601 as Date.prototype.toISOString writes it (seconds required, any fraction, `Z`), with a real
 * calendar date: 2026-02-29 is refused, 2028-02-29 accepted.
 */
export function isUtcTimestamp(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = UTC_TIMESTAMP.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return daysInMonth !== undefined && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59;
}

/** What is wrong with `value` as a field of the given kind, or undefined when nothing is. */
export type FieldCheck = (value: unknown) => string | undefined;

export const nonEmptyString: FieldCheck = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'expected a non-empty string');
export const anyString: FieldCheck = (v) => (typeof v === 'string' ? undefined : 'expected a string');
export const positiveInteger: FieldCheck = (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? undefined : 'expected a positive integer');
export const utcTimestamp: FieldCheck = (v) => (isUtcTimestamp(v) ? undefined : 'expected a UTC timestamp such as 2026-11-23T10:00:00.000Z');
export const oneOf =
  (...allowed: readonly unknown[]): FieldCheck =>
  (v) =>
    allowed.includes(v) ? undefined : `expected ${allowed.map((a) => JSON.stringify(a)).join(' or ')}`;
export const matching =
  (pattern: RegExp, what: string): FieldCheck =>
  (v) =>
    typeof v === 'string' && pattern.test(v) ? undefined : `expected ${what}`;

/**
 * Checks `value` against `fields` and returns a copy holding only those fields (unknown keys are dropped, as zod's
 * object schemas drop them), or the first problem as "field: what was expected".
 */
export function checkRecord<T>(value: unknown, fields: { [K in keyof T]: FieldCheck }): { ok: true; value: T } | { ok: false; problem: string } {
  if (!isRecord(value)) return { ok: false, problem: '(top level): expected an object' };
  const out: Record<string, unknown> = {};
  for (const [name, check] of Object.entries(fields) as [string, FieldCheck][]) {
    const problem = check(value[name]);
    if (problem !== undefined) return { ok: false, problem: `${name}: ${problem}` };
    out[name] = value[name];
  }
  return { ok: true, value: out as T };
}
