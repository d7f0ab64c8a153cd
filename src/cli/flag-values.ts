import { UsageError } from '../errors.js';

/**
 * A flag given in seconds (--lock-wait, --timeout, ...): a finite number, at least 0, or above 0 where a zero would
 * mean "give up at once" for something that cannot finish in no time. `example` is the value the hint suggests.
 */
export function secondsFlag(flag: string, value: string, options: { positive: boolean; example: number }): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (options.positive && n === 0)) {
    throw new UsageError(
      `${flag} must be a ${options.positive ? 'positive ' : ''}number of seconds, got ${JSON.stringify(value)}`,
      `e.g. ${flag} ${options.example}`,
    );
  }
  return n;
}
