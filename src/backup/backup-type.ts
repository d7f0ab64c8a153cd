import { parseLsn } from '../postgres/lsn.js';
import { timelineOfLsn, type TimelineHistory } from '../postgres/timeline-history.js';
import type { BackupManifest } from '../repo/manifest.js';

export type BackupType = 'full' | 'diff' | 'incr';

export interface BackupTypeRequest {
  requested: BackupType;
  /** Complete backups in the repository, oldest first. */
  catalog: readonly BackupManifest[];
  server: { systemIdentifier: string; major: number };
  /** The server's timeline history (its current timeline's path). */
  history: TimelineHistory;
}

export type BackupTypePlan =
  | { type: 'full'; reason: string }
  | { type: 'diff' | 'incr'; reference: BackupManifest; chain: string[]; reason: string };

/**
 * Which backup a diff or incr builds on, or why it must be a full one instead. A diff builds on the newest full, an
 * incr on the newest backup; either only on a files-engine backup of this cluster and major version whose chain is
 * all in the repository, and only if it lies on the server's timeline path: a backup that ran past the point where
 * the server's timeline branched off (a failover that lost the old leader's last WAL) holds pages the server never
 * had, so nothing can be taken from it. Asking for a diff or incr never fails for want of a reference: like
 * pgBackRest, pgdr then takes a full backup and says why.
 */
export function planBackupType(request: BackupTypeRequest): BackupTypePlan {
  if (request.requested === 'full') return { type: 'full', reason: 'a full backup was asked for' };
  const complete = new Set(request.catalog.map((m) => m.backupId));
  const candidates = request.catalog.filter(
    (m) => m.engine === 'files' && m.systemIdentifier === request.server.systemIdentifier && Math.floor(m.pgVersionNum / 10000) === request.server.major,
  );
  const wanted = request.requested === 'diff' ? candidates.filter((m) => m.type === 'full') : candidates;
  const reference = wanted[wanted.length - 1];
  const what = request.requested === 'diff' ? 'full files-engine backup' : 'files-engine backup';
  if (reference === undefined) return { type: 'full', reason: `no earlier ${what} of this cluster to build a ${request.requested} on` };
  const newest = request.catalog[request.catalog.length - 1];
  if (request.requested === 'incr' && newest !== undefined && newest.backupId !== reference.backupId && newest.engine !== 'files') {
    return { type: 'full', reason: `the newest backup, ${newest.backupId}, is not a files-engine backup` };
  }
  const missing = (reference.chain ?? []).filter((id) => !complete.has(id));
  if (missing.length > 0) return { type: 'full', reason: `backup ${reference.backupId} builds on ${missing.join(', ')}, which the repository no longer holds` };
  const stop = parseLsn(reference.stopLsn, 'reference stop LSN');
  if (timelineOfLsn(request.history, stop) !== reference.timeline) {
    return {
      type: 'full',
      reason: `backup ${reference.backupId} (timeline ${reference.timeline}, up to ${reference.stopLsn}) is not on the server's timeline ${request.history.timeline} path`,
    };
  }
  const chain = [...(reference.chain ?? []), reference.backupId];
  return { type: request.requested, reference, chain, reason: `a ${request.requested} backup on ${reference.backupId} (${reference.type})` };
}
