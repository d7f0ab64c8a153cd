import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repositoryFor, repositoriesToVisit, walFetchSources, walPushTargets } from '../../../src/config/repositories.js';
import { loadSettings } from '../../../src/config/resolve-settings.js';
import { resolveSettings } from '../../../src/config/settings.js';
import { checkSharedCredentials, iniSections } from '../../../src/storage/shared-credentials.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-repos-'));
  dirs.push(dir);
  const path = join(dir, 'pgdr.yaml');
  writeFileSync(path, text);
  return path;
}

const TWO = `
repositories:
  - name: r2
    url: s3://pg-wal/prod
    s3Endpoint: https://acct.r2.cloudflarestorage.com
    s3Region: auto
    credentials: { file: /run/secrets/r2, profile: r2 }
    receives: [wal, backups, etcd]
  - name: b2
    url: s3://pg-offsite/prod
    s3Endpoint: https://s3.us-west-004.backblazeb2.com
    s3Region: us-west-004
    credentials: { file: /run/secrets/b2 }
    encryptRecipients: [age1atsj87lsu6x2x6hfp7mmf8nc4utce08j0xmuq6lhxvvlgul6fdks8p59j5, age10wcqsrcmcw35v7n42dksrjew9rpcf4zageents2aa6hzj93mtsqqktg8he]
    receives: [backups]
`;
const env = { HOME: '/home/pg', PGDR_S3_ENDPOINT: 'http://global:9000', AWS_REGION: 'eu-central-1' };

describe('repositories: in the config file', () => {
  it('resolves each entry on its own, without the global S3 settings', () => {
    const settings = resolveSettings({ config: configFile(TWO) }, env);
    expect(settings.repositories.map((r) => r.name)).toEqual(['r2', 'b2']);
    expect(settings.repository).toBeUndefined();
    const [r2, b2] = settings.repositories;
    expect(r2).toMatchObject({ url: 's3://pg-wal/prod', s3Endpoint: 'https://acct.r2.cloudflarestorage.com', s3Region: 'auto', credentials: { file: '/run/secrets/r2', profile: 'r2' } });
    expect(b2).toMatchObject({ s3Region: 'us-west-004', s3ForcePathStyle: false, credentials: { file: '/run/secrets/b2', profile: undefined }, encryptRecipients: ['age1atsj87lsu6x2x6hfp7mmf8nc4utce08j0xmuq6lhxvvlgul6fdks8p59j5', 'age10wcqsrcmcw35v7n42dksrjew9rpcf4zageents2aa6hzj93mtsqqktg8he'], receives: ['backups'] });
  });

  it('--repo picks a name, a configured URL, or an unconfigured URL with the global settings', () => {
    const config = configFile(TWO);
    expect(resolveSettings({ config, repo: 'b2' }, env).repository?.name).toBe('b2');
    expect(resolveSettings({ config }, { ...env, PGDR_REPO: 'r2' }).repository?.name).toBe('r2');
    expect(resolveSettings({ config, repo: 's3://pg-offsite/prod' }, env).repository?.name).toBe('b2');
    const adHoc = resolveSettings({ config, repo: 's3://elsewhere/x' }, env);
    expect(adHoc.repository).toMatchObject({ name: undefined, url: 's3://elsewhere/x', s3Endpoint: 'http://global:9000', s3Region: 'eu-central-1', credentials: undefined });
    expect(adHoc.repo).toBe('s3://elsewhere/x');
    expect(() => resolveSettings({ config, repo: 'gcs' }, env)).toThrow('no repository named "gcs"; the config file names r2, b2');
  });

  it('refuses what it cannot use, naming the key', () => {
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: a, url: s3://b/p, credentials: { file: rel/path } }\n') }, env)).toThrow(
      'repositories.0.credentials.file: the credentials file must be an absolute path',
    );
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: a, url: s3://b/p, receives: [wal, logs] }\n') }, env)).toThrow('repositories.0.receives.1');
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: a, url: s3://b/p, secretKey: x }\n') }, env)).toThrow('repositories.0');
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: a, url: s3://b/p }\n  - { name: a, url: s3://c/p }\n') }, env)).toThrow('the name "a" is used twice');
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: 9a, url: s3://b/p }\n') }, env)).toThrow('repositories.0.name');
    expect(() => resolveSettings({ config: configFile('repositories:\n  - { name: a, url: s3://b/p, encryptRecipients: [age1short] }\n') }, env)).toThrow('repository a: encryptRecipients: "age1short" is not an age X25519 recipient');
  });

  it('without repositories:, the one repository is what it always was', async () => {
    const settings = await loadSettings({ repo: 's3://b/p' }, env);
    expect(settings.repositories).toEqual([]);
    expect(settings.repository).toMatchObject({ name: undefined, url: 's3://b/p', s3Endpoint: 'http://global:9000', receives: ['wal', 'backups', 'etcd'] });
    expect(walPushTargets(settings)).toEqual([settings.repository]);
    expect(walFetchSources(settings)).toEqual([settings.repository]);
  });
});

describe('which repository a command works with', () => {
  it('wal push stores into each that receives WAL; wal fetch asks the named one first, then the others', () => {
    const config = configFile(TWO);
    const all = resolveSettings({ config }, env);
    expect(walPushTargets(all).map((r) => r.name)).toEqual(['r2']);
    expect(walFetchSources(all).map((r) => r.name)).toEqual(['r2', 'b2']);
    const fromB2 = resolveSettings({ config, repo: 'b2' }, env);
    expect(walFetchSources(fromB2).map((r) => r.name)).toEqual(['b2', 'r2']);
    expect(walPushTargets(fromB2).map((r) => r.name)).toEqual(['b2']);
  });

  it('a backup with several receiving backups and no --repo is refused, naming them; one receiving it is taken', () => {
    const config = configFile(TWO);
    const all = resolveSettings({ config }, env);
    expect(() => repositoryFor(all, 'backups', 'pgdr backup now')).toThrow('pgdr backup now: the config file names several repositories that receive backups (r2, b2) and no --repo picks one');
    expect(repositoryFor(all, 'etcd', 'pgdr etcd snapshot').name).toBe('r2');
    expect(repositoryFor(resolveSettings({ config, repo: 'b2' }, env), 'backups', 'x').name).toBe('b2');
    expect(repositoriesToVisit(all).map((r) => r.name)).toEqual(['r2', 'b2']);
  });
});

describe('a repository\'s credentials file', () => {
  it('must be readable and hold the profile; the message names the repository', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdr-creds-'));
    dirs.push(dir);
    const file = join(dir, 'credentials');
    writeFileSync(file, '[default]\naws_access_key_id = a\naws_secret_access_key = b\n\n[ b2 ] ; off-site\naws_access_key_id = c\n');
    expect([...iniSections('[profile x]\n[y]\nz=1\n')]).toEqual(['x', 'y']);
    expect(() => checkSharedCredentials({ repository: 'b2', file, profile: 'b2' })).not.toThrow();
    expect(() => checkSharedCredentials({ repository: 'b2', file, profile: undefined })).not.toThrow();
    expect(() => checkSharedCredentials({ repository: 'b2', file, profile: 'r2' })).toThrow(`repository b2: its credentials file ${file} has no profile [r2]`);
    expect(() => checkSharedCredentials({ repository: 'r2', file: join(dir, 'missing'), profile: 'r2' })).toThrow(`repository r2: cannot read its credentials file ${join(dir, 'missing')} (ENOENT)`);
    expect(() => checkSharedCredentials({ repository: 'r2', file: undefined, profile: 'r2' }, { HOME: dir })).toThrow(`repository r2: cannot read its credentials file ${join(dir, '.aws', 'credentials')}`);
  });
});
