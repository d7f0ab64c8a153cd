import { UsageError } from '../errors.js';

/**
 * A WAL location (PostgreSQL's XLogRecPtr / pg_lsn): an unsigned 64-bit byte position in the WAL stream.
 * A bigint because positions pass 2^53 long before the address space ends, and because LSN arithmetic
 * (segment numbers, differences) must be exact.
 */
export type Lsn = bigint;

/** PostgreSQL's InvalidXLogRecPtr: no real WAL record lives at 0/0. */
export const INVALID_LSN: Lsn = 0n;
export const MAX_LSN: Lsn = 0xffff_ffff_ffff_ffffn;

// pg_lsn_in accepts exactly this: 1..8 hex digits, a slash, 1..8 hex digits, nothing around them.
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function isLsnText(text: string): boolean {
  return LSN_TEXT.test(text);
}

/**
 * Reads PostgreSQL's text form of an LSN ('16/B374D848', hex in either case). `what` names the value in the
 * error message, e.g. 'target LSN'.
 */
export function parseLsn(text: string, what = 'LSN'): Lsn {
  const match = LSN_TEXT.exec(text);
  if (!match) {
    throw new UsageError(
      `${what} ${quote(text)} is not a WAL location`,
      'write an LSN as two hex numbers of up to 8 digits each around a slash, e.g. 16/B374D848',
    );
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** PostgreSQL's own output form (`%X/%X`): uppercase, no zero padding, e.g. 0/3000028. */
export function formatLsn(lsn: Lsn): string {
  assertLsnRange(lsn);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

export function compareLsn(a: Lsn, b: Lsn): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

export function minLsn(a: Lsn, b: Lsn): Lsn {
  return a < b ? a : b;
}

/** Bytes of WAL from `b` to `a`, negative when `a` is before `b` (like pg_wal_lsn_diff(a, b)). */
export function lsnDiff(a: Lsn, b: Lsn): bigint {
  return a - b;
}

export function isLsn(value: bigint): boolean {
  return value >= 0n && value <= MAX_LSN;
}

/** Arithmetic on LSNs can leave the 64-bit address space; that is a bug in the caller, not bad input. */
export function assertLsnRange(lsn: bigint): void {
  if (!isLsn(lsn)) throw new RangeError(`${lsn} is outside the 64-bit WAL address space`);
}

function quote(text: string): string {
  return /^[^\u0000-\u001f\u007f']{0,80}$/.test(text) ? `'${text}'` : JSON.stringify(text.slice(0, 80));
}
