import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../src/errors.js';
import { runCommand, startCommand } from '../../../src/process/run-command.js';

describe('runCommand', () => {
  it('returns stdout byte for byte, input included, and stderr', async () => {
    const input = Buffer.from([0, 1, 2, 0x0a, 0xff, 0x0a]);
    const { stdout } = await runCommand('cat', [], { input });
    expect(stdout.equals(input)).toBe(true);
    const { stderr } = await runCommand('sh', ['-c', 'echo note >&2']);
    expect(stderr).toBe('note\n');
  });

  it("fails with the command's last stderr line, its hint, and the exit code on the cause", async () => {
    const err = await runCommand('sh', ['-c', 'echo first >&2; echo "  last words  " >&2; exit 7'], { label: 'tool', hint: 'do this' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).message).toBe('tool failed: last words');
    expect((err as ServiceError).hint).toBe('do this');
    expect(((err as ServiceError).cause as { exitCode: number }).exitCode).toBe(7);
    const silent = await runCommand('sh', ['-c', 'exit 3'], { label: 'quiet' }).catch((e: unknown) => e);
    expect((silent as Error).message).toBe('quiet failed: exited with code 3');
  });

  it('says when the program cannot start', async () => {
    const err = await runCommand('/nonexistent/pgdr-test-tool', [], { label: 'tool' }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^tool failed: could not start \(.*ENOENT/);
  });

  it('gives up after the timeout, and stops a command on request', async () => {
    const started = Date.now();
    const err = await runCommand('sleep', ['30'], { label: 'sleep', timeoutMs: 200 }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('sleep failed: timed out after 200 ms');
    expect(Date.now() - started).toBeLessThan(5000);
    const running = startCommand('sleep', ['30'], { label: 'sleep' });
    running.kill();
    await expect(running.result).rejects.toThrow('sleep failed: was stopped by pgdr');
  });

  it('is not disturbed by a kill after it has finished', async () => {
    const running = startCommand('echo', ['done']);
    expect((await running.result).stdout.toString()).toBe('done\n');
    running.kill();
  });
});

describe('startCommand', () => {
  it('keeps a failure for whoever awaits the result later, without an unhandled rejection meanwhile', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const running = startCommand('sh', ['-c', 'echo gone >&2; exit 1'], { label: 'early' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await expect(running.result).rejects.toThrow('early failed: gone');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
