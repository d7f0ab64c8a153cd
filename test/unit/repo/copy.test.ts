import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RepositoryError, VerificationError } from '../../../src/errors.js';
import { copyRepository } from '../../../src/repo/copy.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { serializeManifest, type BackupManifest } from '../../../src/repo/manifest.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';
import { sha256Hex } from '../../../src/stream/checksum.js';
import { zstdCompressBuffer } from '../../../src/stream/zstd-buffer.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function store(): ObjectStore {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-copy-'));
  dirs.push(dir);
  return createFsStore({ root: dir });
}

const layout = new RepositoryLayout('main');
const SYSTEM = '7300000000000000001';

function segment(seed: number, system = BigInt(SYSTEM)): Buffer {
  const data = Buffer.alloc(64 * 1024, seed);
  data.writeUInt16LE(0xd110, 0);
  data.writeUInt16LE(0x0002, 2);
  data.writeUInt32LE(1, 4);
  data.writeBigUInt64LE(0n, 8);
  data.writeBigUInt64LE(system, 24);
  data.writeUInt32LE(1024 * 1024, 32);
  data.writeUInt32LE(8192, 36);
  return data;
}

async function fillSource(a: ObjectStore, system = SYSTEM): Promise<void> {
  await a.put(layout.clusterInfo(), { kind: 'buffer', data: Buffer.from(JSON.stringify({ format: 1, cluster: 'main', systemIdentifier: system, pgMajor: 15, created: '2026-11-23T00:00:00.000Z' })) });
  for (let i = 1; i <= 3; i++) {
    const name = `00000001000000000000000${i}`;
    await a.put(layout.walObject(name), { kind: 'buffer', data: await zstdCompressBuffer(segment(i, BigInt(system)), { level: 3 }) });
  }
  const data = Buffer.alloc(300_000, 9);
  const id = '20261123T020000Z';
  await a.put(layout.backupObject(id, 'base.tar.zst'), { kind: 'buffer', data });
  const manifest: BackupManifest = {
    format: 1, backupId: id, cluster: 'main', type: 'full', startTime: '2026-11-23T02:00:00.000Z', stopTime: '2026-11-23T02:00:05.000Z',
    startLsn: '0/1000028', stopLsn: '0/2000100', timeline: 1, startWal: '000000010000000000000001', stopWal: '000000010000000000000002',
    systemIdentifier: system, pgVersion: '15.8', pgVersionNum: 150008, source: 'db:5432', compression: { algorithm: 'zstd', level: 3 },
    bytes: 1_000_000, storedBytes: data.length, objects: [{ name: 'base.tar.zst', bytes: 1_000_000, storedBytes: data.length, sha256: sha256Hex(data), encoding: 'tar+zstd' }], pgdrVersion: '0.1.0',
  };
  await a.put(layout.backupManifest(id), { kind: 'buffer', data: serializeManifest(manifest) });
}

describe('copyRepository', () => {
  it('fills an empty repository, then copies nothing the second time', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    const first = await copyRepository({ from: a, to: b, layout, log: () => undefined });
    expect(first).toMatchObject({ copied: 6, skipped: 0, backups: { copied: 1, skipped: 0 }, walFiles: { copied: 3, skipped: 0 } });
    expect((await b.getBuffer(layout.backupManifest('20261123T020000Z'))).equals(await a.getBuffer(layout.backupManifest('20261123T020000Z')))).toBe(true);
    const second = await copyRepository({ from: a, to: b, layout, log: () => undefined });
    expect(second).toMatchObject({ copied: 0, skipped: 6 });
  });

  it('finishes a backup whose objects a stopped copy left without a manifest, re-copying one that is not what the manifest records', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    const key = layout.backupObject('20261123T020000Z', 'base.tar.zst');
    await b.put(key, { kind: 'buffer', data: Buffer.alloc(300_000, 1) });
    const report = await copyRepository({ from: a, to: b, layout, log: () => undefined });
    expect(report.backups.copied).toBe(1);
    expect((await b.getBuffer(key)).equals(await a.getBuffer(key))).toBe(true);
  });

  it('refuses a target of another PostgreSQL system before writing anything', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    await b.put(layout.clusterInfo(), { kind: 'buffer', data: Buffer.from(JSON.stringify({ format: 1, cluster: 'main', systemIdentifier: '7300000000000000999', pgMajor: 15, created: '2026-11-23T00:00:00.000Z' })) });
    await expect(copyRepository({ from: a, to: b, layout, log: () => undefined })).rejects.toThrow(/belongs to PostgreSQL system 7300000000000000999, not 7300000000000000001/);
    expect(await b.head(layout.walObject('000000010000000000000001'))).toBeNull();
  });

  it('reports a WAL name the target holds with other content, and overwrites nothing', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    // Another server's segment under the same name (its size differs: a same-size object is taken as the same WAL).
    const foreign = segment(7);
    randomFillSync(foreign, 4096);
    const other = await zstdCompressBuffer(foreign, { level: 1 });
    await b.put(layout.walObject('000000010000000000000002'), { kind: 'buffer', data: other });
    const lines: string[] = [];
    await expect(copyRepository({ from: a, to: b, layout, log: (m) => lines.push(m) })).rejects.toThrow(RepositoryError);
    expect((await b.getBuffer(layout.walObject('000000010000000000000002'))).equals(other)).toBe(true);
    expect(lines.some((l) => l.includes('000000010000000000000002.zst holds a different WAL file under this name'))).toBe(true);
  });

  it('does not commit a backup whose object is not what its manifest records', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    const key = layout.backupObject('20261123T020000Z', 'base.tar.zst');
    await a.put(key, { kind: 'buffer', data: Buffer.alloc(300_000, 8) });
    await expect(copyRepository({ from: a, to: b, layout, log: () => undefined })).rejects.toThrow(VerificationError);
    expect(await b.head(key)).toBeNull();
    expect(await b.head(layout.backupManifest('20261123T020000Z'))).toBeNull();
  });

  it('copies an encrypted WAL file as stored, without a key', async () => {
    const a = store();
    const b = store();
    await fillSource(a);
    const sealed = Buffer.concat([Buffer.from('age-encryption.org/v1\n-> X25519 stand-in\n'), Buffer.alloc(2000, 3)]);
    await a.put(layout.walObject('000000010000000000000004'), { kind: 'buffer', data: sealed });
    const report = await copyRepository({ from: a, to: b, layout, log: () => undefined });
    expect(report.walFiles.copied).toBe(4);
    expect((await b.getBuffer(layout.walObject('000000010000000000000004'))).equals(sealed)).toBe(true);
  });
});
