import { existsSync, rmSync } from 'node:fs';

/**
 * The bench starts PostgreSQL servers and fills temp directories with gigabytes; every one of them must go away
 * when the run ends, fails, or is interrupted with Ctrl-C. Each resource registers how to undo itself here, and
 * `runWithCleanup` undoes them in reverse order whatever happens.
 */
type Undo = () => Promise<void> | void;

interface Entry {
  name: string;
  undo: Undo;
  /** Synchronous last resort for process 'exit' (SIGKILL a pid, rm -rf a dir). */
  sync: (() => void) | undefined;
}

const entries: Entry[] = [];
let hooked = false;
let interrupted = false;

function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, cleaning up...\n`);
    void undoAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    for (const entry of entries.splice(0).reverse()) {
      try {
        entry.sync?.();
      } catch {
        // best effort while the process is exiting
      }
    }
  });
}

/** Registers an undo action; the returned function runs it now (once) and unregisters it. */
export function onCleanup(name: string, undo: Undo, sync?: () => void): () => Promise<void> {
  hookSignals();
  const entry: Entry = { name, undo, sync };
  entries.push(entry);
  return async () => {
    const index = entries.indexOf(entry);
    if (index < 0) return;
    entries.splice(index, 1);
    await undo();
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Removes `dir`, then once more a moment later in case a straggling child (an archive_command) recreated it. */
export async function removeDirSettled(dir: string): Promise<void> {
  removeDir(dir);
  await new Promise((r) => setTimeout(r, 500));
  if (existsSync(dir)) removeDir(dir);
}

async function undoAll(): Promise<void> {
  while (entries.length > 0) {
    const entry = entries.pop()!;
    try {
      await entry.undo();
    } catch (err) {
      process.stderr.write(`bench: cleanup of ${entry.name} failed: ${(err as Error).message}\n`);
    }
  }
}

/** Runs `main`, then undoes everything registered, also when `main` throws. Returns the process exit code. */
export async function runWithCleanup(main: () => Promise<void>): Promise<number> {
  hookSignals();
  let code = 0;
  try {
    await main();
  } catch (err) {
    code = 1;
    const e = err as Error & { stderr?: unknown };
    process.stderr.write(`bench failed: ${e.stack ?? e.message}\n`);
  } finally {
    await undoAll();
  }
  return code;
}
