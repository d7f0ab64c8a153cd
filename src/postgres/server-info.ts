import type pg from 'pg';
import { ServiceError } from '../errors.js';

/** What pgdr needs to know about a server before backing it up. */
export interface ServerInfo {
  systemIdentifier: string;
  version: string;
  versionNum: number;
  major: number;
  inRecovery: boolean;
  archiveMode: string;
  archiveCommand: string;
  walSegmentSize: number;
  timeline: number;
  /** Sum of pg_database_size over all databases: the progress bar's estimate. */
  estimatedBytes: number;
}

export async function readServerInfo(client: pg.Client): Promise<ServerInfo> {
  const { rows } = await client.query<{
    sysid: string;
    version: string;
    version_num: string;
    in_recovery: boolean;
    archive_mode: string;
    archive_command: string;
    wal_segment_size: string;
    timeline: string;
    estimated_bytes: string;
  }>(`
    SELECT s.system_identifier::text AS sysid,
           current_setting('server_version') AS version,
           current_setting('server_version_num') AS version_num,
           pg_is_in_recovery() AS in_recovery,
           current_setting('archive_mode') AS archive_mode,
           current_setting('archive_command') AS archive_command,
           (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
           (SELECT timeline_id::text FROM pg_control_checkpoint()) AS timeline,
           (SELECT sum(pg_database_size(oid))::text FROM pg_database) AS estimated_bytes
      FROM pg_control_system() s`);
  const row = rows[0];
  if (!row) throw new ServiceError('PostgreSQL returned no row for its control data', 'check that the server is PostgreSQL 15 or newer');
  const versionNum = Number(row.version_num);
  return {
    systemIdentifier: row.sysid,
    version: row.version,
    versionNum,
    major: Math.floor(versionNum / 10000),
    inRecovery: row.in_recovery,
    archiveMode: row.archive_mode,
    archiveCommand: row.archive_command,
    walSegmentSize: Number(row.wal_segment_size),
    timeline: Number(row.timeline),
    estimatedBytes: Number(row.estimated_bytes ?? 0),
  };
}
