import { ServiceError, UsageError } from '../errors.js';
import { isLsnText } from './lsn.js';

/**
 * The wire format of the replication command BASE_BACKUP as a PostgreSQL 15 walsender answers it, as pure
 * functions: the command text, the CopyData messages, and the result sets around them. The connection that sends
 * the command and turns the answer into streams is base-backup-session.ts.
 *
 * What the server sends, in order, on a connection opened with `replication=true`:
 *
 * 1. A result set of one row, (recptr text, tli int8): where the backup starts in WAL and on which timeline,
 *    known once the start checkpoint is done. CommandComplete "SELECT" closes it.
 * 2. A result set listing the tablespaces, (spcoid oid, spclocation text, size int8): one row per tablespace
 *    that lives at a LOCATION (oid and absolute directory), then one row of two nulls for the data directory
 *    itself. `size` (kB) is an estimate the server computes only when PROGRESS was asked for; null otherwise.
 *    An in-place tablespace (allow_in_place_tablespaces, LOCATION '') is missing from this list, and its files
 *    are missing from every archive and from the manifest too (seen on 15.18): only pg_tablespace shows it.
 * 3. CopyOutResponse, then one COPY stream for everything that follows. The first byte of each CopyData says
 *    what it carries:
 *      'n'  a new archive begins: its file name (`<oid>.tar`, or `base.tar` for the data directory) and the
 *           tablespace's directory (empty for base.tar), each ended by a zero byte. The archives come in the
 *           list's order, so base.tar, with backup_label and tablespace_map in it, comes last.
 *      'd'  the next bytes of the current archive, or of the manifest after 'm'. A message holds at most 32 kB.
 *      'p'  a signed 64-bit count of the archive bytes sent so far, over all archives; sent at the end of every
 *           archive and now and then in between, whether or not PROGRESS was asked for.
 *      'm'  the archives are done and the backup_manifest follows (in 'd' messages); only with MANIFEST.
 *    CopyDone ends the stream; an archive ends where the next 'n', the 'm' or CopyDone begins.
 * 4. A result set of one row, (recptr text, tli int8): where the backup ends, and on which timeline (a standby
 *    can end on a later one than it started), then CommandComplete "BASE_BACKUP" and ReadyForQuery.
 *
 * An ErrorResponse can come at any point instead; a FATAL one (pg_terminate_backend, a shutdown) is followed by
 * the server closing the connection.
 */

/** A position in WAL as the server reports it: `lsn` in PostgreSQL's text form (0/2000028). */
export interface BackupPosition {
  lsn: string;
  timeline: number;
}

/** One row of the tablespace list: oid and location are null for the data directory itself. */
export interface BackupTablespace {
  oid: number | null;
  location: string | null;
  /** The server's estimate in kB, only when PROGRESS was asked for. */
  sizeKb: number | null;
}

export interface BaseBackupCommandOptions {
  label: string;
  /** MAX_RATE: the server sends at most this many kB per second (32 to 1048576). */
  maxRateKbPerSecond?: number;
  /** PROGRESS: the server sizes every tablespace before it starts, which costs one more pass over the files. */
  estimateSize?: boolean;
  /**
   * WAIT: whether the server, after the data, waits until WAL archiving has stored the segment holding the
   * backup's end. False returns the end position at once; the caller then checks the archive itself.
   */
  waitForWalArchive?: boolean;
}

export const MIN_MAX_RATE_KB = 32;
export const MAX_MAX_RATE_KB = 1_048_576;

/**
 * The command text. CHECKPOINT 'fast' because a scheduled backup should not wait up to checkpoint_timeout for
 * its start; TABLESPACE_MAP so that base.tar says where each tablespace archive belongs; WAL stays out (the
 * repository's WAL archive provides it); MANIFEST 'yes' for the exact WAL range and the per-file checksums.
 */
export function baseBackupCommand(options: BaseBackupCommandOptions): string {
  const parts = [
    `LABEL ${quoteReplicationString(options.label)}`,
    "CHECKPOINT 'fast'",
    `WAIT ${options.waitForWalArchive === true}`,
    "MANIFEST 'yes'",
    'TABLESPACE_MAP true',
  ];
  if (options.estimateSize) parts.push('PROGRESS true');
  if (options.maxRateKbPerSecond !== undefined) {
    const rate = options.maxRateKbPerSecond;
    if (!Number.isInteger(rate) || rate < MIN_MAX_RATE_KB || rate > MAX_MAX_RATE_KB) {
      throw new RangeError(`MAX_RATE must be an integer from ${MIN_MAX_RATE_KB} to ${MAX_MAX_RATE_KB} kB/s, got ${rate}`);
    }
    parts.push(`MAX_RATE ${rate}`);
  }
  return `BASE_BACKUP ( ${parts.join(', ')} )`;
}

/**
 * A string literal for the replication command grammar: single quotes, a quote doubled inside. Backslashes are
 * plain characters there. A zero byte would end the query message early, so it is refused.
 */
export function quoteReplicationString(text: string): string {
  if (text.includes('\0')) throw new RangeError('a replication command string cannot contain a zero byte');
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * pgdr's --max-rate text (kB/s, or with a k or M suffix, as pg_basebackup reads it) in kB/s, within the range the
 * server accepts.
 */
export function maxRateKbPerSecond(text: string): number {
  const match = /^(\d+)([kM]?)$/.exec(text);
  const rate = match ? Number(match[1]) * (match[2] === 'M' ? 1024 : 1) : Number.NaN;
  if (!Number.isSafeInteger(rate) || rate < MIN_MAX_RATE_KB || rate > MAX_MAX_RATE_KB) {
    throw new UsageError(
      `--max-rate must be from 32 kB/s to 1024M, got ${JSON.stringify(text)}`,
      'write kB/s as a number, or with a k or M suffix, e.g. --max-rate 50M',
    );
  }
  return rate;
}

export type BaseBackupCopyMessage =
  | { type: 'archive'; name: string; tablespaceLocation: string | null }
  /** `bytes` is a view into the message buffer, not a copy. */
  | { type: 'data'; bytes: Buffer }
  | { type: 'progress'; doneBytes: number }
  | { type: 'manifest' };

const PROTOCOL_HINT = 'pgdr reads the BASE_BACKUP stream of PostgreSQL 15 and newer; check the server version';

/** Decodes one CopyData message of the BASE_BACKUP stream (the payload after the message header). */
export function decodeBaseBackupCopyData(message: Buffer): BaseBackupCopyMessage {
  const type = message[0];
  switch (type) {
    case 0x64: // 'd'
      return { type: 'data', bytes: message.subarray(1) };
    case 0x6e: { // 'n'
      const nameEnd = message.indexOf(0, 1);
      const locationEnd = nameEnd < 0 ? -1 : message.indexOf(0, nameEnd + 1);
      if (locationEnd < 0 || nameEnd === 1) throw protocolError('a new-archive message without a name and a location');
      const location = message.toString('utf8', nameEnd + 1, locationEnd);
      return { type: 'archive', name: message.toString('utf8', 1, nameEnd), tablespaceLocation: location === '' ? null : location };
    }
    case 0x70: { // 'p'
      if (message.length !== 9) throw protocolError(`a progress message of ${message.length} bytes`);
      const done = message.readBigInt64BE(1);
      if (done < 0n || done > BigInt(Number.MAX_SAFE_INTEGER)) throw protocolError(`a progress count of ${done}`);
      return { type: 'progress', doneBytes: Number(done) };
    }
    case 0x6d: // 'm'
      return { type: 'manifest' };
    default:
      throw protocolError(type === undefined ? 'an empty CopyData message' : `a CopyData message of unknown type 0x${type.toString(16)}`);
  }
}

/** A result set as node-postgres delivers it in text format: column names, then rows of text or null. */
export interface ResultSet {
  columns: string[];
  rows: (string | null)[][];
}

/** The first or the last result set of BASE_BACKUP: one row of (recptr, tli). */
export function parseBackupPosition(set: ResultSet, which: 'start' | 'end'): BackupPosition {
  const row = set.rows[0];
  const lsn = row?.[columnIndex(set, 'recptr', 0)];
  const timeline = Number(row?.[columnIndex(set, 'tli', 1)]);
  if (set.rows.length !== 1 || typeof lsn !== 'string' || !isLsnText(lsn) || !Number.isInteger(timeline) || timeline < 1) {
    throw protocolError(`a ${which} position pgdr cannot read (${JSON.stringify(set.rows)})`);
  }
  return { lsn, timeline };
}

/** The second result set: the tablespaces, each sent as its own archive. */
export function parseTablespaceList(set: ResultSet): BackupTablespace[] {
  const oidAt = columnIndex(set, 'spcoid', 0);
  const locationAt = columnIndex(set, 'spclocation', 1);
  const sizeAt = columnIndex(set, 'size', 2);
  return set.rows.map((row) => {
    const oid = optionalInteger(row[oidAt], 'tablespace oid');
    const size = optionalInteger(row[sizeAt], 'tablespace size');
    return { oid, location: row[locationAt] ?? null, sizeKb: size };
  });
}

/**
 * Whether a tablespace location names a directory inside the data directory (pg_tablespace_location() reports an
 * in-place tablespace as `pg_tblspc/<oid>`) rather than one of its own.
 */
export function isInPlaceLocation(location: string): boolean {
  return !location.startsWith('/');
}

function columnIndex(set: ResultSet, name: string, fallback: number): number {
  const index = set.columns.indexOf(name);
  return index >= 0 ? index : fallback;
}

function optionalInteger(text: string | null | undefined, what: string): number | null {
  if (text === null || text === undefined) return null;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw protocolError(`a ${what} of ${JSON.stringify(text)}`);
  return value;
}

function protocolError(what: string): ServiceError {
  return new ServiceError(`PostgreSQL sent ${what} during BASE_BACKUP`, PROTOCOL_HINT);
}
