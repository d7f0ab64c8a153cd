/**
 * One error hierarchy for the whole tool. Every error carries the exit code of the CLI contract
 * (../shared/CLI.md) and a hint: the top level prints `message` and `hint`, one line each, and
 * a stack trace only with --debug.
 */
export const ExitCode = {
  ok: 0,
  notFound: 1,
  warning: 1,
  usage: 2,
  critical: 2,
  repository: 3,
  unknown: 3,
  service: 4,
  verification: 5,
} as const;

/** Marks a class as pgdr's for isInstanceByName; subclasses inherit the mark. */
export const PGDR_CLASS = Symbol.for('pgdr.class');

/**
 * `instanceof` for pgdr's error classes, by class name along the prototype chain rather than by class object: the
 * bundled `wal push` (dist/cli/wal-push.cjs) carries its own copy of these classes, while what it loads from dist/
 * on demand (the S3 driver, the config-file reader) throws with dist's, and a push must recognise both ("object not
 * found", "already exists", the exit code of a PgdrError). Only classes marked as pgdr's match by name.
 */
export function isInstanceByName(value: unknown, cls: abstract new (...args: never[]) => unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  for (let proto: unknown = Object.getPrototypeOf(value); proto !== null && proto !== undefined; proto = Object.getPrototypeOf(proto)) {
    const ctor = (proto as { constructor?: unknown }).constructor;
    if (ctor === cls) return true;
    if (typeof ctor === 'function' && ctor.name === cls.name && PGDR_CLASS in ctor) return true;
  }
  return false;
}

export class PgdrError extends Error {
  static readonly [PGDR_CLASS] = true;
  static override [Symbol.hasInstance]<T>(this: abstract new (...args: never[]) => T, value: unknown): value is T {
    return isInstanceByName(value, this);
  }
  readonly exitCode: number;
  readonly hint: string;
  constructor(message: string, options: { hint: string; exitCode: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode;
    this.hint = options.hint;
  }
}

/** Bad flag, bad config, bad target: the user can fix the command line. Exit 2. */
export class UsageError extends PgdrError {
  constructor(message: string, hint: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.usage, cause });
  }
}

/** The repository or its storage failed or holds something unexpected. Exit 3. */
export class RepositoryError extends PgdrError {
  constructor(message: string, hint: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.repository, cause });
  }
}

/** PostgreSQL, Patroni or etcd failed or answered something unexpected. Exit 4. */
export class ServiceError extends PgdrError {
  constructor(message: string, hint: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.service, cause });
  }
}

/** Stored data failed a check (checksum, size, WAL chain). Exit 5. */
export class VerificationError extends PgdrError {
  constructor(message: string, hint: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.verification, cause });
  }
}

/** A thing the contract allows to be absent (wal fetch of an unarchived file). Exit 1. */
export class NotFoundError extends PgdrError {
  constructor(message: string, hint: string) {
    super(message, { hint, exitCode: ExitCode.notFound });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A Node system error (errno) that reached the top without a pgdr class: said in words, with the exit code of its
 * kind, rather than as "unexpected error". Undefined for anything else.
 */
export function fromSystemError(err: unknown, currentUser: () => string): PgdrError | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  const path = (err as NodeJS.ErrnoException).path;
  const where = path === undefined ? '' : ` (${path})`;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new PgdrError(`a file system is full${where}: ${err.message}`, {
        hint: 'free space on that file system (the repository: pgdr expire; a restore target: a larger volume) and run the command again',
        exitCode: ExitCode.repository,
        cause: err,
      });
    case 'EACCES':
    case 'EPERM':
      return new UsageError(`permission denied${where}: ${err.message}`, `pgdr runs as ${currentUser()}: run it as the owner of that path, or give it access`, err);
    case 'EROFS':
      return new UsageError(`read-only file system${where}: ${err.message}`, 'write to a writable file system', err);
    case 'EMFILE':
    case 'ENFILE':
      return new PgdrError(`too many open files: ${err.message}`, { hint: 'raise the open-file limit (ulimit -n) for pgdr', exitCode: ExitCode.repository, cause: err });
    default:
      return undefined;
  }
}
