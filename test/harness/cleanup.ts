import { rmSync } from 'node:fs';

/**
 * Every server a test starts registers how to stop it here, so it is stopped even when a test fails, a hook
 * times out or the worker exits. Tests still stop servers in afterAll; this is the safety net.
 */
type Stopper = () => Promise<void> | void;

const stoppers = new Map<number, { name: string; stop: Stopper; sync?: () => void }>();
let nextId = 1;
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // On process exit only synchronous work runs: kill what is left and remove temp directories.
  process.on('exit', () => {
    for (const entry of stoppers.values()) {
      try {
        entry.sync?.();
      } catch {
        // best effort while exiting
      }
    }
  });
}

/**
 * Registers a stopper; returns a function that unregisters it (call it once the server was stopped normally).
 * `sync` must not be async: it runs from process.on('exit'), e.g. process.kill(pid, 'SIGKILL').
 */
export function registerCleanup(name: string, stop: Stopper, sync?: () => void): () => void {
  hookExit();
  const id = nextId++;
  stoppers.set(id, { name, stop, sync });
  return () => {
    stoppers.delete(id);
  };
}

/** Stops everything still registered (used by vitest's afterAll in integration files). */
export async function stopAll(): Promise<void> {
  const entries = [...stoppers.entries()].reverse();
  for (const [id, entry] of entries) {
    stoppers.delete(id);
    try {
      await entry.stop();
    } catch (err) {
      process.stderr.write(`cleanup of ${entry.name} failed: ${(err as Error).message}\n`);
    }
  }
}

export function killQuietly(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function removeDirQuietly(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}
