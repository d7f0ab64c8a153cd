import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { armor, Decrypter, Encrypter } from 'age-encryption';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { ageDecryptBuffer, ageEncryptBuffer, identityIsProtected, identityRecipients } from '../../../src/stream/age-buffer.js';
import { decryptStage } from '../../../src/stream/age.js';
import { openProtectedIdentity, protectIdentity, unlockIdentityFile } from '../../../src/stream/age-passphrase.js';

const dir = mkdtempSync(join(tmpdir(), 'pgdr-passphrase-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyPair(name: string): { file: string; keys: string; recipient: string } {
  const file = join(dir, `${name}.txt`);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  return { file, keys: readFileSync(file, 'utf8'), recipient: execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim() };
}

const PASSPHRASE = 'tuning-fork lantern 4711';
// A low work factor keeps the tests fast; what is checked is the format, not the cost.
const FAST = 10;

describe('passphrase-protected identity files', () => {
  const ops = keyPair('ops');

  it('protects keys as age -p does: the npm implementation of the spec opens them with the passphrase', async () => {
    const protectedFile = await protectIdentity(ops.keys, PASSPHRASE, FAST);
    expect(protectedFile.toString('latin1', 0, 22)).toBe('age-encryption.org/v1\n');
    expect(protectedFile.toString('latin1')).toMatch(/^-> scrypt [A-Za-z0-9+/]{22} 10$/m);
    expect(protectedFile.toString('latin1')).not.toContain('AGE-SECRET-KEY');
    const decrypter = new Decrypter();
    decrypter.addPassphrase(PASSPHRASE);
    expect(await decrypter.decrypt(protectedFile, 'text')).toBe(ops.keys);
  });

  it('opens what the npm implementation protected, binary or armored, and keeps only the key lines', async () => {
    const encrypter = new Encrypter();
    encrypter.setPassphrase(PASSPHRASE);
    encrypter.setScryptWorkFactor(FAST);
    const binary = Buffer.from(await encrypter.encrypt(ops.keys));
    const key = ops.keys.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'));
    expect(await openProtectedIdentity(binary, PASSPHRASE, 'x')).toBe(`${key}\n`);
    expect(await openProtectedIdentity(Buffer.from(armor.encode(binary)), PASSPHRASE, 'x')).toBe(`${key}\n`);
  });

  it('says a wrong passphrase is wrong, never echoing either passphrase', async () => {
    const protectedFile = await protectIdentity(ops.keys, PASSPHRASE, FAST);
    const err = await openProtectedIdentity(protectedFile, 'not it', 'ops.age').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe('the passphrase does not open identity file ops.age');
    expect(JSON.stringify(err)).not.toMatch(/tuning-fork|not it/);
  });

  it('refuses a file encrypted to a key rather than a passphrase, and one that holds no identity', async () => {
    const toKey = await ageEncryptBuffer(Buffer.from(ops.keys), [ops.recipient]);
    await expect(openProtectedIdentity(toKey, PASSPHRASE, 'k')).rejects.toThrow(/encrypted, but not with a passphrase/);
    const notKeys = await protectIdentity('hello\n', PASSPHRASE, FAST);
    await expect(openProtectedIdentity(notKeys, PASSPHRASE, 'n')).rejects.toThrow(/does not hold age identities/);
  });

  it('refuses an absurd work factor instead of spending gigabytes on it', async () => {
    const protectedFile = await protectIdentity(ops.keys, PASSPHRASE, FAST);
    const inflated = Buffer.from(protectedFile.toString('latin1').replace(/^(-> scrypt \S+) 10$/m, '$1 30'), 'latin1');
    await expect(openProtectedIdentity(inflated, PASSPHRASE, 'x')).rejects.toThrow(/work factor 30/);
  });

  it('once unlocked, age -d decrypts with the keys from a pipe: the protected file is never given to age', async () => {
    const file = join(dir, 'ops.age');
    writeFileSync(file, await protectIdentity(ops.keys, PASSPHRASE, FAST));
    expect(identityIsProtected(file)).toBe(true);
    expect(identityIsProtected(ops.file)).toBe(false);
    const sealed = await ageEncryptBuffer(Buffer.from('row 42'), [ops.recipient]);
    await expect(ageDecryptBuffer(sealed, file, 'the object')).rejects.toThrow();
    await unlockIdentityFile(file, PASSPHRASE, 'PGDR_PASSPHRASE');
    expect(await identityRecipients(file)).toEqual([ops.recipient]);
    expect((await ageDecryptBuffer(sealed, file, 'the object')).toString()).toBe('row 42');
    // The streaming stage (restore, wal fetch) too.
    const big = randomBytes(300_000);
    const restored: Buffer[] = [];
    await pipeline(Readable.from([await ageEncryptBuffer(big, [ops.recipient])]), decryptStage(file, 'a stream'), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) restored.push(chunk);
    });
    expect(Buffer.concat(restored).equals(big)).toBe(true);
  });

  it('asks for the passphrase a protected file needs, and refuses one a plain file does not', async () => {
    const file = join(dir, 'ops2.age');
    writeFileSync(file, await protectIdentity(ops.keys, PASSPHRASE, FAST));
    await expect(unlockIdentityFile(file, undefined, 'PGDR_PASSPHRASE')).rejects.toThrow(/protected by a passphrase, and none was given/);
    await expect(unlockIdentityFile(ops.file, PASSPHRASE, 'PGDR_PASSPHRASE_FILE')).rejects.toThrow(/PGDR_PASSPHRASE_FILE is set, but identity file .* is not protected/);
    await expect(unlockIdentityFile(ops.file, undefined, 'PGDR_PASSPHRASE')).resolves.toBeUndefined();
  });
});
