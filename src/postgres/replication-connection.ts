import { connect } from 'node:net';
import pg from 'pg';
import { ServiceError } from '../errors.js';
import { describeEndpoint, type PgEndpoint, defaultPgUser } from './connection.js';

/**
 * A physical replication connection (the startup parameter replication=true, what pg_basebackup opens): the
 * server runs a walsender for it, which accepts replication commands such as BASE_BACKUP and no SQL.
 * Authentication is node-postgres's: the password comes from PGPASSWORD or the password file (~/.pgpass,
 * PGPASSFILE), never from pgdr's own options, as for every other connection pgdr makes.
 */
export interface ReplicationConnection {
  client: pg.Client;
  /** The server's `server_version` as it reported it at startup, e.g. "15.18 (Debian 15.18-0+deb12u1)". */
  serverVersion: string | undefined;
}

export const REPLICATION_ACCESS_HINT =
  "give the backup user the REPLICATION attribute (ALTER ROLE ... REPLICATION) and a pg_hba.conf line for the 'replication' database, then reload PostgreSQL";

export async function connectForReplication(endpoint: PgEndpoint): Promise<ReplicationConnection> {
  const config: pg.ClientConfig & { replication: boolean } = {
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user ?? defaultPgUser(),
    // Ignored by a physical walsender, but it is the database name libpq and pg_basebackup look up in ~/.pgpass
    // for a replication connection, and node-postgres reads the password file with it too.
    database: 'replication',
    replication: true,
    application_name: 'pgdr',
    connectionTimeoutMillis: 10_000,
    // libpq (and so pg_basebackup) turns TCP keepalives on by default: a server that vanishes mid-backup is
    // then noticed even while pgdr only waits for its next message.
    keepAlive: true,
  };
  const client = new pg.Client(config);
  let serverVersion: string | undefined;
  // node-postgres keeps the server's ParameterStatus messages to itself; the connection emits them all.
  client.connection.on('parameterStatus', (message: { parameterName: string; parameterValue: string }) => {
    if (message.parameterName === 'server_version') serverVersion = message.parameterValue;
  });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw replicationConnectError(endpoint, err);
  }
  // Until its user listens (the BASE_BACKUP session does at once), a socket error must not crash the process.
  client.on('error', () => undefined);
  return { client, serverVersion };
}

const PASSWORD_HINT = 'set PGPASSWORD, or a ~/.pgpass line whose database field is replication (or *), for the backup user';

// SQLSTATEs of a server that is reachable but will not start a walsender for this user.
const NOT_ALLOWED = new Set([
  '28000', // invalid_authorization_specification: no pg_hba.conf entry, or a reject line
  '42501', // insufficient_privilege: "must be superuser or replication role to start walsender"
]);

function replicationConnectError(endpoint: PgEndpoint, err: unknown): ServiceError {
  const source = describeEndpoint(endpoint);
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && NOT_ALLOWED.has(code)) {
    return new ServiceError(`PostgreSQL at ${source} refused a replication connection: ${message}`, REPLICATION_ACCESS_HINT, err);
  }
  if (code === '28P01') {
    return new ServiceError(`PostgreSQL at ${source} refused the password for a replication connection: ${message}`, PASSWORD_HINT, err);
  }
  // node-postgres's own words when the server asks for a password and neither PGPASSWORD nor a password file has one.
  if (/client password must be a string/.test(message)) {
    return new ServiceError(`PostgreSQL at ${source} asks for a password for the replication connection, and none was found`, PASSWORD_HINT, err);
  }
  return new ServiceError(
    `cannot open a replication connection to PostgreSQL at ${source}: ${message}`,
    'check --pg-host/--pg-port/--pg-user (or PGHOST/PGPORT/PGUSER) and that the server is running and accepts TCP connections',
    err,
  );
}

/** CancelRequest's fixed code, in place of a protocol version (1234 in the high 16 bits, 5678 in the low). */
const CANCEL_REQUEST_CODE = 80_877_102;
const CANCEL_TIMEOUT_MS = 5_000;

/**
 * Asks the server to interrupt the connection's backend, as libpq's PQcancel does: a CancelRequest with the backend's
 * pid and secret key, on a connection of its own. Closing the socket is not enough on its own: a walsender notices
 * a vanished client only when it next writes, and one waiting for its start checkpoint or for WAL archiving writes
 * nothing for a long time. Best effort: resolves when sent, or when it could not be.
 */
export function requestCancel(client: pg.Client): Promise<void> {
  const { processID, secretKey } = client as unknown as { processID: number | null; secretKey: number | null };
  if (processID === null || secretKey === null) return Promise.resolve();
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  // node-postgres treats a host starting with '/' as the directory of a Unix socket, as libpq does.
  const socket = client.host.startsWith('/')
    ? connect({ path: `${client.host}/.s.PGSQL.${client.port}` })
    : connect({ host: client.host, port: client.port });
  return new Promise((resolve) => {
    socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
    socket.once('connect', () => socket.end(packet));
    socket.once('error', () => undefined);
    socket.once('close', () => resolve());
  });
}
