import { describe, expect, it } from 'vitest';
import { runOrdered } from '../../../src/restore/ordered-tasks.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Task {
  name: string;
  ms: number;
  after: Task[];
}

function task(name: string, ms: number, after: Task[] = []): Task {
  return { name, ms, after };
}

describe('runOrdered', () => {
  it('starts a task only once those it comes after are done, and takes a later ready task instead of waiting', async () => {
    const a = task('a', 40);
    const b = task('b', 5);
    const c = task('c', 5, [a]);
    const d = task('d', 5, [b]);
    const events: string[] = [];
    let running = 0;
    let most = 0;
    await runOrdered([a, b, c, d], 2, (t) => t.after, async (t) => {
      running++;
      most = Math.max(most, running);
      events.push(`start ${t.name}`);
      await tick(t.ms);
      events.push(`end ${t.name}`);
      running--;
    });
    expect(most).toBe(2);
    // d (after b) runs while a is still going; c waits for a.
    expect(events.indexOf('start d')).toBeLessThan(events.indexOf('end a'));
    expect(events.indexOf('start c')).toBeGreaterThan(events.indexOf('end a'));
    expect(events.filter((e) => e.startsWith('end')).sort()).toEqual(['end a', 'end b', 'end c', 'end d']);
  });

  it('after a failure starts nothing more, lets the running ones finish, and throws that failure', async () => {
    const a = task('a', 1);
    const b = task('b', 30);
    const c = task('c', 1, [a]);
    const started: string[] = [];
    let bFinished = false;
    await expect(
      runOrdered([a, b, c], 2, (t) => t.after, async (t) => {
        started.push(t.name);
        await tick(t.ms);
        if (t.name === 'a') throw new Error('object a is damaged');
        if (t.name === 'b') bFinished = true;
      }),
    ).rejects.toThrow('object a is damaged');
    expect(started).toEqual(['a', 'b']);
    expect(bFinished).toBe(true);
  });

  it('refuses an order that could never start', async () => {
    const a = task('a', 1);
    const b = task('b', 1, [a]);
    await expect(runOrdered([b, a], 2, (t) => t.after, async () => undefined)).rejects.toThrow(/listed later/);
    await expect(runOrdered([b], 2, (t) => t.after, async () => undefined)).rejects.toThrow(/not in the list/);
  });

  it('runs nothing for no tasks, and one at a time with a limit of 1', async () => {
    await runOrdered([], 2, () => [], async () => undefined);
    const order: string[] = [];
    const a = task('a', 5);
    const b = task('b', 1);
    await runOrdered([a, b], 1, (t) => t.after, async (t) => {
      order.push(`start ${t.name}`);
      await tick(t.ms);
      order.push(`end ${t.name}`);
    });
    expect(order).toEqual(['start a', 'end a', 'start b', 'end b']);
  });
});
