import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { UsageError, VerificationError } from '../errors.js';
import { BLOCK_SIZE } from '../postgres/page.js';
import { startZstdDecompress } from '../process/unpack.js';
import { ChecksumStage } from '../stream/checksum.js';
import { TarFormatError, TarReader, type TarMemberSink } from '../stream/tar-reader.js';
import type { ObjectExtract } from './files-plan.js';
import { checkObjectSize, checksumFailure, explainStreamFailure, type UnpackRequest } from './unpack-object.js';

/**
 * Writes a blocks object's runs (members `<path>@<first block>`) straight into their files at their offsets, reading
 * the tar stream in Node: no scratch file per run. A spread-out update makes one run per changed page, tens of
 * thousands per object, and creating, reading and deleting a file for each cost a delta restore more than its
 * real work. Runs the plan does not want (files a delta restore keeps) are read past.
 */
export interface BlockRunsRequest extends Omit<UnpackRequest, 'directory' | 'members'> {
  runs: ObjectExtract['runs'];
  rootOf: (tablespace: number | undefined) => string;
}

export async function applyBlockRuns(request: BlockRunsRequest): Promise<void> {
  const { backupId, object, untouched } = request;
  const key = await checkObjectSize(request);
  const byMember = new Map(request.runs.map((run) => [run.member, run]));
  const written = new Set<string>();
  const descriptors = new Map<string, number>();
  const damaged = (detail: string) =>
    new VerificationError(`backup ${backupId} object ${object.name}: ${detail}; ${untouched}`, 'the backup is damaged: run pgdr verify, and restore another backup with --backup-id');

  // Synchronous writes: a run is usually one 8 KiB page going into the page cache, where a trip through the thread
  // pool and a promise per run cost several times the copy itself (tens of thousands of runs per object).
  const fileFor = (run: ObjectExtract['runs'][number]): number => {
    const path = join(request.rootOf(run.file.tablespace), run.file.path);
    let fd = descriptors.get(path);
    if (fd === undefined) {
      try {
        fd = openSync(path, 'r+');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        fd = openSync(path, 'w', run.file.mode);
      }
      descriptors.set(path, fd);
    }
    return fd;
  };

  const reader = new TarReader((member): TarMemberSink | undefined => {
    const run = byMember.get(member.name);
    if (run === undefined) return undefined;
    if (member.typeflag !== '0' || member.size !== run.count * BLOCK_SIZE) {
      throw damaged(`block run ${member.name} holds ${member.size} bytes, the file list says ${run.count * BLOCK_SIZE}`);
    }
    let offset = run.first * BLOCK_SIZE;
    return {
      write: (chunk) => {
        const fd = fileFor(run);
        for (let done = 0; done < chunk.length; ) {
          const written = writeSync(fd, chunk, done, chunk.length - done, offset);
          done += written;
          offset += written;
        }
      },
      end: () => {
        written.add(run.member);
      },
    };
  });

  const checksum = new ChecksumStage();
  if (request.onBytes) checksum.on('data', () => request.onBytes!(checksum.bytes));
  const decompress = startZstdDecompress(request.identityFile === undefined ? {} : { identityFile: request.identityFile, what: `backup ${backupId} object ${object.name}` });
  let streamError: unknown;
  try {
    const source = await request.store.get(key);
    await Promise.all([pipeline(source, checksum, decompress.stdin), pipeline(decompress.stdout, reader)]);
  } catch (err) {
    streamError = err;
    decompress.kill();
  }
  const exit = await decompress.wait().then(
    () => undefined,
    (err: unknown) => err,
  );
  for (const fd of descriptors.values()) {
    try {
      closeSync(fd);
    } catch {
      // A close error after the writes went through changes nothing the checks below look at.
    }
  }
  // age refusing the identity is the cause, whatever the pipe said when age stopped reading.
  if (exit instanceof UsageError) throw exit;
  streamError ??= exit;
  if (streamError === undefined && checksum.sha256 !== object.sha256) throw checksumFailure(backupId, object, checksum.sha256, untouched);
  if (streamError instanceof VerificationError) throw streamError;
  if (streamError instanceof TarFormatError) streamError = damaged(streamError.message);
  if (streamError !== undefined) await explainStreamFailure(request, key, streamError);
  const missing = request.runs.filter((run) => !written.has(run.member));
  if (missing.length > 0) throw damaged(`${missing.length} block run${missing.length === 1 ? '' : 's'} the file list names ${missing.length === 1 ? 'is' : 'are'} not in it (${missing[0]!.member})`);
}
