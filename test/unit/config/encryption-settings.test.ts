import { describe, expect, it } from 'vitest';
import { recipientsSetting, resolveSettingsFrom } from '../../../src/config/resolve-settings.js';
import { UsageError } from '../../../src/errors.js';
import { isAgeEncrypted } from '../../../src/stream/age-buffer.js';
import { walEncryptTo } from '../../../src/wal/encoding.js';

const OPS = 'age1atsj87lsu6x2x6hfp7mmf8nc4utce08j0xmuq6lhxvvlgul6fdks8p59j5';
const ESCROW = 'age10wcqsrcmcw35v7n42dksrjew9rpcf4zageents2aa6hzj93mtsqqktg8he';
const SECRET = 'AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQ';

describe('encryption settings', () => {
  it('takes recipients from flags, else the comma-separated environment, else the config file, without duplicates', () => {
    const fromFlags = resolveSettingsFrom({ encryptRecipient: [OPS, ESCROW, OPS] }, { PGDR_ENCRYPT_RECIPIENTS: ESCROW }, '/home/x', {});
    expect(fromFlags.encryptRecipients).toEqual([OPS, ESCROW]);
    const fromEnv = resolveSettingsFrom({}, { PGDR_ENCRYPT_RECIPIENTS: ` ${OPS} , ${ESCROW} ` }, '/home/x', { encryptRecipients: [OPS] });
    expect(fromEnv.encryptRecipients).toEqual([OPS, ESCROW]);
    const fromFile = resolveSettingsFrom({}, {}, '/home/x', { encryptRecipients: ESCROW, identityFile: '/keys/ops.txt' });
    expect(fromFile.encryptRecipients).toEqual([ESCROW]);
    expect(fromFile.identityFile).toBe('/keys/ops.txt');
    expect(resolveSettingsFrom({}, {}, '/home/x', {}).encryptRecipients).toEqual([]);
  });

  it('refuses a private key given as a recipient, without repeating it', () => {
    let error: unknown;
    try {
      recipientsSetting([SECRET], '--encrypt-recipient');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(/private key, not a recipient/);
    expect((error as Error).message).not.toContain(SECRET);
  });

  it('refuses what is not an X25519 recipient', () => {
    expect(() => recipientsSetting(['age1short'], 'PGDR_ENCRYPT_RECIPIENTS')).toThrow(/not an age X25519 recipient/);
    expect(() => recipientsSetting([OPS.toUpperCase()], 'x')).toThrow(UsageError);
  });

  it('takes a passphrase only to open an identity file: alone it is refused rather than ignored, and never echoed', () => {
    expect(resolveSettingsFrom({}, { PGDR_PASSPHRASE_FILE: '/run/secrets/p', PGDR_IDENTITY_FILE: '/run/secrets/key.age' }, '/home/x', {}).identityFile).toBe('/run/secrets/key.age');
    expect(() => resolveSettingsFrom({}, { PGDR_PASSPHRASE: 'hunter2hunter2' }, '/home/x', {})).toThrow(/PGDR_PASSPHRASE is set/);
    expect(() => resolveSettingsFrom({}, { PGDR_PASSPHRASE_FILE: '/run/secrets/p' }, '/home/x', {})).toThrow(/PGDR_PASSPHRASE_FILE is set/);
    try {
      resolveSettingsFrom({}, { PGDR_PASSPHRASE: 'hunter2hunter2' }, '/home/x', {});
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});

describe('what is encrypted', () => {
  it('encrypts segments and .partial segments, not history or backup-history files', () => {
    expect(walEncryptTo('000000010000000000000003', [OPS])).toEqual([OPS]);
    expect(walEncryptTo('000000010000000000000005.partial', [OPS])).toEqual([OPS]);
    expect(walEncryptTo('00000002.history', [OPS])).toEqual([]);
    expect(walEncryptTo('000000010000000000000002.00000028.backup', [OPS])).toEqual([]);
  });

  it('tells an age file from a zstd frame by its first bytes', () => {
    expect(isAgeEncrypted(Buffer.from('age-encryption.org/v1\n-> X25519 abc\n'))).toBe(true);
    expect(isAgeEncrypted(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]))).toBe(false);
    expect(isAgeEncrypted(Buffer.from('age-encryption.org/v'))).toBe(false);
  });
});
