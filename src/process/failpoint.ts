import { existsSync } from 'node:fs';

/**
 * Named points where pgdr can be made to stop, so that the fault suite kills it (kill -9) at exactly that step of a
 * write: after a temp file is written but before it becomes an object, between a backup's data and its manifest,
 * between the two renames of a restore's swap. Set PGDR_FAILPOINT to a point's name (and optionally
 * PGDR_FAILPOINT_MATCH to a text its detail must contain, e.g. a key); the process then says so on stderr and waits
 * to be killed, or, with PGDR_FAILPOINT_RELEASE naming a file, until that file exists (a test changes the database
 * while a backup is paused mid-file, then lets it go on). Unset, a failpoint costs one environment lookup.
 */
export async function failpoint(name: string, detail = ''): Promise<void> {
  const wanted = process.env.PGDR_FAILPOINT;
  if (wanted === undefined || wanted !== name) return;
  const match = process.env.PGDR_FAILPOINT_MATCH;
  if (match !== undefined && !detail.includes(match)) return;
  const release = process.env.PGDR_FAILPOINT_RELEASE;
  process.stderr.write(`pgdr: failpoint ${name} reached${detail ? ` (${detail})` : ''}; ${release ? `waiting for ${release}` : 'waiting to be killed'}\n`);
  if (release) {
    while (!existsSync(release)) await new Promise((resolve) => setTimeout(resolve, 50));
    return;
  }
  await new Promise<never>(() => {
    // Keeps the event loop alive until the test kills the process.
    setInterval(() => undefined, 1 << 30);
  });
}
