import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { armor, Decrypter, Encrypter, Stanza, type Identity, type Recipient } from 'age-encryption';
import { UsageError } from '../errors.js';
import { AGE_ARMOR_BEGIN, isProtectedIdentity, useUnlockedIdentity } from './age-buffer.js';

/**
 * Passphrase mode: the age identity file is itself an age file encrypted with a passphrase (what `age -p` writes, and
 * what `age -d -i` prompts for at a terminal), and pgdr opens it with PGDR_PASSPHRASE or PGDR_PASSPHRASE_FILE. The
 * passphrase is then the only secret: the protected identity file and the recipient may be kept anywhere, even
 * beside the backups. The keys it holds stay in this process and reach `age -d` through a pipe (src/stream/age-buffer.ts).
 *
 * The file's format and its payload are age-encryption's (the npm implementation of the spec); only the scrypt
 * stanza is done here, with node:crypto's native scrypt and ChaCha20-Poly1305: the JavaScript scrypt takes 3-4 s at
 * age's default work factor, the native one about 1 s.
 */

const SCRYPT_LABEL = 'age-encryption.org/v1/scrypt';
/** age writes 18; 20 (1 GiB of scrypt memory) is as far as pgdr goes for a file it is handed. */
const MAX_WORK_FACTOR = 20;
const SECRET_KEY = /^AGE-SECRET-KEY-1[0-9A-Z]+$/;

/**
 * When the identity file is passphrase-protected, opens it with the passphrase and has every later `age -d` use the
 * keys it holds; a plain identity file is left to age. A protected file without a passphrase, a passphrase without
 * a protected file, and a passphrase that does not open it are usage errors (exit 2), before anything is read from or
 * written to a repository.
 */
export async function unlockIdentityFile(identityFile: string, passphrase: string | undefined, passphraseSource: string): Promise<void> {
  let data: Buffer;
  try {
    data = await readFile(identityFile);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`cannot read identity file ${identityFile} (${code})`, 'pass a readable age identity file with --identity-file or PGDR_IDENTITY_FILE', err);
  }
  if (!isProtectedIdentity(data)) {
    if (passphrase === undefined) return;
    throw new UsageError(
      `${passphraseSource} is set, but identity file ${identityFile} is not protected by a passphrase`,
      'unset it, or protect the identity with a passphrase (age -p; docs/runbooks/key-management.md)',
    );
  }
  if (passphrase === undefined) {
    throw new UsageError(`identity file ${identityFile} is protected by a passphrase, and none was given`, 'set PGDR_PASSPHRASE_FILE to a file holding the passphrase (or PGDR_PASSPHRASE)');
  }
  useUnlockedIdentity(identityFile, await openProtectedIdentity(data, passphrase, identityFile));
}

/** The keys (AGE-SECRET-KEY-1… lines) inside a passphrase-protected identity file. */
export async function openProtectedIdentity(data: Buffer, passphrase: string, name: string): Promise<string> {
  const binary = data.toString('latin1', 0, AGE_ARMOR_BEGIN.length) === AGE_ARMOR_BEGIN ? armor.decode(data.toString('utf8')) : data;
  const decrypter = new Decrypter();
  const identity = new ScryptIdentity(passphrase);
  decrypter.addIdentity(identity);
  let text: string;
  try {
    text = await decrypter.decrypt(binary, 'text');
  } catch (err) {
    if (identity.refused) throw new UsageError(`the passphrase does not open identity file ${name}`, 'check PGDR_PASSPHRASE_FILE (one trailing newline is dropped, nothing else)');
    if (!identity.matched) {
      throw new UsageError(`identity file ${name} is encrypted, but not with a passphrase`, 'pgdr opens identity files protected with age -p; give the plain identity file otherwise');
    }
    throw new UsageError(`identity file ${name} does not decrypt: ${(err as Error).message}`, 'the file may be damaged: restore it from where the key is kept (docs/runbooks/key-management.md)', err);
  }
  const keys = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (keys.length === 0 || !keys.every((key) => SECRET_KEY.test(key))) {
    throw new UsageError(`identity file ${name} opens, but does not hold age identities (AGE-SECRET-KEY-1…)`, 'protect the output of age-keygen with age -p, nothing else');
  }
  return `${keys.join('\n')}\n`;
}

/** Encrypts `keys` with a passphrase, as `age -p` does (tests, and anyone scripting key creation without a terminal). */
export async function protectIdentity(keys: string, passphrase: string, workFactor = 18): Promise<Buffer> {
  const encrypter = new Encrypter();
  encrypter.addRecipient(new ScryptRecipient(passphrase, workFactor));
  return Buffer.from(await encrypter.encrypt(keys));
}

function scryptKey(passphrase: string, salt: Uint8Array, workFactor: number): Promise<Buffer> {
  const labelAndSalt = Buffer.concat([Buffer.from(SCRYPT_LABEL, 'ascii'), salt]);
  const N = 2 ** workFactor;
  return new Promise((resolve, reject) =>
    scrypt(passphrase, labelAndSalt, 32, { N, r: 8, p: 1, maxmem: 128 * N * 8 + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

const ZERO_NONCE = Buffer.alloc(12);

/** The scrypt stanza of age's spec: the file key sealed with ChaCha20-Poly1305 under scrypt(passphrase, label || salt). */
class ScryptRecipient implements Recipient {
  constructor(
    private readonly passphrase: string,
    private readonly workFactor: number,
  ) {}

  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = randomBytes(16);
    const key = await scryptKey(this.passphrase, salt, this.workFactor);
    const cipher = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
    const body = Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
    return [new Stanza(['scrypt', salt.toString('base64').replace(/=+$/, ''), String(this.workFactor)], body)];
  }
}

class ScryptIdentity implements Identity {
  /** A scrypt stanza was there. */
  matched = false;
  /** It was, and the passphrase did not open it. */
  refused = false;

  constructor(private readonly passphrase: string) {}

  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | null> {
    const stanza = stanzas.find((s) => s.args[0] === 'scrypt');
    if (stanza === undefined) return null;
    this.matched = true;
    // The spec: a passphrase-encrypted file has no other recipient, or a passphrase holder could not tell who else reads it.
    if (stanzas.length !== 1) throw new Error('the scrypt stanza is not the only one in the header');
    const [, saltText, factorText] = stanza.args;
    if (stanza.args.length !== 3 || !/^[1-9][0-9]*$/.test(factorText ?? '') || !/^[A-Za-z0-9+/]{22}$/.test(saltText ?? '') || stanza.body.length !== 32) {
      throw new Error('invalid scrypt stanza');
    }
    const workFactor = Number(factorText);
    if (workFactor > MAX_WORK_FACTOR) throw new Error(`scrypt work factor ${workFactor} is above ${MAX_WORK_FACTOR}`);
    const key = await scryptKey(this.passphrase, Buffer.from(saltText!, 'base64'), workFactor);
    const body = Buffer.from(stanza.body);
    const decipher = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
    decipher.setAuthTag(body.subarray(16));
    try {
      return Buffer.concat([decipher.update(body.subarray(0, 16)), decipher.final()]);
    } catch {
      this.refused = true;
      return null;
    }
  }
}
