import { describe, expect, it } from 'vitest';
import { mapConcurrently } from '../../../src/repo/concurrent-reads.js';

/** A task each caller finishes by hand, so the test sees exactly what is in flight at every step. */
function gate() {
  const waiting = new Map<number, () => void>();
  return {
    run: (i: number) => new Promise<number>((resolve) => waiting.set(i, () => resolve(i * 10))),
    inFlight: () => [...waiting.keys()],
    finish(i: number) {
      waiting.get(i)!();
      waiting.delete(i);
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('mapConcurrently', () => {
  it('keeps at most `limit` running and returns results in the items order, whatever order they finish in', async () => {
    const g = gate();
    const done = mapConcurrently([0, 1, 2, 3, 4], 2, g.run);
    await settle();
    expect(g.inFlight()).toEqual([0, 1]);
    g.finish(1);
    await settle();
    expect(g.inFlight()).toEqual([0, 2]);
    g.finish(2);
    await settle();
    g.finish(0);
    await settle();
    expect(g.inFlight().sort()).toEqual([3, 4]);
    g.finish(4);
    g.finish(3);
    expect(await done).toEqual([0, 10, 20, 30, 40]);
  });

  it('starts nothing new after a failure and throws it once the running ones settle', async () => {
    const started: number[] = [];
    const failure = new Error('storage went away');
    const result = mapConcurrently([0, 1, 2, 3, 4, 5], 2, async (i) => {
      started.push(i);
      await settle();
      if (i === 1) throw failure;
      return i;
    });
    await expect(result).rejects.toBe(failure);
    expect(started.length).toBeLessThan(6);
  });

  it('handles no items and a limit larger than the list', async () => {
    expect(await mapConcurrently([], 16, async (i: number) => i)).toEqual([]);
    expect(await mapConcurrently([1, 2], 16, async (i) => i + 1)).toEqual([2, 3]);
  });
});
