import { describe, expect, it } from 'vitest';
import { startWriteback } from '../../../src/os/sync.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('startWriteback', () => {
  it('syncs every path again and again until stopped, and stop waits for the sync under way', async () => {
    const calls: string[] = [];
    let inFlight = 0;
    const writeback = startWriteback(['/a', '/b'], 5, async (path) => {
      inFlight++;
      calls.push(path);
      await tick(2);
      inFlight--;
    });
    await tick(60);
    await writeback.stop();
    expect(inFlight).toBe(0);
    expect(calls.length).toBeGreaterThanOrEqual(4);
    expect(calls.slice(0, 4)).toEqual(['/a', '/b', '/a', '/b']);
    const after = calls.length;
    await tick(30);
    expect(calls.length).toBe(after);
  });

  it('keeps the first failure, stops syncing, and reports it from stop (the final sync would not see it again)', async () => {
    let calls = 0;
    const writeback = startWriteback(['/a'], 1, async () => {
      calls++;
      if (calls === 2) throw new Error('sync --file-system failed: Input/output error');
    });
    await tick(40);
    expect(calls).toBe(2);
    await expect(writeback.stop()).rejects.toThrow(/Input\/output error/);
  });

  it('stop does not wait out the pause between syncs', async () => {
    const writeback = startWriteback(['/a'], 60_000, async () => undefined);
    await tick(5);
    const started = Date.now();
    await writeback.stop();
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
