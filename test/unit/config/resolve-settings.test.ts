import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../../src/config/resolve-settings.js';
import { resolveSettings } from '../../../src/config/settings.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('loadSettings (the settings of wal push, YAML and schema loaded only with a config file)', () => {
  it('resolves as resolveSettings does, with and without a config file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-settings-'));
    dirs.push(dir);
    const config = join(dir, 'pgdr.yaml');
    writeFileSync(config, 'repo: file:///from-file\ncluster: filed\ncompressLevel: 5\nstoreProbeInterval: 2h\n');
    const env = { HOME: '/home/pg', PGDR_CLUSTER: 'from-env', PGDR_S3_TIMEOUT: '30s' };
    expect(await loadSettings({ repo: 'file:///flag' }, env)).toEqual(resolveSettings({ repo: 'file:///flag' }, env));
    expect(await loadSettings({ config }, env)).toEqual(resolveSettings({ config }, env));
    expect(await loadSettings({}, { ...env, PGDR_CONFIG: config })).toEqual(resolveSettings({}, { ...env, PGDR_CONFIG: config }));
    expect((await loadSettings({ config }, env)).compressLevel).toBe(5);
  });

  it('refuses what resolveSettings refuses, with the same words', async () => {
    const env = { HOME: '/home/pg' };
    await expect(loadSettings({ compressLevel: '99' }, env)).rejects.toThrow('--compress-level must be an integer from -7 to 22, got "99"');
    await expect(loadSettings({ repo: 'http://x' }, env)).rejects.toThrow('has no supported scheme');
    await expect(loadSettings({ config: '/nonexistent/pgdr.yaml' }, env)).rejects.toThrow('cannot read config file /nonexistent/pgdr.yaml');
  });
});
