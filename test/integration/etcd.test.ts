import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Etcd3 } from 'etcd3';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { runPgdr, runPgdrOk } from '../harness/cli.js';
import { allocateEtcdMembers, initialClusterOf, startEtcdCluster, startEtcdFromDataDirs, type EtcdCluster } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { chownToServiceUser, makeTempDir } from '../harness/temp.js';

afterAll(stopAll);

const CLUSTER = 'etcdtest';

interface SnapshotOutput {
  snapshotId: string;
  revision: number;
  bytes: number;
  storedBytes: number;
  member: { name: string; id: string; endpoint: string };
  etcdClusterId: string;
}

async function withClient<T>(endpoints: string[], use: (client: Etcd3) => Promise<T>): Promise<T> {
  const client = new Etcd3({ hosts: endpoints });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** Every key and value of the cluster, and the revision it was read at. */
async function readAll(endpoints: string[]): Promise<{ keys: Record<string, string>; revision: number }> {
  return withClient(endpoints, async (client) => {
    const response = await client.kv.range({ key: Buffer.from([0]), range_end: Buffer.from([0]) });
    const keys: Record<string, string> = {};
    for (const kv of response.kvs) keys[kv.key.toString('utf8')] = kv.value.toString('utf8');
    return { keys, revision: Number(response.header.revision) };
  });
}

describe('pgdr etcd snapshot, list and restore', () => {
  let source: EtcdCluster;
  let repoDir: string;
  let repo: string;
  let snapshot: SnapshotOutput;
  const atSnapshot: Record<string, string> = {
    '/service/pg/config': '{"ttl":30,"loop_wait":10}',
    '/service/pg/initialize': '7301234567890123456',
    '/service/pg/leader': 'pg-1',
    '/service/pg/members/pg-1': '{"role":"master","state":"running"}',
    '/service/pg/members/pg-2': '{"role":"replica","state":"running"}',
  };

  const repoArgs = (): string[] => ['--repo', repo, '--cluster', CLUSTER];

  beforeAll(async () => {
    source = await startEtcdCluster({ name: 'source' });
    repoDir = makeTempDir('etcd-repo', { owner: 'service' });
    repo = pathToFileURL(repoDir).href;
    await withClient(source.endpoints, async (client) => {
      await client.put('/service/pg/leader').value('pg-0');
      for (const [key, value] of Object.entries(atSnapshot)) await client.put(key).value(value);
      await client.put('/service/pg/failover').value('');
      await client.delete().key('/service/pg/failover');
    });
  });

  it('the harness cluster survives a killed member, which comes back on start()', async () => {
    const member = source.members[2]!;
    const pid = member.pid();
    await member.kill();
    expect(pid).toBeDefined();
    expect(member.pid()).toBeUndefined();
    await withClient([source.members[0]!.clientUrl], async (client) => {
      await client.put('/harness/probe').value('written by two members');
    });
    await member.start();
    await withClient([member.clientUrl], async (client) => {
      expect(await client.get('/harness/probe').string()).toBe('written by two members');
      await client.delete().key('/harness/probe');
    });
  });

  it('snapshots through the first endpoint that answers, and lists it', async () => {
    const before = await readAll(source.endpoints);
    expect(before.keys).toEqual(atSnapshot);
    const deadEndpoint = `http://127.0.0.1:${await freePort()}`;
    const result = await runPgdrOk(['etcd', 'snapshot', '--json', ...repoArgs(), '--etcd', [deadEndpoint, ...source.endpoints].join(',')]);
    snapshot = result.json<SnapshotOutput>();
    expect(result.stderr).toContain(`etcd endpoint ${deadEndpoint} did not answer`);
    expect(snapshot.revision).toBe(before.revision);
    expect(snapshot.member.endpoint).toBe(source.endpoints[0]);
    expect(snapshot.member.name).toBe(source.members[0]!.name);
    expect(snapshot.bytes % 512).toBe(32);
    expect(snapshot.storedBytes).toBeGreaterThan(0);

    // The stored object is a plain zstd frame around what `etcdctl snapshot status` reads.
    const object = join(repoDir, CLUSTER, 'etcd', snapshot.snapshotId, 'snapshot.db.zst');
    const raw = (await execa('zstd', ['-d', '-c', object], { encoding: 'buffer' })).stdout;
    expect(raw.length).toBe(snapshot.bytes);
    const rawFile = join(makeTempDir('etcd-raw'), 'snapshot.db');
    writeFileSync(rawFile, raw);
    const status = JSON.parse((await execa('etcdctl', ['snapshot', 'status', rawFile, '-w', 'json'], { env: { ETCDCTL_API: '3' } })).stdout) as {
      revision: number;
    };
    expect(status.revision).toBe(snapshot.revision);

    const list = (await runPgdrOk(['etcd', 'list', '--json', ...repoArgs()])).json<Array<{ snapshotId: string; status: string; revision: number }>>();
    expect(list).toEqual([expect.objectContaining({ snapshotId: snapshot.snapshotId, status: 'complete', revision: snapshot.revision })]);
  });

  it('restores into a new three-member cluster holding exactly the keys at the snapshot revision', async () => {
    // Written after the snapshot: none of this may come back.
    await withClient(source.endpoints, async (client) => {
      await client.put('/service/pg/leader').value('pg-2');
      await client.put('/service/pg/members/pg-3').value('{"role":"replica"}');
      await client.delete().key('/service/pg/initialize');
    });

    const parent = makeTempDir('etcd-restored', { owner: 'service' });
    const addresses = await allocateEtcdMembers(['r1', 'r2', 'r3'].map((name) => ({ name, dataDir: join(parent, name) })));
    const initialCluster = initialClusterOf(addresses);
    const token = 'pgdr-restored-1';
    const restoreArgs = [
      'etcd', 'restore', '--json', ...repoArgs(),
      '--snapshot-id', 'latest',
      '--members', addresses.map((a) => `${a.name}=${a.dataDir}`).join(','),
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
    ];

    const dryRun = (await runPgdrOk([...restoreArgs, '--dry-run'])).json<{ dryRun: boolean; snapshotId: string }>();
    expect(dryRun).toMatchObject({ dryRun: true, snapshotId: snapshot.snapshotId });
    expect(readdirSync(parent)).toEqual([]);

    const restored = (await runPgdrOk(restoreArgs)).json<{ snapshotId: string; revision: number; members: Array<{ name: string; dataDir: string }> }>();
    expect(restored.snapshotId).toBe(snapshot.snapshotId);
    expect(restored.members.map((m) => m.name)).toEqual(['r1', 'r2', 'r3']);
    expect(readdirSync(parent).sort()).toEqual(['r1', 'r2', 'r3']);

    const copy = await startEtcdFromDataDirs(addresses, { name: 'restored', token });
    const after = await readAll(copy.endpoints);
    expect(after.keys).toEqual(atSnapshot);
    expect(after.revision).toBe(snapshot.revision);
    await withClient(copy.endpoints, async (client) => {
      const { members, header } = await client.cluster.memberList({});
      expect(members.map((m) => m.name).sort()).toEqual(['r1', 'r2', 'r3']);
      expect(members.map((m) => m.peerURLs[0]).sort()).toEqual(addresses.map((a) => a.peerUrl).sort());
      expect(BigInt(header.cluster_id).toString(16)).not.toBe(snapshot.etcdClusterId);
      // The new cluster takes writes: it has a leader and a quorum.
      await client.put('/service/pg/leader').value('pg-restored');
    });
    // And the source cluster went on without noticing.
    expect((await readAll(source.endpoints)).keys['/service/pg/leader']).toBe('pg-2');
    await copy.stop();
  });

  /** Copies the good snapshot under a new id, letting `damage` change the stored object and the manifest. */
  function damagedCopy(newId: string, damage: (object: Buffer, manifest: Record<string, unknown>) => Buffer): void {
    const from = join(repoDir, CLUSTER, 'etcd', snapshot.snapshotId);
    const to = join(repoDir, CLUSTER, 'etcd', newId);
    mkdirSync(to);
    const manifest = JSON.parse(readFileSync(join(from, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    manifest.snapshotId = newId;
    const object = damage(readFileSync(join(from, 'snapshot.db.zst')), manifest);
    writeFileSync(join(to, 'snapshot.db.zst'), object);
    writeFileSync(join(to, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    chownToServiceUser(to, { recursive: true });
  }

  async function expectRefusedBeforeWriting(snapshotId: string, message: RegExp): Promise<void> {
    const parent = makeTempDir('etcd-refused', { owner: 'service' });
    const emptyDir = join(parent, 'x1');
    mkdirSync(emptyDir);
    chownToServiceUser(emptyDir);
    const addresses = await allocateEtcdMembers([{ name: 'x1', dataDir: emptyDir }, { name: 'x2', dataDir: join(parent, 'x2') }]);
    const result = await runPgdr([
      'etcd', 'restore', ...repoArgs(),
      '--snapshot-id', snapshotId,
      '--members', addresses.map((a) => `${a.name}=${a.dataDir}`).join(','),
      '--initial-cluster', initialClusterOf(addresses),
      '--initial-cluster-token', 'never-started',
    ]);
    expect(result.exitCode, result.stderr).toBe(5);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^hint: .*nothing was restored/m);
    // Nothing written: the empty target is still empty, the absent one absent, no staging directory left behind.
    expect(readdirSync(parent)).toEqual(['x1']);
    expect(readdirSync(emptyDir)).toEqual([]);
    expect(existsSync(join(parent, 'x2'))).toBe(false);
  }

  it('refuses a snapshot whose stored object has a flipped byte, before anything is written', async () => {
    const id = '20000101T000001Z';
    damagedCopy(id, (object) => {
      const damaged = Buffer.from(object);
      const at = Math.floor(damaged.length / 2);
      damaged[at] = (damaged[at] ?? 0) ^ 0x04;
      return damaged;
    });
    await expectRefusedBeforeWriting(id, /stored object .* does not match its manifest/);
  });

  it("refuses a snapshot whose own sha256 trailer does not match its database, even with a consistent manifest", async () => {
    const id = '20000101T000002Z';
    const object = readFileSync(join(repoDir, CLUSTER, 'etcd', snapshot.snapshotId, 'snapshot.db.zst'));
    const raw = Buffer.from((await execa('zstd', ['-d', '-c'], { input: object, encoding: 'buffer' })).stdout);
    raw[100] = (raw[100] ?? 0) ^ 0x01;
    const recompressed = Buffer.from((await execa('zstd', ['-3', '-c', '--check'], { input: raw, encoding: 'buffer' })).stdout);
    const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
    damagedCopy(id, (_object, manifest) => {
      // A manifest that vouches for the damaged bytes: only the snapshot's own trailer can tell.
      manifest.sha256 = sha(recompressed);
      manifest.storedBytes = recompressed.length;
      manifest.snapshotSha256 = sha(raw);
      return recompressed;
    });
    await expectRefusedBeforeWriting(id, /sha256 trailer [0-9a-f]{64} does not match its database/);
  });

  it('refuses to restore over a data directory that holds something', async () => {
    const parent = makeTempDir('etcd-occupied', { owner: 'service' });
    const dir = join(parent, 'o1');
    mkdirSync(dir);
    writeFileSync(join(dir, 'keep-me'), 'old member data');
    chownToServiceUser(parent, { recursive: true });
    const [address] = await allocateEtcdMembers([{ name: 'o1', dataDir: dir }]);
    const result = await runPgdr([
      'etcd', 'restore', ...repoArgs(),
      '--name', 'o1', '--data-dir', dir,
      '--initial-cluster', initialClusterOf([address!]),
      '--initial-cluster-token', 'never-started',
    ]);
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/is not empty/);
    expect(readdirSync(dir)).toEqual(['keep-me']);
  });
});

describe('encrypted etcd snapshots', () => {
  let source: EtcdCluster;
  let repoDir: string;
  let repo: string;
  let keys: string;
  const ops = { identity: '', recipient: '' };
  const stranger = { identity: '', recipient: '' };
  const atSnapshot: Record<string, string> = {
    '/service/enc/leader': 'pg-1',
    '/service/enc/config': '{"ttl":30,"postgresql":{"parameters":{"password_encryption":"scram-sha-256"}}}',
    '/service/enc/members/pg-1': '{"role":"master","state":"running","marker":"pgdr-etcd-secret-4b1d"}',
  };
  const repoArgs = (): string[] => ['--repo', repo, '--cluster', 'etcdenc'];

  async function keyPair(into: { identity: string; recipient: string }, name: string): Promise<void> {
    into.identity = join(keys, `${name}.txt`);
    await execa('age-keygen', ['-o', into.identity]);
    into.recipient = (await execa('age-keygen', ['-y', into.identity])).stdout.trim();
    chownToServiceUser(into.identity);
  }

  async function restoreTargets(prefix: string): Promise<{ parent: string; args: string[]; addresses: Awaited<ReturnType<typeof allocateEtcdMembers>> }> {
    const parent = makeTempDir(prefix, { owner: 'service' });
    const addresses = await allocateEtcdMembers([{ name: 'e1', dataDir: join(parent, 'e1') }]);
    const args = [
      'etcd', 'restore', ...repoArgs(),
      '--snapshot-id', 'latest',
      '--members', addresses.map((a) => `${a.name}=${a.dataDir}`).join(','),
      '--initial-cluster', initialClusterOf(addresses),
      '--initial-cluster-token', `${prefix}-token`,
    ];
    return { parent, args, addresses };
  }

  beforeAll(async () => {
    source = await startEtcdCluster({ members: 1, name: 'enc-source' });
    repoDir = makeTempDir('etcd-enc-repo', { owner: 'service' });
    repo = pathToFileURL(repoDir).href;
    keys = makeTempDir('etcd-enc-keys', { owner: 'service' });
    await keyPair(ops, 'ops');
    await keyPair(stranger, 'stranger');
    await withClient(source.endpoints, async (client) => {
      for (const [key, value] of Object.entries(atSnapshot)) await client.put(key).value(value);
    });
  });

  it('stores the snapshot as an age file to the recipients, readable by no one without the identity', async () => {
    // The recipient from the environment, as a CronJob would have it; no identity on the writing side.
    const result = await runPgdrOk(['etcd', 'snapshot', '--json', ...repoArgs(), '--etcd', source.endpoints.join(',')], { env: { PGDR_ENCRYPT_RECIPIENTS: ops.recipient } });
    const { snapshotId } = result.json<SnapshotOutput>();
    const dir = join(repoDir, 'etcdenc', 'etcd', snapshotId);
    const object = readFileSync(join(dir, 'snapshot.db.zst'));
    expect(object.subarray(0, 22).toString('latin1')).toBe('age-encryption.org/v1\n');
    expect(object.includes('pgdr-etcd-secret-4b1d')).toBe(false);
    expect((await execa('zstd', ['-d', '-c', '-q'], { input: object, encoding: 'buffer', reject: false })).exitCode).not.toBe(0);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { encryption?: unknown; sha256: string };
    expect(manifest.encryption).toEqual({ algorithm: 'age', recipients: [ops.recipient] });
    // sha256 covers the stored, encrypted bytes: verify needs no key.
    expect(manifest.sha256).toBe(createHash('sha256').update(object).digest('hex'));
    const verify = await runPgdr(['verify', '--json', ...repoArgs()]);
    expect(verify.exitCode, verify.stderr).toBe(0);
    // The stored bytes are what `age -d` and `zstd -d` turn into a snapshot etcdctl reads.
    const raw = join(makeTempDir('etcd-enc-raw'), 'snapshot.db');
    await execa('sh', ['-c', `age -d -i '${ops.identity}' '${join(dir, 'snapshot.db.zst')}' | zstd -d -q -o '${raw}'`]);
    const status = JSON.parse((await execa('etcdctl', ['snapshot', 'status', raw, '-w', 'json'], { env: { ETCDCTL_API: '3' } })).stdout) as { revision: number };
    expect(status.revision).toBe(result.json<SnapshotOutput>().revision);
  });

  it('refuses a restore without an identity, or with one that is not a recipient, with exit 2 before writing anything', async () => {
    const { parent, args } = await restoreTargets('etcd-enc-refused');
    const missing = await runPgdr(args);
    expect(missing.exitCode, missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(/etcd snapshot \S+ is encrypted, and no identity file was given/);
    expect(missing.stderr).toMatch(/^hint: pass --identity-file FILE \(or set PGDR_IDENTITY_FILE\)/m);
    const wrong = await runPgdr([...args, '--identity-file', stranger.identity]);
    expect(wrong.exitCode, wrong.stderr).toBe(2);
    expect(wrong.stderr).toContain(ops.recipient);
    expect(wrong.stderr).not.toMatch(/AGE-SECRET-KEY/);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('restores with the identity into a member that holds exactly the keys at the snapshot', async () => {
    await withClient(source.endpoints, async (client) => {
      await client.put('/service/enc/leader').value('pg-after-snapshot');
    });
    const { args, addresses } = await restoreTargets('etcd-enc-restored');
    const restored = await runPgdr(args, { env: { PGDR_IDENTITY_FILE: ops.identity } });
    expect(restored.exitCode, restored.stderr).toBe(0);
    const copy = await startEtcdFromDataDirs(addresses, { name: 'enc-restored', token: 'etcd-enc-restored-token' });
    expect((await readAll(copy.endpoints)).keys).toEqual(atSnapshot);
    await copy.stop();
  });
});
