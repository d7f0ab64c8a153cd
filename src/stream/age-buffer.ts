import { closeSync, openSync, readSync } from 'node:fs';
import { spawn, type ChildProcess, type StdioNull, type StdioPipe } from 'node:child_process';
import { childEnv } from '../process/child-env.js';
import { Readable } from 'node:stream';
import { ServiceError, UsageError } from '../errors.js';
import { killOnExit, watchChild } from '../process/child.js';
import { runCommand, startCommand, writeFd3, type RunningCommand } from '../process/run-command.js';
import { compressArgs, ZSTD, type ZstdOptions } from './zstd-buffer.js';

/**
 * Encryption at rest with age (https://age-encryption.org/v1): X25519 recipients, so a host that writes backups holds
 * only public keys, and a streaming AEAD in 64 KiB chunks. pgdr runs the age command-line tool (Debian's `age`),
 * chosen by benchmark over the npm implementation (docs/benchmarks.md, "Choosing the age implementation"): it
 * encrypts several times faster on its own core, adds one short-lived process per WAL segment instead of a
 * JavaScript cipher in the push bundle, and is the tool an operator restores with by hand.
 *
 * Whole files and buffers (WAL, small objects) are handled here, with node:child_process only, so `wal push` loads
 * no more for them; src/stream/age.ts adds the streaming stages. Secrets never reach a command line: age reads the
 * identity from the file whose path pgdr passes (`-i FILE`), or the keys of a passphrase-protected one from a pipe;
 * recipients are public keys.
 */
export const AGE = process.env.PGDR_AGE_BIN ?? 'age';
export const AGE_KEYGEN = process.env.PGDR_AGE_KEYGEN_BIN ?? 'age-keygen';

/** Every age file begins with this line; a zstd frame begins with 28 b5 2f fd. */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n', 'ascii');

export const AGE_INSTALL_HINT = 'install the age package (apt-get install age)';

/** How the ASCII form of an age file (`age -a`) begins. */
export const AGE_ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';

/**
 * Whether an identity file's first bytes are an age file (binary or armored) rather than keys: one protected with
 * a passphrase (src/stream/age-passphrase.ts).
 */
export function isProtectedIdentity(head: Buffer): boolean {
  return isAgeEncrypted(head) || head.toString('latin1', 0, AGE_ARMOR_BEGIN.length) === AGE_ARMOR_BEGIN;
}

/** Whether the identity file begins like an age file; an unreadable one is left for age to report. */
export function identityIsProtected(identityFile: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(identityFile, 'r');
    const head = Buffer.alloc(64);
    return isProtectedIdentity(head.subarray(0, readSync(fd, head, 0, head.length, 0)));
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function isAgeEncrypted(head: Buffer): boolean {
  return head.length >= AGE_MAGIC.length && head.subarray(0, AGE_MAGIC.length).equals(AGE_MAGIC);
}

export function encryptArgs(recipients: readonly string[]): string[] {
  if (recipients.length === 0) throw new Error('encryptArgs: no recipients');
  return ['-e', ...recipients.flatMap((r) => ['-r', r])];
}

/**
 * Identity files pgdr has unlocked with the passphrase (src/stream/age-passphrase.ts), by path, and the keys they
 * hold. age reads those from a pipe instead of the file, so that they are written down nowhere: Node's extra stdio is
 * a socket, which age cannot open by /dev/fd path, so bash turns it into a pipe (a process substitution) and then
 * becomes age itself, which keeps signals and the exit status age's own.
 */
const unlockedIdentities = new Map<string, Buffer>();
const AGE_WITH_KEYS_ON_FD3 = 'exec "$0" "$@" -i <(cat <&3) 3<&-';

export function useUnlockedIdentity(identityFile: string, keys: string): void {
  unlockedIdentities.set(identityFile, Buffer.from(keys.endsWith('\n') ? keys : `${keys}\n`));
}

/** The `age -d` to run for this identity: the command, its arguments, and the keys to feed its fd 3, if unlocked. */
function decryptCommand(identityFile: string): { file: string; args: string[]; keys?: Buffer } {
  const keys = unlockedIdentities.get(identityFile);
  if (keys === undefined) return { file: AGE, args: ['-d', '-i', identityFile] };
  return { file: 'bash', args: ['-c', AGE_WITH_KEYS_ON_FD3, AGE, '-d'], keys };
}

/** `age -d` with this identity, started now on `stdio` (stdin, stdout, stderr). */
export function spawnAgeDecrypt(identityFile: string, stdio: (StdioPipe | StdioNull)[]): ChildProcess {
  const { file, args, keys } = decryptCommand(identityFile);
  const child = spawn(file, args, { stdio: keys === undefined ? stdio : [...stdio, 'pipe'], env: childEnv('tool') });
  if (keys !== undefined) writeFd3(child, keys);
  return child;
}

/**
 * The error a decryption fails with, in pgdr's words: a missing or wrong identity is the user's to fix (exit 2),
 * anything else (a truncated or altered object: the AEAD refuses it) is a verification failure of the object.
 */
export function asDecryptFailure(err: unknown, what: string, identityFile: string, stderrTail?: string): unknown {
  const stderr = stderrTail ?? String((err as { cause?: { stderr?: unknown } })?.cause?.stderr ?? (err as { stderr?: unknown })?.stderr ?? (err as Error)?.message ?? '');
  if (/no identity matched/i.test(stderr)) return wrongIdentityError(what, identityFile);
  if (/reading identity file|failed to open|no such file|permission denied|no secret keys|failed to parse|malformed secret key/i.test(stderr)) {
    return new UsageError(`cannot use identity file ${identityFile}: ${lastLine(stderr)}`, 'pass a readable age identity file (AGE-SECRET-KEY-1…) with --identity-file or PGDR_IDENTITY_FILE');
  }
  return err;
}

export function wrongIdentityError(what: string, identityFile: string): UsageError {
  return new UsageError(
    `the identity in ${identityFile} cannot decrypt ${what}: it holds none of the keys it was encrypted to`,
    'pass the identity of one of its recipients (backup show and the manifest name them; an older object may need the key it was written with before a rotation)',
  );
}

export function missingIdentityError(what: string): UsageError {
  return new UsageError(`${what} is encrypted, and no identity file was given`, 'pass --identity-file FILE (or set PGDR_IDENTITY_FILE) naming the age private key of one of its recipients');
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/report unexpected or unhelpful errors/.test(l));
  return (lines[lines.length - 1] ?? '').replace(/^age: (error: )?/, '');
}

/** `armor`: the ASCII form (-----BEGIN AGE ENCRYPTED FILE-----), for a field of a JSON document. */
export async function ageEncryptBuffer(data: Buffer, recipients: readonly string[], armor = false): Promise<Buffer> {
  const { stdout } = await runCommand(AGE, [...encryptArgs(recipients), ...(armor ? ['-a'] : [])], { input: data, label: 'age', hint: AGE_INSTALL_HINT });
  return stdout;
}

/** Decrypts one whole object; `what` names it in errors. */
export async function ageDecryptBuffer(data: Buffer, identityFile: string, what: string): Promise<Buffer> {
  try {
    const { file, args, keys } = decryptCommand(identityFile);
    const { stdout } = await runCommand(file, args, {
      input: data,
      label: 'age -d',
      hint: 'the object does not decrypt: it may be damaged; run pgdr verify',
      ...(keys === undefined ? {} : { fd3: keys }),
    });
    return stdout;
  } catch (err) {
    throw asDecryptFailure(err, what, identityFile);
  }
}

/**
 * `zstd -c FILE | age -e -r …` started now, the two joined by a kernel pipe (Node sees only the encrypted frame):
 * what `wal push` stores when recipients are configured. A zstd failure fails the result even though age, which
 * reads its output, ends cleanly.
 */
export function startZstdAgeFile(path: string, options: ZstdOptions, recipients: readonly string[]): RunningCommand {
  const zstd = spawn(ZSTD, [...compressArgs(options), '--', path], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv('tool') });
  const forget = killOnExit(zstd);
  const zstdDone = watchChild(zstd, 'zstd', 'install the zstd package (apt-get install zstd), and check that the file is readable').done;
  const age = startCommand(AGE, encryptArgs(recipients), { stdinFrom: zstd.stdout!, label: 'age', hint: AGE_INSTALL_HINT });
  // age holds the read end now; the parent's copy must go, or zstd would not notice an age that died.
  zstd.stdout!.destroy();
  const result = (async () => {
    try {
      // age first: when age dies, zstd dies of the broken pipe, and age's death is the one to report.
      const output = await age.result;
      await zstdDone;
      return output;
    } finally {
      forget();
    }
  })();
  result.catch(() => undefined);
  return {
    result,
    kill: () => {
      zstd.kill('SIGKILL');
      age.kill();
    },
  };
}

/**
 * The first `bytes` of a stream without consuming them: the stream returned yields everything, the head included.
 * WAL objects are told apart by their first bytes (age or zstd), not by their key.
 */
export async function peekHead(source: Readable, bytes: number): Promise<{ head: Buffer; stream: Readable }> {
  const parts: Buffer[] = [];
  let length = 0;
  let ended = true;
  for await (const chunk of source.iterator({ destroyOnReturn: false })) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    parts.push(buffer);
    length += buffer.length;
    if (length >= bytes) {
      ended = false;
      break;
    }
  }
  const head = Buffer.concat(parts);
  if (ended) return { head: head.subarray(0, bytes), stream: Readable.from(head.length > 0 ? [head] : []) };
  source.unshift(head);
  return { head: head.subarray(0, bytes), stream: source };
}

/** The public keys of the identities in an age identity file (`age-keygen -y`), to compare with a manifest's recipients. */
export async function identityRecipients(identityFile: string): Promise<string[]> {
  let stdout: Buffer;
  try {
    // Unlocked keys go in on stdin: the protected file itself is an age file, not keys.
    const keys = unlockedIdentities.get(identityFile);
    ({ stdout } = await runCommand(AGE_KEYGEN, keys === undefined ? ['-y', identityFile] : ['-y'], { label: 'age-keygen -y', hint: AGE_INSTALL_HINT, ...(keys === undefined ? {} : { input: keys }) }));
  } catch (err) {
    const stderr = String((err as { cause?: { stderr?: unknown } }).cause?.stderr ?? '');
    if (err instanceof ServiceError && /could not start/.test(err.message)) throw err;
    throw new UsageError(
      `cannot use identity file ${identityFile}: ${lastLine(stderr) || (err as Error).message}`,
      'pass a readable age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it) with --identity-file or PGDR_IDENTITY_FILE',
    );
  }
  return stdout
    .toString('utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('age1'));
}

/**
 * Refuses, before anything is written, an identity that holds none of the keys `what` was encrypted to: the
 * one-line error names the recipients (public keys) so the operator knows which key to fetch from escrow.
 */
export async function checkIdentityFor(identityFile: string | undefined, recipients: readonly string[], what: string): Promise<void> {
  if (identityFile === undefined) throw missingIdentityError(what);
  const mine = await identityRecipients(identityFile);
  if (mine.some((r) => recipients.includes(r))) return;
  throw new UsageError(
    `the identity in ${identityFile} cannot decrypt ${what}: it was encrypted to ${recipients.join(', ')}, and the identity's public key is ${mine.join(', ') || 'none'}`,
    'pass the identity of one of those recipients (the escrow key works too; a backup from before a key rotation needs the key it was written with)',
  );
}
