import { UsageError } from '../errors.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';

/**
 * Where a point-in-time restore stops, as PostgreSQL's recovery_target_* settings express it.
 *
 * `inclusive` (recovery_target_inclusive, default on) exists only for time and LSN targets: a restore point
 * is a record of its own, and 'latest' replays everything there is.
 */
export type RecoveryTarget =
  | { kind: 'time'; at: Date; epochMicros: bigint; text: string; inclusive: boolean }
  | { kind: 'lsn'; lsn: Lsn; inclusive: boolean }
  | { kind: 'name'; name: string }
  | { kind: 'latest' };

export interface RecoveryTargetOptions {
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  target?: string;
  targetInclusive?: boolean;
}

/** PostgreSQL's limit for restore point names (pg_create_restore_point: MAXFNAMELEN - 1 bytes). */
export const MAX_RESTORE_POINT_NAME_BYTES = 63;

const FLAG_OF = {
  targetTime: '--target-time',
  targetLsn: '--target-lsn',
  targetName: '--target-name',
  target: '--target',
} as const;

/**
 * Turns the restore command's target options into one target. At most one of time, LSN, name and `target`
 * may be given. Giving none at all means 'latest', the same as `--target latest`: replay every WAL segment
 * the archive holds, as PostgreSQL does when no recovery target is set.
 */
export function parseRecoveryTarget(options: RecoveryTargetOptions): RecoveryTarget {
  const given = (Object.keys(FLAG_OF) as (keyof typeof FLAG_OF)[]).filter((key) => options[key] !== undefined);
  if (given.length > 1) {
    throw new UsageError(
      `give only one of --target-time, --target-lsn, --target-name and --target (got ${given.map((k) => FLAG_OF[k]).join(' and ')})`,
      'a restore stops at one target; choose the one you mean',
    );
  }
  const inclusive = options.targetInclusive ?? true;
  const { targetTime, targetLsn, targetName, target } = options;
  if (targetTime !== undefined) return { kind: 'time', ...parseTargetTime(targetTime), inclusive };
  if (targetLsn !== undefined) return { kind: 'lsn', lsn: parseLsn(targetLsn, 'target LSN'), inclusive };
  if (!inclusive) {
    throw new UsageError(
      '--target-exclusive applies only to --target-time and --target-lsn',
      'a restore point and the end of the archive have no "just before"; drop the inclusive setting',
    );
  }
  if (targetName !== undefined) return { kind: 'name', name: parseRestorePointName(targetName) };
  if (target !== undefined && target !== 'latest') {
    throw new UsageError(
      `recovery target ${quote(target)} is not understood`,
      'use --target latest, or one of --target-time, --target-lsn, --target-name',
    );
  }
  return { kind: 'latest' };
}

/** One line for people and for --json output. */
export function describeRecoveryTarget(target: RecoveryTarget): string {
  switch (target.kind) {
    case 'time':
      return `time ${target.text}${target.inclusive ? '' : ' (exclusive)'}`;
    case 'lsn':
      return `LSN ${formatLsn(target.lsn)}${target.inclusive ? '' : ' (exclusive)'}`;
    case 'name':
      return `restore point ${JSON.stringify(target.name)}`;
    case 'latest':
      return 'latest (end of the archived WAL)';
  }
}

export function parseRestorePointName(name: string): string {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > MAX_RESTORE_POINT_NAME_BYTES) {
    throw new UsageError(
      `restore point name ${quote(name)} is ${bytes} bytes long`,
      `PostgreSQL restore point names are 1 to ${MAX_RESTORE_POINT_NAME_BYTES} bytes; use the name given to pg_create_restore_point()`,
    );
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    throw new UsageError(
      `restore point name ${quote(name)} contains a control character`,
      'use the name given to pg_create_restore_point(), without control characters',
    );
  }
  return name;
}

export interface Timestamp {
  /** Millisecond precision: what a Date can hold. */
  at: Date;
  /** Microseconds since 1970-01-01 UTC: PostgreSQL's precision, for exact comparisons. */
  epochMicros: bigint;
  /** For postgresql.conf: 'YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM', in the offset it was given in. */
  text: string;
}

// YYYY-MM-DD, 'T' or one space, HH:MM[:SS[.ffffff]], then an optional zone: Z, or ±HH, ±HHMM, ±HH:MM.
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/**
 * PostgreSQL prints and accepts "2026-11-23 12:53:04 UTC"; the names that can only mean UTC are read as Z. Other
 * zone names are refused rather than guessed.
 */
function withUtcNameAsZ(text: string): string {
  const match = /^(.*\d)\s*(?:UTC|GMT|UCT|Zulu|Etc\/UTC|Etc\/GMT)$/i.exec(text);
  return match ? `${match[1]}Z` : text;
}

const FORMS_HINT =
  'write it as ISO 8601 (2026-11-23T12:53:04Z, 2026-11-23T12:53:04.123456+02:00) or as PostgreSQL prints ' +
  'timestamptz (2026-11-23 12:53:04+00, 2026-11-23 12:53:04 UTC); zone names other than UTC are not guessed: use an offset';

/**
 * Reads a target time given as ISO 8601 or as PostgreSQL's timestamptz text. The zone is required: a
 * restore to the wrong hour is worse than an error.
 */
export function parseTargetTime(text: string): Timestamp {
  return parseTimestamp(text, 'target time');
}

/** The same grammar, for timestamps pgdr reads back from its own manifests. */
export function parseTimestamp(text: string, what: string): Timestamp {
  const m = TIMESTAMP.exec(withUtcNameAsZ(text));
  if (!m) throw new UsageError(`${what} ${quote(text)} is not a timestamp pgdr understands`, FORMS_HINT);
  const [, y = '', mo = '', d = '', h = '', mi = '', s = '00', fraction = '', zulu, sign, oh = '00', om = '00'] = m;
  if (zulu === undefined && sign === undefined) {
    throw new UsageError(
      `${what} ${quote(text)} has no time zone`,
      'add Z or an offset such as +00:00; pgdr does not guess',
    );
  }
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  const invalid = (why: string) => new UsageError(`${what} ${quote(text)} is not a valid time: ${why}`, FORMS_HINT);
  if (year < 1) throw invalid('year 0000 does not exist');
  if (month < 1 || month > 12) throw invalid(`month ${mo} does not exist`);
  if (day < 1 || day > daysInMonth(year, month)) {
    throw invalid(`${MONTH_NAMES[month - 1]} ${year} has ${daysInMonth(year, month)} days, not ${d}`);
  }
  if (hour > 23) throw invalid(`hour ${h} is past 23`);
  if (minute > 59) throw invalid(`minute ${mi} is past 59`);
  if (second > 59) throw invalid(`second ${s} is past 59`);
  if (fraction.length > 6) throw invalid('PostgreSQL keeps at most 6 fractional digits (microseconds)');
  const offsetHours = Number(oh);
  const offsetMinutes = Number(om);
  if (offsetHours > 15 || offsetMinutes > 59) throw invalid(`offset ${sign}${oh}:${om} is out of range`);

  const offsetSign = sign === '-' ? -1n : 1n;
  const offsetMicros = offsetSign * BigInt(offsetHours * 3600 + offsetMinutes * 60) * 1_000_000n;
  const localMicros =
    BigInt(daysFromCivil(year, month, day)) * 86_400_000_000n +
    BigInt(hour * 3600 + minute * 60 + second) * 1_000_000n +
    BigInt(fraction.padEnd(6, '0') || '0');
  const epochMicros = localMicros - offsetMicros;
  const zone = sign === undefined ? '+00:00' : `${sign}${oh}:${om}`;
  return {
    at: new Date(Number(floorDiv(epochMicros, 1000n))),
    epochMicros,
    text: `${y}-${mo}-${d} ${h}:${mi}:${s}${fraction === '' ? '' : `.${fraction}`}${zone}`,
  };
}

const MONTH_NAMES = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days from 1970-01-01 to the given proleptic Gregorian date; negative before it. */
function daysFromCivil(year: number, month: number, day: number): number {
  // Counting years from March puts the leap day last, so each 400-year era has a fixed shape.
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const monthFromMarch = (month + 9) % 12;
  const dayOfYear = Math.floor((153 * monthFromMarch + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

function quote(text: string): string {
  return /^[^\u0000-\u001f\u007f']{0,80}$/.test(text) ? `'${text}'` : JSON.stringify(text.slice(0, 80));
}
