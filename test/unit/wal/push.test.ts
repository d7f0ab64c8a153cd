import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RepositoryError } from '../../../src/errors.js';
import type { RunningCommand } from '../../../src/process/run-command.js';
import { RepositoryLayout } from '../../../src/repo/layout.js';
import { createFsStore } from '../../../src/storage/fs-store.js';
import { startZstdCompressFile, zstdDecompressBuffer } from '../../../src/stream/zstd-buffer.js';
import { readyBesides } from '../../../src/wal/background-pusher.js';
import { pushWal, type WalPushOptions } from '../../../src/wal/push.js';
import { readStoredRecord, storedRecordPath, sweepMarkers } from '../../../src/wal/spool.js';
import { sha256Hex } from '../../../src/stream/checksum.js';

const dirs: string[] = [];
function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-push-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A WAL segment as PostgreSQL 15 writes it: a long page header with the system identifier, then data. */
function segment(fill: number, systemIdentifier = 7300000000000000001n): Buffer {
  const data = Buffer.alloc(1024 * 1024, fill);
  data.writeUInt16LE(0xd110, 0);
  data.writeUInt16LE(0x0002, 2);
  data.writeUInt32LE(1, 4);
  data.writeBigUInt64LE(systemIdentifier, 24);
  data.writeUInt32LE(1024 * 1024, 32);
  data.writeUInt32LE(8192, 36);
  return data;
}

function setup() {
  const pgWal = temp();
  const repo = temp();
  const store = createFsStore({ root: repo });
  const layout = new RepositoryLayout('c1');
  const options: WalPushOptions = { targets: [{ store, id: 'r', label: 'r' }], layout, compressLevel: 3, spoolDir: temp(), repoUrl: `file://${repo}`, log: () => undefined };
  return { pgWal, repo, store, layout, options };
}

/** A compression started ahead, as the wal push entry starts it, that records whether it was stopped. */
function startedAhead(path: string): RunningCommand & { killed: boolean } {
  const running = startZstdCompressFile(path, { level: 3, threads: 1 });
  const tracked = {
    result: running.result,
    killed: false,
    kill() {
      tracked.killed = true;
      running.kill();
    },
  };
  return tracked;
}

describe('pushWal', () => {
  it('stores a segment; the same content again is success, other content under the name is refused and nothing is overwritten', async () => {
    const { pgWal, store, layout, options } = setup();
    const name = '000000010000000000000001';
    const path = join(pgWal, name);
    writeFileSync(path, segment(1));
    expect(await pushWal(path, options)).toBe('stored');
    expect(await pushWal(path, options)).toBe('already-stored');
    writeFileSync(path, segment(2));
    await expect(pushWal(path, options)).rejects.toThrow(RepositoryError);
    await expect(pushWal(path, options)).rejects.toThrow(/already in .* with different content; nothing was overwritten/);
    expect((await zstdDecompressBuffer(await store.getBuffer(layout.walObject(name)))).equals(segment(1))).toBe(true);
  });

  it('stores the frame of a compression started ahead of it', async () => {
    const { pgWal, store, layout, options } = setup();
    const path = join(pgWal, '000000010000000000000002');
    writeFileSync(path, segment(3));
    const ahead = startedAhead(path);
    expect(await pushWal(path, options, ahead)).toBe('stored');
    expect((await zstdDecompressBuffer(await store.getBuffer(layout.walObject('000000010000000000000002')))).equals(segment(3))).toBe(true);
  });

  it("refuses another system's segment before anything is stored, and stops the compression started for it", async () => {
    const { pgWal, repo, store, layout, options } = setup();
    writeFileSync(join(pgWal, '000000010000000000000001'), segment(1));
    await pushWal(join(pgWal, '000000010000000000000001'), options);
    const stranger = join(pgWal, '000000010000000000000002');
    writeFileSync(stranger, segment(4, 7300000000000000999n));
    const ahead = startedAhead(stranger);
    await expect(pushWal(stranger, options, ahead)).rejects.toThrow(/belongs to PostgreSQL system 7300000000000000001, not 7300000000000000999/);
    expect(ahead.killed).toBe(true);
    expect(await store.head(layout.walObject('000000010000000000000002'))).toBeNull();
    expect(JSON.parse(readFileSync(join(repo, 'c1', 'cluster.json'), 'utf8')).systemIdentifier).toBe('7300000000000000001');
  });

  it('refuses a file whose header is no WAL page header pgdr knows', async () => {
    const { pgWal, store, layout, options } = setup();
    const path = join(pgWal, '000000010000000000000003');
    writeFileSync(path, Buffer.alloc(64 * 1024, 7));
    await expect(pushWal(path, options)).rejects.toThrow('000000010000000000000003 has WAL page magic 0x707, which pgdr does not know');
    expect(await store.head(layout.walObject('000000010000000000000003'))).toBeNull();
  });
});

/** An age key pair made with age-keygen (the Debian package the encryption needs). */
function ageKey(): { identity: string; recipient: string } {
  const identity = join(temp(), 'key.txt');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
  return { identity, recipient: execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim() };
}

describe('pushWal of an encrypted segment, retried without the identity', () => {
  const name = '000000010000000000000005';

  it('records the file and the stored bytes before the upload (0600), and a retry of the same file is accepted from that record', async () => {
    const { pgWal, store, layout, options } = setup();
    const key = ageKey();
    const encrypted = { ...options, encryptTo: [key.recipient] };
    const path = join(pgWal, name);
    writeFileSync(path, segment(5));
    expect(await pushWal(path, encrypted)).toBe('stored');
    const stored = await store.getBuffer(layout.walObject(name));
    expect(stored.subarray(0, 21).toString('latin1')).toBe('age-encryption.org/v1');
    const recordFile = storedRecordPath(options.spoolDir, 'c1', name);
    expect(statSync(recordFile).mode & 0o777).toBe(0o600);
    const first = { sha256: sha256Hex(segment(5)), storedSha256: sha256Hex(stored), repo: options.targets[0]!.id };
    expect(readStoredRecord(options.spoolDir, 'c1', name)).toEqual([first]);
    // The retry encrypts anew (other bytes), finds the name taken, and takes its own line back out of the record.
    expect(await pushWal(path, encrypted)).toBe('already-stored');
    expect(readStoredRecord(options.spoolDir, 'c1', name)).toEqual([first]);
    expect((await store.getBuffer(layout.walObject(name))).equals(stored)).toBe(true);
  });

  it('refuses other content under the name, a record of another repository, and no record at all, overwriting nothing', async () => {
    const { pgWal, store, layout, options } = setup();
    const key = ageKey();
    const encrypted = { ...options, encryptTo: [key.recipient] };
    const path = join(pgWal, name);
    writeFileSync(path, segment(5));
    await pushWal(path, encrypted);
    const stored = await store.getBuffer(layout.walObject(name));
    writeFileSync(path, segment(6));
    await expect(pushWal(path, encrypted)).rejects.toThrow(/already in .* with different content; nothing was overwritten/);
    writeFileSync(path, segment(5));
    // The refused attempt left the record of the stored copy as it was.
    expect(readStoredRecord(options.spoolDir, 'c1', name).map((a) => a.sha256)).toEqual([sha256Hex(segment(5))]);
    writeFileSync(path, segment(5));
    await expect(pushWal(path, { ...encrypted, targets: [{ store, id: 'elsewhere', label: 'elsewhere' }] })).rejects.toThrow(/cannot tell whether it is this same file.*records no earlier push of these bytes/);
    rmSync(storedRecordPath(options.spoolDir, 'c1', name));
    await expect(pushWal(path, encrypted)).rejects.toThrow(RepositoryError);
    await expect(pushWal(path, encrypted)).rejects.toThrow(/the spool records no earlier push of these bytes/);
    await expect(pushWal(path, encrypted)).rejects.toMatchObject({ hint: expect.stringMatching(/--identity-file KEY/) });
    expect((await store.getBuffer(layout.walObject(name))).equals(stored)).toBe(true);
  });

  it('with an identity, decrypts the stored copy and compares, record or not', async () => {
    const { pgWal, options } = setup();
    const key = ageKey();
    const path = join(pgWal, name);
    writeFileSync(path, segment(5));
    await pushWal(path, { ...options, encryptTo: [key.recipient] });
    rmSync(storedRecordPath(options.spoolDir, 'c1', name));
    const withKey = { ...options, encryptTo: [key.recipient], identityFile: key.identity };
    expect(await pushWal(path, withKey)).toBe('already-stored');
    writeFileSync(path, segment(6));
    await expect(pushWal(path, withKey)).rejects.toThrow(/with different content; nothing was overwritten/);
  });

  it('on a store that ignores conditional writes, reads its own bytes back without a key, and a retry is accepted from the record', async () => {
    const { pgWal, options } = setup();
    const key = ageKey();
    const unsafe = { ...options, encryptTo: [key.recipient], storeIgnoresConditions: true };
    const path = join(pgWal, name);
    writeFileSync(path, segment(5));
    expect(await pushWal(path, unsafe)).toBe('stored');
    expect(await pushWal(path, unsafe)).toBe('already-stored');
    expect(readStoredRecord(options.spoolDir, 'c1', name)).toHaveLength(1);
  });

  it('sweeps records of files PostgreSQL no longer marks ready, but not the one being pushed', () => {
    const { pgWal, options } = setup();
    mkdirSync(join(pgWal, 'archive_status'));
    mkdirSync(join(options.spoolDir, 'c1'));
    for (const n of ['000000010000000000000007', '000000010000000000000008', '000000010000000000000009']) {
      writeFileSync(storedRecordPath(options.spoolDir, 'c1', n), '{}');
    }
    writeFileSync(join(pgWal, 'archive_status', '000000010000000000000008.ready'), '');
    sweepMarkers(options.spoolDir, 'c1', pgWal, '000000010000000000000009');
    expect(['07', '08', '09'].map((n) => existsSync(storedRecordPath(options.spoolDir, 'c1', `0000000100000000000000${n}`)))).toEqual([false, true, true]);
  });
});

describe('readyBesides', () => {
  it('sees other files PostgreSQL marked ready, and nothing where there is no archive_status', () => {
    const pgWal = temp();
    expect(readyBesides(pgWal, '000000010000000000000001')).toBe(false);
    mkdirSync(join(pgWal, 'archive_status'));
    writeFileSync(join(pgWal, 'archive_status', '000000010000000000000001.ready'), '');
    writeFileSync(join(pgWal, 'archive_status', '000000010000000000000000.done'), '');
    expect(readyBesides(pgWal, '000000010000000000000001')).toBe(false);
    writeFileSync(join(pgWal, 'archive_status', '000000010000000000000002.ready'), '');
    expect(readyBesides(pgWal, '000000010000000000000001')).toBe(true);
  });

  it('stores into every target; one that fails fails the push, and the retry finds the other holding it already', async () => {
    const { pgWal, store, layout, options } = setup();
    const second = createFsStore({ root: temp() });
    let down = true;
    const flaky: typeof second = Object.create(second);
    flaky.put = (...args) => (down ? Promise.reject(new RepositoryError('cannot reach the S3 endpoint (ECONNREFUSED)', 'start it')) : second.put(...args));
    const lines: string[] = [];
    const both: WalPushOptions & { targets: WalPushOptions['targets'] } = { ...options, targets: [{ store, id: 'r2', label: 'r2' }, { store: flaky, id: 'b2', label: 'b2' }], log: (m) => lines.push(m) };
    const name = '000000010000000000000001';
    const path = join(pgWal, name);
    writeFileSync(path, segment(1));
    await expect(pushWal(path, both)).rejects.toThrow('cannot reach the S3 endpoint (ECONNREFUSED)');
    expect(await store.head(layout.walObject(name))).not.toBeNull();
    expect(await second.head(layout.walObject(name))).toBeNull();
    expect(lines).toContain(`${name}: repository b2: cannot reach the S3 endpoint (ECONNREFUSED)`);
    expect(lines).toContain(`${name} is in r2; PostgreSQL will retry for the rest`);
    // The retry sends it to b2 only: r2's copy is named in the spool (with the file's sha256), not compared again.
    let r2Writes = 0;
    const counting: typeof store = Object.create(store);
    counting.put = (...args) => {
      r2Writes++;
      return store.put(...args);
    };
    both.targets = [{ store: counting, id: 'r2', label: 'r2' }, { store: flaky, id: 'b2', label: 'b2' }];
    down = false;
    expect(await pushWal(path, both)).toBe('stored');
    expect(r2Writes).toBe(0);
    expect(lines).toContain(`${name} is in r2 already; storing it in b2`);
    expect((await zstdDecompressBuffer(await second.getBuffer(layout.walObject(name)))).equals(segment(1))).toBe(true);
    expect(await pushWal(path, both)).toBe('already-stored');
  });

  it('encrypts a segment once per set of recipients: a repository with its own gets its own ciphertext, the other the global form', async () => {
    const { pgWal, store, layout, options } = setup();
    const dir = temp();
    const identity = join(dir, 'key');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    const offsite = createFsStore({ root: temp() });
    const both: WalPushOptions = { ...options, targets: [{ store, id: 'r2', label: 'r2' }, { store: offsite, id: 'b2', label: 'b2', encryptTo: [recipient] }] };
    const name = '000000010000000000000001';
    writeFileSync(join(pgWal, name), segment(1));
    expect(await pushWal(join(pgWal, name), both)).toBe('stored');
    const plain = await store.getBuffer(layout.walObject(name));
    const sealed = await offsite.getBuffer(layout.walObject(name));
    expect((await zstdDecompressBuffer(plain)).equals(segment(1))).toBe(true);
    expect(sealed.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const opened = execFileSync('age', ['-d', '-i', identity], { input: sealed });
    expect((await zstdDecompressBuffer(opened)).equals(segment(1))).toBe(true);
  });
});
