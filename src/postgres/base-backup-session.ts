import { Readable, type Duplex } from 'node:stream';
import pg from 'pg';
import { ServiceError } from '../errors.js';
import {
  baseBackupCommand,
  decodeBaseBackupCopyData,
  isInPlaceLocation,
  maxRateKbPerSecond,
  parseBackupPosition,
  parseTablespaceList,
  type BackupPosition,
  type BackupTablespace,
  type ResultSet,
} from './base-backup-protocol.js';
import { describeEndpoint, withConnection, type PgEndpoint } from './connection.js';
import { connectForReplication, requestCancel } from './replication-connection.js';

/**
 * A base backup read straight from the walsender (BASE_BACKUP on a replication connection, the command
 * pg_basebackup sends), one tar archive per tablespace; base-backup-protocol.ts describes what PostgreSQL sends.
 *
 * The whole backup is one stream on one connection, so the archives must be read in order, each to its end,
 * before the next one (or the manifest, or the end position) can arrive. Memory stays bounded by back-pressure:
 * when an archive's reader falls behind, pgdr stops reading the socket, the kernel's buffers fill, and the
 * walsender waits in its send.
 */
export interface BaseBackupSessionOptions {
  endpoint: PgEndpoint;
  /** backup_label's LABEL line. */
  label: string;
  /** pgdr's --max-rate (kB/s, or with a k or M suffix): the server throttles itself to it. */
  maxRate?: string;
  /**
   * Whether the server waits, before it reports the end position, until WAL archiving has stored the segment
   * holding it. Default false: pgdr checks its own WAL archive instead.
   */
  waitForWalArchive?: boolean;
  /**
   * Archive bytes sent so far, of the server's estimate (never less than the count). Asking for it makes the server
   * size every tablespace before it starts (BASE_BACKUP's PROGRESS), one more pass over the files.
   */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** NOTICE and WARNING messages of the server (with WAIT, "still waiting for all required WAL segments ..."). */
  onNotice?: (message: string) => void;
}

export interface BaseBackupArchive {
  /** `base.tar` for the data directory, `<oid>.tar` for a tablespace. */
  name: string;
  /** The tablespace's directory on the server; null for base.tar. */
  tablespaceLocation: string | null;
  /** The tar bytes. Ends exactly at the archive's end; fails if the backup fails. */
  data: Readable;
}

export interface BaseBackupSession {
  /** Where the backup starts in WAL (backup_label's START WAL LOCATION) and on which timeline. */
  readonly start: BackupPosition;
  /** The tablespaces as the server listed them, the data directory last (oid and location null). */
  readonly tablespaces: readonly BackupTablespace[];
  /**
   * The next archive, in the order the server sends them (tablespaces first, base.tar last); null after the last.
   * Read each archive to its end before asking for the next: they share one connection.
   */
  nextArchive(): Promise<BaseBackupArchive | null>;
  /** The backup_manifest, once every archive has been read. Held in memory: about 200 bytes per file backed up. */
  manifest(): Promise<Buffer>;
  /** Where the backup ends and on which timeline; resolves after the connection is closed. */
  end(): Promise<BackupPosition>;
  /**
   * Stops the backup: the server is asked to stop (a CancelRequest), the connection closes, and the stream being
   * read and every pending promise fail with `reason`.
   */
  cancel(reason?: Error): void;
  /** Resolves when the connection is closed (and, after a failure, the server asked to stop), whatever the outcome. */
  readonly closed: Promise<void>;
}

/**
 * What an archive's stream may hold before pgdr stops reading the socket. The bound on memory is this, plus what
 * one socket read brings (64 KiB), plus the unread end of an archive that has just ended.
 */
const ARCHIVE_BUFFER_BYTES = 1024 * 1024;

const RETRY_HINT = 'check the PostgreSQL server log for the reason, then run the backup again';

/**
 * Connects, starts the backup, and resolves once the server has reported the start position and the tablespaces,
 * before any archive is handed out. Refuses (and closes the connection) when the cluster has an in-place
 * tablespace, which PostgreSQL leaves out of a base backup without a word. This needs one ordinary SQL
 * connection too: a replication connection cannot read pg_tablespace.
 */
export async function openBaseBackupSession(options: BaseBackupSessionOptions): Promise<BaseBackupSession> {
  const command = baseBackupCommand({
    label: options.label,
    maxRateKbPerSecond: options.maxRate === undefined ? undefined : maxRateKbPerSecond(options.maxRate),
    estimateSize: options.onProgress !== undefined,
    waitForWalArchive: options.waitForWalArchive ?? false,
  });
  const { client, serverVersion } = await connectForReplication(options.endpoint);
  const major = Number(/^(\d+)/.exec(serverVersion ?? '')?.[1]);
  if (major < 15) {
    await client.end().catch(() => undefined);
    throw new ServiceError(
      `PostgreSQL at ${describeEndpoint(options.endpoint)} is version ${serverVersion}; pgdr reads BASE_BACKUP from PostgreSQL 15 and newer`,
      'upgrade the server to PostgreSQL 15 or newer',
    );
  }
  const receiver = new BaseBackupReceiver(client, command, options);
  client.query(receiver);
  try {
    const listed = await receiver.listed.promise;
    await refuseInPlaceTablespaces(options.endpoint, listed.tablespaces);
    return {
      start: listed.start,
      tablespaces: listed.tablespaces,
      nextArchive: () => receiver.nextArchive(),
      manifest: () => receiver.manifest.promise,
      end: () => receiver.endPosition.promise,
      cancel: (reason) => receiver.fail(reason ?? new ServiceError('the base backup was cancelled before it finished', 'run the backup again')),
      closed: receiver.closed,
    };
  } catch (err) {
    receiver.fail(err instanceof Error ? err : new Error(String(err)));
    await receiver.closed;
    throw err;
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A session that fails before anyone asked for this result must not become an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

// The shapes of the node-postgres messages this file reads (pg-protocol's own types are not a dependency of pgdr).
interface RowDescriptionMessage {
  fields: { name: string }[];
}
interface DataRowMessage {
  fields: (string | null)[];
}
interface CommandCompleteMessage {
  text: string;
}
interface CopyDataMessage {
  chunk: Buffer;
}

type Phase = 'start' | 'tablespaces' | 'listed' | 'copy' | 'after-copy' | 'ending' | 'complete' | 'done' | 'failed';

/**
 * The BASE_BACKUP command as a node-postgres "submittable": the client hands it every message of the answer
 * (rows, CopyData, errors, ReadyForQuery) in order, and it turns them into the session's results and streams.
 * CopyOutResponse and CopyDone are not passed to submittables, so it listens for them on the connection itself.
 */
class BaseBackupReceiver {
  readonly listed = deferred<{ start: BackupPosition; tablespaces: BackupTablespace[] }>();
  readonly manifest = deferred<Buffer>();
  readonly endPosition = deferred<BackupPosition>();
  readonly closed: Promise<void>;

  private phase: Phase = 'start';
  private resultSet: ResultSet | undefined;
  private start: BackupPosition | undefined;
  private tablespaces: BackupTablespace[] = [];
  private end: BackupPosition | undefined;
  private estimatedBytes = 0;
  /** The archive receiving 'd' messages now. */
  private current: { stream: Readable; complete: boolean } | undefined;
  /** Archives the server has begun that nobody has asked for yet. */
  private readonly announced: BaseBackupArchive[] = [];
  private readonly waiting: Deferred<BaseBackupArchive | null>[] = [];
  private archivesDone = false;
  private manifestChunks: Buffer[] | undefined;
  private socketPaused = false;
  private failure: Error | undefined;
  private serverStopped = false;
  private cancelSent: Promise<void> = Promise.resolve();
  private readonly socket: Duplex;
  private readonly detach: () => void = () => undefined;

  constructor(
    private readonly client: pg.Client,
    private readonly text: string,
    private readonly options: BaseBackupSessionOptions,
  ) {
    this.socket = client.connection.stream;
    const connectionClosed = new Promise<void>((resolve) => client.once('end', () => resolve()));
    this.closed = connectionClosed.then(() => this.cancelSent);
    client.on('error', (err: Error) => this.fail(this.connectionLost(err)));
    client.on('end', () => this.fail(this.connectionLost(new Error('the server closed the connection'))));
    client.on('notice', (notice: { message?: string }) => {
      const message = notice.message;
      if (message !== undefined && options.onNotice) this.guard(() => options.onNotice!(message));
    });
    const connection = client.connection;
    const onCopyOut = (): void => this.guard(() => this.copyStarted());
    const onCopyDone = (): void => this.guard(() => this.copyDone());
    connection.on('copyOutResponse', onCopyOut);
    connection.on('copyDone', onCopyDone);
    this.detach = () => {
      connection.off('copyOutResponse', onCopyOut);
      connection.off('copyDone', onCopyDone);
    };
  }

  // --- called by node-postgres ---

  submit(connection: pg.Connection): void {
    connection.query(this.text);
  }

  handleRowDescription(message: RowDescriptionMessage): void {
    this.resultSet = { columns: message.fields.map((field) => field.name), rows: [] };
  }

  handleDataRow(message: DataRowMessage): void {
    this.resultSet?.rows.push(message.fields);
  }

  handleCommandComplete(message: CommandCompleteMessage): void {
    this.guard(() => {
      const set = this.resultSet;
      this.resultSet = undefined;
      if (set === undefined) {
        // The command's own completion ("BASE_BACKUP") after the last result set.
        this.expectPhase('ending', `CommandComplete ${message.text}`);
        this.phase = 'complete';
        return;
      }
      if (this.phase === 'start') {
        this.start = parseBackupPosition(set, 'start');
        this.phase = 'tablespaces';
      } else if (this.phase === 'tablespaces') {
        this.tablespaces = parseTablespaceList(set);
        this.estimatedBytes = this.tablespaces.reduce((sum, tablespace) => sum + (tablespace.sizeKb ?? 0) * 1024, 0);
        this.phase = 'listed';
        this.listed.resolve({ start: this.start!, tablespaces: this.tablespaces });
      } else {
        this.expectPhase('after-copy', 'a result set');
        this.end = parseBackupPosition(set, 'end');
        this.phase = 'ending';
      }
    });
  }

  handleCopyData(message: CopyDataMessage): void {
    this.guard(() => {
      this.expectPhase('copy', 'CopyData');
      const decoded = decodeBaseBackupCopyData(message.chunk);
      switch (decoded.type) {
        case 'archive':
          if (this.archivesDone) throw protocolError('a new archive after the manifest');
          this.openArchive(decoded.name, decoded.tablespaceLocation);
          break;
        case 'data':
          this.receiveData(decoded.bytes);
          break;
        case 'progress':
          this.options.onProgress?.(decoded.doneBytes, Math.max(this.estimatedBytes, decoded.doneBytes));
          break;
        case 'manifest':
          if (this.archivesDone) throw protocolError('a second manifest');
          this.finishArchives();
          this.manifestChunks = [];
          break;
      }
    });
  }

  handleError(err: Error): void {
    if (err instanceof pg.DatabaseError) {
      // After an ErrorResponse the server has given up the command itself: there is nothing left to interrupt.
      this.serverStopped = true;
      this.fail(serverError(err));
    } else {
      this.fail(this.connectionLost(err));
    }
  }

  handleReadyForQuery(): void {
    this.guard(() => {
      this.expectPhase('complete', 'ReadyForQuery');
      this.phase = 'done';
      this.detach();
      const end = this.end!;
      void this.client.end().catch(() => undefined);
      void this.closed.then(() => this.endPosition.resolve(end));
    });
  }

  handleEmptyQuery(): void {
    this.fail(protocolError('an empty-query response'));
  }

  handleCopyInResponse(): void {
    this.fail(protocolError('a request for COPY IN data'));
  }

  handlePortalSuspended(): void {
    this.fail(protocolError('a suspended portal'));
  }

  // --- the session ---

  nextArchive(): Promise<BaseBackupArchive | null> {
    const next = this.announced.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.archivesDone) return Promise.resolve(null);
    const waiter = deferred<BaseBackupArchive | null>();
    this.waiting.push(waiter);
    return waiter.promise;
  }

  /** Ends everything with `err`: the connection, the stream being read, every pending promise. Idempotent. */
  fail(err: Error): void {
    if (this.phase === 'done' || this.phase === 'failed') return;
    this.phase = 'failed';
    this.failure = err;
    this.detach();
    this.current?.stream.destroy(err);
    this.current = undefined;
    for (const archive of this.announced.splice(0)) archive.data.destroy(err);
    for (const waiter of this.waiting.splice(0)) waiter.reject(err);
    this.listed.reject(err);
    this.manifest.reject(err);
    this.endPosition.reject(err);
    if (!this.serverStopped) this.cancelSent = requestCancel(this.client);
    // end() marks the close as ours (no "terminated unexpectedly" error); destroy() closes a paused socket too,
    // which a polite Terminate message would wait behind.
    void this.client.end().catch(() => undefined);
    this.socket.destroy();
  }

  // --- the COPY stream ---

  private copyStarted(): void {
    this.expectPhase('listed', 'CopyOutResponse');
    this.phase = 'copy';
  }

  private copyDone(): void {
    this.expectPhase('copy', 'CopyDone');
    this.finishArchives();
    if (this.manifestChunks === undefined) throw protocolError('no backup_manifest');
    this.manifest.resolve(Buffer.concat(this.manifestChunks));
    this.manifestChunks = undefined;
    this.phase = 'after-copy';
  }

  private openArchive(name: string, tablespaceLocation: string | null): void {
    this.endCurrentArchive();
    const archive = { stream: undefined as unknown as Readable, complete: false };
    archive.stream = new Readable({
      highWaterMark: ARCHIVE_BUFFER_BYTES,
      read: () => {
        if (this.current === archive) this.resumeSocket();
      },
      destroy: (err, callback) => {
        // A reader that gives up early (its upload failed, say) ends the backup: the rest of this archive has
        // nowhere to go, and the server would wait forever for pgdr to read it.
        if (!archive.complete) this.fail(err ?? new ServiceError(`the reader of ${name} stopped before its end`, RETRY_HINT));
        callback(err);
      },
    });
    // The session's promises report a failure too; a stream nobody listens to yet must not crash the process.
    archive.stream.on('error', () => undefined);
    this.current = archive;
    const handed: BaseBackupArchive = { name, tablespaceLocation, data: archive.stream };
    const waiter = this.waiting.shift();
    if (waiter !== undefined) waiter.resolve(handed);
    else this.announced.push(handed);
  }

  private receiveData(view: Buffer): void {
    // node-postgres reuses its read buffer for later messages, so a chunk kept past this call must be a copy.
    const bytes = Buffer.from(view);
    if (this.manifestChunks !== undefined) {
      this.manifestChunks.push(bytes);
      return;
    }
    if (this.current === undefined) throw protocolError('data before the first archive');
    if (!this.current.stream.push(bytes)) this.pauseSocket();
  }

  private endCurrentArchive(): void {
    const archive = this.current;
    if (archive === undefined) return;
    archive.complete = true;
    archive.stream.push(null);
    this.current = undefined;
    // An ended stream asks for no more data, so it would never resume a socket it paused.
    this.resumeSocket();
  }

  private finishArchives(): void {
    this.endCurrentArchive();
    this.archivesDone = true;
    for (const waiter of this.waiting.splice(0)) waiter.resolve(null);
  }

  private pauseSocket(): void {
    if (this.socketPaused) return;
    this.socketPaused = true;
    this.socket.pause();
  }

  private resumeSocket(): void {
    if (!this.socketPaused || this.phase === 'failed') return;
    this.socketPaused = false;
    this.socket.resume();
  }

  // --- errors ---

  private guard(step: () => void): void {
    if (this.phase === 'failed') return;
    try {
      step();
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private expectPhase(phase: Phase, what: string): void {
    if (this.phase !== phase) throw protocolError(`${what} out of order (after ${this.phase})`);
  }

  private connectionLost(err: Error): ServiceError {
    return new ServiceError(
      `the connection to PostgreSQL at ${describeEndpoint(this.options.endpoint)} was lost during the base backup: ${err.message}`,
      'check the PostgreSQL server log and the network between pgdr and the server, then run the backup again',
      err,
    );
  }
}

function serverError(err: pg.DatabaseError): ServiceError {
  return new ServiceError(`PostgreSQL ended the base backup: ${err.message}`, RETRY_HINT, err);
}

function protocolError(what: string): ServiceError {
  return new ServiceError(`PostgreSQL sent ${what} during BASE_BACKUP`, 'pgdr reads the BASE_BACKUP stream of PostgreSQL 15 and newer; check the server version');
}

/**
 * PostgreSQL 15 leaves an in-place tablespace (allow_in_place_tablespaces, LOCATION '') out of the tablespace
 * list, out of every archive and out of the manifest, so a restore would lack its files with nothing to say so.
 * Only the catalog shows it: pg_tablespace_location() reports `pg_tblspc/<oid>`. Read after the server has
 * listed its tablespaces, so that every tablespace the backup could have missed already exists.
 */
async function refuseInPlaceTablespaces(endpoint: PgEndpoint, listed: readonly BackupTablespace[]): Promise<void> {
  const catalog = await withConnection(endpoint, async (client) => {
    const { rows } = await client.query<{ oid: string; name: string; location: string }>(
      `SELECT oid::text AS oid, spcname AS name, pg_tablespace_location(oid) AS location
         FROM pg_tablespace WHERE pg_tablespace_location(oid) <> '' ORDER BY oid`,
    );
    return rows;
  });
  const inPlace = [
    ...catalog.filter((row) => isInPlaceLocation(row.location)).map((row) => `"${row.name}" (${row.location})`),
    ...listed
      .filter((tablespace) => tablespace.location !== null && isInPlaceLocation(tablespace.location))
      .filter((tablespace) => !catalog.some((row) => Number(row.oid) === tablespace.oid))
      .map((tablespace) => `oid ${tablespace.oid} (${tablespace.location})`),
  ];
  if (inPlace.length === 0) return;
  throw new ServiceError(
    `the cluster has in-place tablespace${inPlace.length > 1 ? 's' : ''} ${inPlace.join(', ')}, which PostgreSQL leaves out of base backups`,
    'move what it holds to a tablespace with a LOCATION (ALTER TABLE/INDEX ... SET TABLESPACE) and drop it; in-place tablespaces are meant for tests',
  );
}
