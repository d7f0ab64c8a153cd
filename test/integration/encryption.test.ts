import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchWalAndWaitForArchive } from '../harness/archive.js';
import { registerCleanup, stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, runPgdr, runPgdrOk } from '../harness/cli.js';
import { freePort } from '../harness/ports.js';
import { runAsPostgres, startPostgres, type PostgresServer } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';
import { protectIdentity } from '../../src/stream/age-passphrase.js';
import { SEALED_DETAIL, type DrillReport } from '../../src/verify/drill-report.js';

/**
 * Encryption at rest (issue 9, point 1) on a local-directory repository: every data object and WAL segment is an
 * age file to two recipients (an operations key and an escrow key); nothing stored holds a known row value, plain or
 * after zstd -d; backup, wal push, verify and expire never see a private key; a missing or wrong identity fails
 * restore with exit 2 before the target is touched; either identity restores to an exact row set.
 */
const MARKER = 'pgdr-secret-marker-7f3a9c';

describe('encryption at rest with age', () => {
  let server: PostgresServer;
  let repo: string;
  let keys: string;
  let ops: { identity: string; recipient: string };
  let escrow: { identity: string; recipient: string };
  let stranger: { identity: string; recipient: string };
  let recipientArgs: string[];
  let filesBackup: string;
  let baseBackup: string;
  let target: string;
  let expectedAtTarget: number[];

  const pgdr = (args: string[], extraEnv: Record<string, string> = {}) =>
    runPgdr([...args, '--repo', `file://${repo}`, '--cluster', 'enc', '--no-progress'], { env: { ...server.libpqEnv(), ...extraEnv }, timeoutMs: 180_000 });
  const pgdrOk = (args: string[], extraEnv: Record<string, string> = {}) =>
    runPgdrOk([...args, '--repo', `file://${repo}`, '--cluster', 'enc', '--no-progress'], { env: { ...server.libpqEnv(), ...extraEnv }, timeoutMs: 180_000 });

  async function keyPair(name: string): Promise<{ identity: string; recipient: string }> {
    const identity = join(keys, `${name}.txt`);
    await runAsPostgres('age-keygen', ['-o', identity]);
    const { stdout } = await execa('age-keygen', ['-y', identity]);
    return { identity, recipient: stdout.trim() };
  }

  beforeAll(async () => {
    repo = makeTempDir('enc-repo', { owner: 'service' });
    keys = makeTempDir('enc-keys', { owner: 'service' });
    ops = await keyPair('ops');
    escrow = await keyPair('escrow');
    stranger = await keyPair('stranger');
    recipientArgs = ['--encrypt-recipient', ops.recipient, '--encrypt-recipient', escrow.recipient];
    // archive_command holds public keys only: wal push never needs the private key.
    server = await startPostgres({
      name: 'enc',
      archiveCommand: pgdrCommandLine(['wal', 'push', '%p', '--repo', `file://${repo}`, '--cluster', 'enc', ...recipientArgs]),
    });
    await server.query('CREATE TABLE events (id int PRIMARY KEY, note text NOT NULL)');
    await server.query(`INSERT INTO events SELECT g, '${MARKER} ' || g FROM generate_series(1, 500) g`);
    // Recipients from the environment this time (comma-separated), flags above: both forms reach the same objects.
    filesBackup = (await pgdrOk(['backup', 'now', '--engine', 'files', '--json'], { PGDR_ENCRYPT_RECIPIENTS: `${ops.recipient},${escrow.recipient}` })).json<{ backupId: string }>().backupId;
    await server.query(`INSERT INTO events SELECT g, '${MARKER} ' || g FROM generate_series(501, 600) g`);
    await sleep(1100);
    baseBackup = (await pgdrOk(['backup', 'now', '--engine', 'basebackup', '--json', ...recipientArgs])).json<{ backupId: string }>().backupId;
    await server.query(`INSERT INTO events SELECT g, '${MARKER} ' || g FROM generate_series(601, 700) g`);
    await sleep(1100);
    [{ at: target }] = (await server.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)) as [{ at: string }];
    expectedAtTarget = (await server.query<{ id: number }>('SELECT id FROM events ORDER BY id')).map((r) => r.id);
    await sleep(1100);
    await server.query(`INSERT INTO events SELECT g, '${MARKER} ' || g FROM generate_series(701, 800) g`);
    await switchWalAndWaitForArchive(server);
  }, 300_000);

  afterAll(async () => {
    await stopAll();
  });

  function storedFiles(dir = repo): string[] {
    const out: string[] = [];
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) out.push(...storedFiles(path));
      else if (entry.isFile()) out.push(path);
    }
    return out;
  }

  it('stores every data object and WAL segment as an age file, and manifests name the recipients', () => {
    for (const id of [filesBackup, baseBackup]) {
      const manifest = JSON.parse(readFileSync(join(repo, 'enc', 'backups', id, 'manifest.json'), 'utf8')) as { encryption?: { algorithm: string; recipients: string[] }; objects: { name: string }[] };
      expect(manifest.encryption).toEqual({ algorithm: 'age', recipients: [ops.recipient, escrow.recipient] });
      expect(JSON.stringify(manifest)).not.toMatch(/AGE-SECRET-KEY/);
      for (const object of manifest.objects) {
        const head = readFileSync(join(repo, 'enc', 'backups', id, object.name)).subarray(0, 22).toString('latin1');
        expect(head, `${id}/${object.name}`).toBe('age-encryption.org/v1\n');
      }
    }
    const segments = storedFiles(join(repo, 'enc', 'wal')).filter((f) => /\/[0-9A-F]{24}\.zst$/.test(f));
    expect(segments.length).toBeGreaterThan(2);
    for (const segment of segments) expect(readFileSync(segment).subarray(0, 22).toString('latin1')).toBe('age-encryption.org/v1\n');
  });

  it('holds the known row value nowhere, neither in the stored bytes nor after zstd -d', async () => {
    const files = storedFiles();
    expect(files.length).toBeGreaterThan(10);
    let decompressed = 0;
    for (const file of files) {
      expect(readFileSync(file).includes(MARKER), file).toBe(false);
      const plain = await execa('zstd', ['-d', '-c', '-q', file], { encoding: 'buffer', reject: false, stripFinalNewline: false });
      if (plain.exitCode === 0) {
        decompressed++;
        expect(Buffer.from(plain.stdout as Uint8Array).includes(MARKER), `${file} after zstd -d`).toBe(false);
      }
    }
    // Only timeline/backup history files (no table data) are plain zstd; the check above did run on them.
    expect(decompressed).toBeGreaterThan(0);
  });

  it('verifies and expires without any key', async () => {
    const verify = await pgdr(['verify', '--json']);
    expect(verify.exitCode, verify.stderr).toBe(0);
    const report = verify.json<{ ok: boolean; notes: { kind: string }[] }>();
    expect(report.ok).toBe(true);
    expect(report.notes.some((n) => n.kind === 'encrypted-file-list')).toBe(true);
    // The newest segment is encrypted: the segment size comes from the manifests, not from an assumption.
    expect(verify.stderr).toMatch(/is encrypted; WAL segments are 16 MiB \(recorded in backup \S+'s manifest\)/);
    expect(report.notes.some((n) => n.kind === 'wal-segment-size-assumed')).toBe(false);
    const expire = await pgdr(['expire', '--dry-run', '--json']);
    expect(expire.exitCode, expire.stderr).toBe(0);
    // With the identity a full verify reads the encrypted file list too.
    const full = await pgdr(['verify', '--json', '--identity-file', ops.identity]);
    expect(full.exitCode, full.stderr).toBe(0);
    expect(full.json<{ checked: { fileLists: number } }>().checked.fileLists).toBeGreaterThan(0);
  });

  it('verify says so when nothing tells the WAL segment size without a key (encrypted WAL, no backup), and reads it with the identity', async () => {
    const [segment] = readdirSync(join(repo, 'enc', 'wal', '00000001')).filter((f) => /^[0-9A-F]{24}\.zst$/.test(f)).sort();
    const name = segment!.slice(0, -4);
    const dir = makeTempDir('enc-walonly', { owner: 'service' });
    await pgdrOk(['wal', 'fetch', name, join(dir, name), '--identity-file', ops.identity]);
    const only = (args: string[]) => runPgdr([...args, '--repo', `file://${repo}`, '--cluster', 'enc-walonly', '--no-progress'], { timeoutMs: 120_000 });
    expect((await only(['wal', 'push', join(dir, name), ...recipientArgs, '--spool-dir', join(dir, 'spool')])).exitCode).toBe(0);
    const blind = await only(['verify', '--json']);
    const notes = blind.json<{ notes: { kind: string; detail: string }[] }>().notes.filter((n) => n.kind === 'wal-segment-size-assumed');
    expect(notes).toHaveLength(1);
    expect(notes[0]!.detail).toMatch(/is encrypted, no identity was given, and no backup manifest records the size\): WAL was checked assuming 16 MiB segments/);
    const keyed = await only(['verify', '--json', '--identity-file', escrow.identity]);
    expect(keyed.json<{ notes: { kind: string }[] }>().notes.filter((n) => n.kind === 'wal-segment-size-assumed')).toEqual([]);
  });

  it('refuses a restore without an identity, or with the wrong one, before touching the target (exit 2)', async () => {
    const parent = makeTempDir('enc-refused', { owner: 'service' });
    const pgdata = join(parent, 'pgdata');
    const missing = await pgdr(['restore', '--pgdata', pgdata, '--target', 'latest']);
    expect(missing.exitCode, missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(/is encrypted, and no identity file was given/);
    expect(missing.stderr).toMatch(/--identity-file/);
    const wrong = await pgdr(['restore', '--pgdata', pgdata, '--target', 'latest', '--identity-file', stranger.identity]);
    expect(wrong.exitCode, wrong.stderr).toBe(2);
    expect(wrong.stderr).toMatch(/cannot decrypt backup .* it was encrypted to age1/);
    expect(wrong.stderr).not.toMatch(/AGE-SECRET-KEY/);
    expect(existsSync(pgdata)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('wal fetch decrypts a segment with the identity, and asks for one without it', async () => {
    const [segment] = readdirSync(join(repo, 'enc', 'wal', '00000001')).filter((f) => /^[0-9A-F]{24}\.zst$/.test(f)).sort();
    const name = segment!.slice(0, -4);
    const dir = makeTempDir('enc-fetch', { owner: 'service' });
    const ok = await pgdr(['wal', 'fetch', name, join(dir, name), '--identity-file', escrow.identity]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(statSync(join(dir, name)).size).toBe(16 * 1024 * 1024);
    const refused = await pgdr(['wal', 'fetch', name, join(dir, 'again'), '--identity-file', stranger.identity]);
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(existsSync(join(dir, 'again'))).toBe(false);
    const noKey = await pgdr(['wal', 'fetch', name, join(dir, 'again')]);
    expect(noKey.exitCode, noKey.stderr).toBe(2);
  });

  async function restoreAndRead(args: string[], env: Record<string, string> = {}): Promise<number[]> {
    const dir = makeTempDir('enc-restore', { owner: 'service' });
    const pgdata = join(dir, 'pgdata');
    const port = await freePort();
    const unregister = registerCleanup(`restored server ${pgdata}`, async () => {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'immediate', 'stop']).catch(() => undefined);
    });
    try {
      await pgdrOk(['restore', '--pgdata', pgdata, ...args, '--start', '--port', String(port), '--archive-mode', 'off', '--json'], env);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        return (await client.query<{ id: number }>('SELECT id FROM events ORDER BY id')).rows.map((r) => r.id);
      } finally {
        await client.end();
      }
    } finally {
      await runAsPostgres(pgBin('pg_ctl'), ['-D', pgdata, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      unregister();
    }
  }

  it('PITR with the escrow identity restores the files-engine backup to exactly the rows at the target', async () => {
    const ids = await restoreAndRead(['--backup-id', filesBackup, '--target-time', target, '--identity-file', escrow.identity]);
    expect(ids).toEqual(expectedAtTarget);
  });

  it('PITR with the operations identity restores the basebackup-engine backup to the same rows', async () => {
    const ids = await restoreAndRead(['--backup-id', baseBackup, '--target-time', target, '--identity-file', ops.identity]);
    expect(ids).toEqual(expectedAtTarget);
  });

  describe('passphrase mode: the identity file protected with a passphrase (age -p)', () => {
    const PASSPHRASE = 'quiet meadow 93 copper';
    let protectedIdentity: string;
    let passphraseFile: string;

    beforeAll(async () => {
      protectedIdentity = join(keys, 'escrow.age');
      // age's default work factor (18), as age -p writes it.
      writeFileSync(protectedIdentity, await protectIdentity(readFileSync(escrow.identity, 'utf8'), PASSPHRASE));
      passphraseFile = join(keys, 'passphrase');
      writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
      chownToServiceUser(protectedIdentity);
      chownToServiceUser(passphraseFile);
    });

    it('PITR with PGDR_PASSPHRASE_FILE: restore and the restored server\'s restore_command open the identity, exact rows', async () => {
      const ids = await restoreAndRead(['--backup-id', filesBackup, '--target-time', target, '--identity-file', protectedIdentity], { PGDR_PASSPHRASE_FILE: passphraseFile });
      expect(ids).toEqual(expectedAtTarget);
    });

    it('refuses a missing or wrong passphrase before touching the target (exit 2), and never prints it', async () => {
      const parent = makeTempDir('enc-passphrase-refused', { owner: 'service' });
      const pgdata = join(parent, 'pgdata');
      const args = ['restore', '--pgdata', pgdata, '--target', 'latest', '--identity-file', protectedIdentity];
      const missing = await pgdr(args);
      expect(missing.exitCode, missing.stderr).toBe(2);
      expect(missing.stderr).toMatch(/is protected by a passphrase, and none was given/);
      const wrong = await pgdr(args, { PGDR_PASSPHRASE: 'quiet meadow 94 copper' });
      expect(wrong.exitCode, wrong.stderr).toBe(2);
      expect(wrong.stderr).toMatch(/the passphrase does not open identity file/);
      expect(wrong.stderr + wrong.stdout).not.toMatch(/meadow|AGE-SECRET-KEY/);
      expect(readdirSync(parent)).toEqual([]);
      const plain = await pgdr(['verify', '--quick', '--identity-file', escrow.identity], { PGDR_PASSPHRASE_FILE: passphraseFile });
      expect(plain.exitCode, plain.stderr).toBe(2);
      expect(plain.stderr).toMatch(/PGDR_PASSPHRASE_FILE is set, but identity file .* is not protected by a passphrase/);
    });

    it('by hand, the age CLI opens the same protected identity at a terminal (script(1) gives it one)', async () => {
      const label = join(repo, 'enc', 'backups', filesBackup, 'backup_label.zst');
      const hand = await execa('script', ['-qec', `age -d -i ${protectedIdentity} ${label} | zstd -dc`, '/dev/null'], {
        input: `${PASSPHRASE}\n`,
        env: { PATH: process.env.PATH ?? '' },
        reject: false,
        timeout: 60_000,
      });
      expect(hand.exitCode, hand.stdout).toBe(0);
      expect(hand.stdout).toMatch(/Enter passphrase for identity file/);
      expect(hand.stdout).toMatch(/START WAL LOCATION: [0-9A-F]+\/[0-9A-F]+/);
    });
  });

  it('seals the drill report: health reads the outcome without a key, drill list reads the details with the identity', async () => {
    const scratch = makeTempDir('enc-drill', { owner: 'service' });
    const drill = await pgdr(['drill', '--json', '--scratch-dir', scratch, '--timeout', '300', '--identity-file', ops.identity, ...recipientArgs]);
    expect(drill.exitCode, drill.stderr).toBe(0);
    const report = drill.json<DrillReport>();
    expect(report.result).toBe('passed');
    const file = join(repo, 'enc', 'drills', `${report.drillId}.json`);
    const stored = JSON.parse(readFileSync(file, 'utf8')) as DrillReport;
    expect(stored.encryption).toEqual({ algorithm: 'age', recipients: [ops.recipient, escrow.recipient] });
    expect(stored.sealed).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/);
    expect([stored.wal.detail, stored.amcheck.detail]).toEqual([SEALED_DETAIL, SEALED_DETAIL]);
    expect({ result: stored.result, rtoSeconds: stored.rtoSeconds, backupId: stored.backupId }).toEqual({ result: 'passed', rtoSeconds: report.rtoSeconds, backupId: report.backupId });

    // health holds no key and needs none: the outcome and the time stay readable.
    const health = await pgdr(['health', '--check', 'drill', '--json']);
    const check = health.json<{ checks: { check: string; status: string; message: string }[] }>().checks.find((c) => c.check === 'drill')!;
    expect(check.status, check.message).toBe('OK');
    expect(check.message).toContain(`last restore drill ${report.drillId} passed`);

    const listed = (args: string[]) => pgdr(['drill', 'list', '--json', ...args]);
    const sealed = await listed([]);
    expect(sealed.exitCode, sealed.stderr).toBe(0);
    expect(sealed.json<DrillReport[]>().at(-1)!.amcheck.detail).toBe(SEALED_DETAIL);
    expect(sealed.stderr).toMatch(/1 report\(s\) have their details sealed .* pass --identity-file/);
    const opened = await listed(['--identity-file', escrow.identity]);
    expect(opened.exitCode, opened.stderr).toBe(0);
    const unsealed = opened.json<DrillReport[]>().at(-1)!;
    expect(unsealed.amcheck.detail).toBe(report.amcheck.detail);
    expect(unsealed.wal.detail).toBe(report.wal.detail);
    expect(unsealed.amcheck.detail).not.toBe(SEALED_DETAIL);
    expect(unsealed.sealed).toBeUndefined();
    // A key that is not a recipient leaves the details sealed, and says so.
    const notRecipient = await listed(['--identity-file', stranger.identity]);
    expect(notRecipient.exitCode, notRecipient.stderr).toBe(0);
    expect(notRecipient.json<DrillReport[]>().at(-1)!.amcheck.detail).toBe(SEALED_DETAIL);
    expect(notRecipient.stderr).toMatch(/sealed to other recipients/);
    // By hand, as repository-format.md says.
    const byHand = await execa('sh', ['-c', `jq -r .sealed '${file}' | age -d -i '${ops.identity}'`]);
    expect((JSON.parse(byHand.stdout) as DrillReport).amcheck.detail).toBe(report.amcheck.detail);
  });

  it('restore cluster takes --identity-file as a flag: checked against the backup before anything, and handed to what Patroni runs', async () => {
    const dir = makeTempDir('enc-rebuild', { owner: 'service' });
    const [restPort, etcdPort, pgPort] = [await freePort(), await freePort(), await freePort()];
    const config = join(dir, 'm1.yml');
    writeFileSync(
      config,
      [
        'scope: enc',
        'name: m1',
        `restapi: { listen: 127.0.0.1:${restPort}, connect_address: 127.0.0.1:${restPort} }`,
        `etcd3: { hosts: 127.0.0.1:${etcdPort} }`,
        `postgresql: { data_dir: ${join(dir, 'pgdata')}, listen: 127.0.0.1:${pgPort}, connect_address: 127.0.0.1:${pgPort} }`,
        '',
      ].join('\n'),
    );
    chownToServiceUser(config);
    const args = ['restore', 'cluster', '--patroni-config', config, '--target', 'latest', '--etcd-snapshot', 'none', '--etcd', `http://127.0.0.1:${etcdPort}`, '--dry-run', '--json'];
    const missing = await pgdr(args);
    expect(missing.exitCode, missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(/backup \S+ is encrypted, and no identity file was given/);
    const wrong = await pgdr([...args, '--identity-file', stranger.identity]);
    expect(wrong.exitCode, wrong.stderr).toBe(2);
    expect(wrong.stderr).toMatch(/cannot decrypt backup \S+: it was encrypted to age1/);
    const planned = await pgdr([...args, '--identity-file', ops.identity]);
    expect(planned.exitCode, planned.stderr).toBe(0);
    const plan = planned.json<{ wouldRefuse: unknown[]; plan: { steps: { action: string; details: string[] }[] } }>();
    expect(plan.wouldRefuse).toEqual([]);
    // The leader's bootstrap (and with it the restore_command it writes) gets the identity by its path.
    const bootstrap = plan.plan.steps.find((s) => s.action === 'start-leader')!.details.find((d) => d.startsWith('bootstrap.method pgdr:'))!;
    expect(bootstrap).toContain(`patroni bootstrap --repo file://${repo} --cluster enc --identity-file ${ops.identity}`);
    expect(planned.stdout).not.toMatch(/AGE-SECRET-KEY/);
    expect(readdirSync(dir)).toEqual(['m1.yml']);
  });

  it('refuses a passphrase instead of ignoring it', async () => {
    const result = await pgdr(['backup', 'list'], { PGDR_PASSPHRASE: 'correct horse battery staple' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/PGDR_PASSPHRASE is set/);
    expect(result.stderr).not.toMatch(/correct horse/);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
