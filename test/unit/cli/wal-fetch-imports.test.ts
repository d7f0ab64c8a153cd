import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src');

/** Every npm package a module loads at start-up, following its static (non-type) imports through pgdr's own modules. */
function packagesLoadedBy(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>([entry]);
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gm)) {
      const spec = match[1]!;
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        continue;
      }
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      if (!existsSync(target) || seen.has(target)) continue;
      seen.add(target);
      queue.push(target);
    }
  }
  return packages;
}

describe('what `wal fetch` loads before it fetches', () => {
  // PostgreSQL runs restore_command once per WAL file and once per timeline history file it probes for; each of
  // these packages costs a run 20-170 ms to load (0.5 s with all of them, 0.1 s without, for a file not there).
  it('its lean entry loads none of the command-line, schema, process or etcd packages', () => {
    const loaded = packagesLoadedBy(resolve(SRC, 'cli/wal-fetch.ts'));
    for (const heavy of ['commander', 'zod', 'yaml', 'execa', 'etcd3', 'pg', '@aws-sdk/client-s3', 'age-encryption', 'cli-progress']) {
      expect(loaded, heavy).not.toContain(heavy);
    }
  });
});
