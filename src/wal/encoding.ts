import type { RunningCommand } from '../process/run-command.js';
import { startZstdAgeFile } from '../stream/age-buffer.js';
import { startZstdCompressFile } from '../stream/zstd-buffer.js';

/**
 * How a WAL file is stored: zstd frames, encrypted with age to the recipients when there are any. Only segments
 * (and .partial segments) hold table data. Timeline history files and backup history files (.backup) hold timeline
 * numbers, LSNs and labels, and stay readable without a key: `backup now` and `verify`, which never hold the private
 * key, follow timelines through them.
 */
export function walEncryptTo(name: string, recipients: readonly string[]): readonly string[] {
  return name.endsWith('.history') || name.endsWith('.backup') ? [] : recipients;
}

/** Starts storing-form encoding of one WAL file now (zstd, or zstd | age joined by a kernel pipe). */
export function startWalEncoding(path: string, level: number, encryptTo: readonly string[]): RunningCommand {
  return encryptTo.length > 0 ? startZstdAgeFile(path, { level, threads: 1 }, encryptTo) : startZstdCompressFile(path, { level, threads: 1 });
}
