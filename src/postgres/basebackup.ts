import type { Readable } from 'node:stream';
import { ServiceError } from '../errors.js';
import { startSubprocess, type Subprocess } from '../process/subprocess.js';
import { libpqArgs, type PgEndpoint } from './connection.js';
import { pgBinary } from './binaries.js';

/**
 * pg_basebackup writing one tar to stdout (-D - -Ft): the only format that streams without a local copy.
 * WAL is not included (-X none); the server itself waits until the WAL up to the backup's end is archived, and
 * pgdr checks that it reached this repository before committing the backup.
 */
export interface BaseBackupProcess {
  tar: Readable;
  wait(): Promise<void>;
  kill(): void;
}

export interface BaseBackupOptions {
  endpoint: PgEndpoint;
  label: string;
  /** Give up when the server has been waiting this long for WAL archiving. */
  archiveWaitTimeoutMs: number;
  /** pg_basebackup --max-rate, e.g. "50M": spares the server's disks during business hours. */
  maxRate?: string;
  env?: NodeJS.ProcessEnv;
}

export function startBaseBackup(options: BaseBackupOptions): BaseBackupProcess {
  let archiveStuckSince: number | undefined;
  let stuckError: ServiceError | undefined;
  let proc: Subprocess | undefined;
  proc = startSubprocess(
    pgBinary('pg_basebackup'),
    [...libpqArgs(options.endpoint), '-D', '-', '-F', 't', '-X', 'none', '-c', 'fast', '--no-password', `--label=${options.label}`, ...(options.maxRate ? [`--max-rate=${options.maxRate}`] : [])],
    {
      label: 'pg_basebackup',
      // LC_ALL=C keeps the server's messages parseable (the archive-wait warning below).
      env: { ...(options.env ?? process.env), LC_ALL: 'C', LC_MESSAGES: 'C' },
      onStderrLine: (line) => {
        if (/still waiting for all required WAL segments to be archived/.test(line)) {
          archiveStuckSince ??= Date.now();
          if (Date.now() - archiveStuckSince >= options.archiveWaitTimeoutMs - 60_000) {
            stuckError = new ServiceError(
              'PostgreSQL is not archiving WAL, so the backup can never become consistent',
              "set archive_command = 'pgdr wal push %p' (same --repo and --cluster) and check pg_stat_archiver",
            );
            proc?.kill();
          }
        }
      },
      hint: 'check the PostgreSQL log and that the backup user has the REPLICATION privilege and a pg_hba.conf entry for replication',
    },
  );
  return {
    tar: proc.stdout as Readable,
    wait: async () => {
      try {
        await proc!.wait();
      } catch (err) {
        throw stuckError ?? err;
      }
    },
    kill: () => proc?.kill(),
  };
}
