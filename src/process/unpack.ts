import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { TarMemberGuard } from '../restore/tar-member-guard.js';
import { childEnv } from './child-env.js';
import { asDecryptFailure, spawnAgeDecrypt } from '../stream/age-buffer.js';
import { killOnExit, watchChild } from './child.js';

/**
 * `zstd -d | tar -x` with the two processes joined by a kernel pipe: the decompressed bytes (4-5 times the stored
 * size) never pass through Node, which only feeds the compressed stream in (and hashes it on the way). tar lists
 * each member as it extracts it (-vv), and the listing goes through a TarMemberGuard, so members with names that
 * could reach outside the directory are reported by name.
 */
export interface UnpackProcess {
  /** Write the stored bytes here (zstd frames, or an age file around them). */
  stdin: Writable;
  /** Resolves when both processes exit 0; rejects with the first failure, zstd's first (it feeds tar). */
  wait(): Promise<void>;
  /** Members tar refused or that could have reached outside the directory (read after wait settles). */
  unsafeMembers(): readonly string[];
  kill(): void;
}

export interface UnpackOptions {
  /** Extract only these members (names as stored); every member when absent. */
  members?: readonly string[];
  zstdBinary?: string;
  /** The object is age-encrypted: `age -d -i FILE` runs in front of zstd, joined by a kernel pipe too. */
  identityFile?: string;
  /** Names the object in a decryption error. */
  what?: string;
}

export function startZstdTarUnpack(directory: string, options: UnpackOptions = {}): UnpackProcess {
  const zstdBinary = options.zstdBinary ?? process.env.PGDR_ZSTD_BIN ?? 'zstd';
  const guard = new TarMemberGuard();
  // The member list is a file (tar cannot open a socket as /dev/fd/N, and node's extra stdio are sockets), one
  // name per line, read as it is: a name is never taken for an option.
  const list = options.members === undefined ? undefined : writeMemberList(options.members);
  // -b 2048: 1 MiB records, read and written in 1 MiB calls rather than tar's default 10 KiB (a third of its CPU).
  const tar = spawn('tar', ['-x', '-vv', '--quoting-style=c', '-b', '2048', '-f', '-', '-C', directory, ...(list === undefined ? [] : ['--verbatim-files-from', '-T', list])], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...childEnv('tool'), LC_ALL: 'C' },
  });
  const zstd = spawn(zstdBinary, ['-d', '-c', '-q'], { stdio: ['pipe', tar.stdin, 'pipe'], env: childEnv('tool') });
  // zstd holds the write end of tar's stdin now; the parent's copy must close or tar never sees end of input.
  tar.stdin.destroy();
  const { age, ageDone } = ageInFrontOf(zstd, options);
  const listed = readLines(tar.stdout!, (line) => guard.acceptListing(line));
  const zstdDone = watchChild(zstd, 'zstd -d', 'the stored object does not decompress: it may be damaged; run pgdr verify').done;
  const tarDone = watchChild(tar, 'tar -x', `check free space and permissions in ${directory}`, (line) => guard.acceptDiagnostic(line)).done;
  const kill = (): void => {
    age?.kill('SIGTERM');
    zstd.kill('SIGTERM');
    tar.kill('SIGTERM');
  };
  const forget = killOnExit(...(age === undefined ? [] : [age]), zstd, tar);
  return {
    stdin: age === undefined ? zstd.stdin! : age.stdin!,
    wait: async () => {
      try {
        // The first in the chain explains the rest: age refusing the identity ends zstd's input, and so on.
        await ageDone;
        await zstdDone;
        await tarDone;
      } finally {
        await listed;
        forget();
        if (list !== undefined) rmSync(dirname(list), { recursive: true, force: true });
      }
    },
    unsafeMembers: () => guard.unsafe,
    kill,
  };
}

/**
 * For an encrypted object, `age -d -i FILE` writing into zstd's stdin by a kernel pipe (the parent's copy of that
 * stdin is closed, or zstd never sees end of input); `ageDone` settles with age's exit, a refused identity in pgdr's
 * words. Without an identity there is no age and `ageDone` is already resolved.
 */
function ageInFrontOf(zstd: ChildProcess, options: Pick<UnpackOptions, 'identityFile' | 'what'>): { age: ChildProcess | undefined; ageDone: Promise<void> } {
  const identityFile = options.identityFile;
  if (identityFile === undefined) return { age: undefined, ageDone: Promise.resolve() };
  const age = spawnAgeDecrypt(identityFile, ['pipe', zstd.stdin, 'pipe']);
  zstd.stdin!.destroy();
  const ageWatch = watchChild(age, 'age -d', 'the object does not decrypt: it may be damaged; run pgdr verify');
  const ageDone = ageWatch.done.catch((err: unknown) => {
    throw asDecryptFailure(err, options.what ?? 'the object', identityFile, ageWatch.stderrTail());
  });
  ageDone.catch(() => undefined);
  return { age, ageDone };
}

function writeMemberList(members: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgdr-members-'));
  const file = join(dir, 'members');
  writeFileSync(file, members.map((m) => `${m}\n`).join(''), { mode: 0o600 });
  return file;
}

function readLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
    const done = (): void => {
      if (partial !== '') onLine(partial);
      partial = '';
      resolve();
    };
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

export interface DecompressProcess {
  /** Write the stored bytes here (zstd frames, or an age file around them). */
  stdin: Writable;
  /** The decompressed bytes. */
  stdout: Readable;
  /** Resolves when every process exits 0; rejects with the first failure in the chain. */
  wait(): Promise<void>;
  kill(): void;
}

/**
 * `[age -d |] zstd -d` with the decompressed bytes coming back to Node: for objects pgdr reads itself rather than
 * hands to tar (the files engine's block runs, written into place at their offsets).
 */
export function startZstdDecompress(options: Omit<UnpackOptions, 'members'> = {}): DecompressProcess {
  const zstdBinary = options.zstdBinary ?? process.env.PGDR_ZSTD_BIN ?? 'zstd';
  const zstd = spawn(zstdBinary, ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv('tool') });
  const { age, ageDone } = ageInFrontOf(zstd, options);
  const zstdDone = watchChild(zstd, 'zstd -d', 'the stored object does not decompress: it may be damaged; run pgdr verify').done;
  const forget = killOnExit(...(age === undefined ? [] : [age]), zstd);
  return {
    stdin: age === undefined ? zstd.stdin! : age.stdin!,
    stdout: zstd.stdout!,
    wait: async () => {
      try {
        await ageDone;
        await zstdDone;
      } finally {
        forget();
      }
    },
    kill: () => {
      age?.kill('SIGTERM');
      zstd.kill('SIGTERM');
    },
  };
}
