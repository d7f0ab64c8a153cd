import { UsageError } from '../errors.js';

/**
 * Durations as pgdr's settings and policies write them ("26h", "30d", "1d12h"). Apart from the policy schema because
 * settings need them too, and the settings of a `wal push` are resolved without loading YAML or zod.
 */

const MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
type DurationUnit = keyof typeof MS;
// One or more "<integer><unit>" parts, largest unit first by convention but not by rule: "30d", "26h", "1d12h".
const DURATION = /^(?:\d+[smhdw])+$/;
const DURATION_PART = /(\d+)([smhdw])/g;
/** Upper bound that keeps the arithmetic exact and catches a typo like "30000000d". */
const MAX_DURATION_MS = 100 * 366 * MS.d;

/**
 * A duration written as "26h", "30d", "35d", "90m", "2w" or a sum like "1d12h", in milliseconds. Months and years
 * are not units on purpose: they have no fixed length, and "m" is minutes. Returns undefined for anything else.
 */
export function tryParseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(DURATION_PART)) {
    total += Number(match[1]) * MS[match[2] as DurationUnit];
  }
  return Number.isSafeInteger(total) && total <= MAX_DURATION_MS ? total : undefined;
}

/** Like tryParseDuration, but an unreadable duration is a usage error naming `what`. */
export function parseDuration(text: string, what = 'duration'): number {
  const ms = tryParseDuration(text);
  if (ms === undefined) {
    throw new UsageError(
      `${what} ${JSON.stringify(text)} is not a duration`,
      'write a whole number and a unit: s, m (minutes), h, d or w, e.g. 26h, 30d, 1d12h',
    );
  }
  return ms;
}

/** The shortest exact text for a duration in milliseconds, e.g. 93_600_000 → "1d2h"; "0s" for zero. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms / 1000) * 1000;
  let text = '';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const count = Math.floor(rest / MS[unit]);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * MS[unit];
  }
  return text || '0s';
}
