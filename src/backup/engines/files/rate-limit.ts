import type { RateLimiter } from '../../../postgres/page-reader.js';

/**
 * `--max-rate` for the files engine: all workers together read at most this many bytes a second (the basebackup
 * engine passes the same flag to the server, which throttles its own sending). The reader threads take from it.
 */
export type { RateLimiter };

export const unlimited: RateLimiter = { take: async () => undefined };

/** `--max-rate` as pg_basebackup takes it: kB/s, or with a k or M suffix. */
export function parseMaxRate(rate: string): number {
  const match = /^(\d+)([kM]?)$/.exec(rate);
  if (!match) throw new RangeError(`not a rate: ${rate}`);
  return Number(match[1]) * (match[2] === 'M' ? 1024 * 1024 : 1024);
}

export function rateLimiter(bytesPerSecond: number, clock: () => number = () => performance.now()): RateLimiter {
  // Each byte is given its time slot; a caller waits until its slot has come.
  let next = clock();
  return {
    async take(bytes) {
      const now = clock();
      const start = Math.max(next, now);
      next = start + (bytes / bytesPerSecond) * 1000;
      const wait = start - now;
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    },
  };
}
