/**
 * What `pgdr verify` (and the WAL pre-check of `pgdr drill`) reports: one record per problem, each saying which
 * object it is about and which backups it breaks, so that a person reads "backups X and Y cannot reach ..." instead
 * of a bare key, and a program can group or count them from --json.
 */
export type ProblemKind =
  /** A manifest names an object that is not in the repository. */
  | 'missing-object'
  /** The object's stored bytes hash to another sha256 than the manifest recorded. */
  | 'checksum-mismatch'
  /** The object's size differs from the manifest's storedBytes. */
  | 'size-mismatch'
  /** Reading the object failed (storage error): its state is unknown. */
  | 'unreadable-object'
  /** A WAL segment a backup needs (to become consistent, or to reach the end of the archive) is not archived. */
  | 'missing-wal'
  /** A timeline has WAL in the repository but its .history file is missing: its path cannot be followed. */
  | 'missing-history'
  /** A .history file does not decompress or parse. */
  | 'invalid-history'
  /** A backup's manifest.json exists but does not validate. */
  | 'invalid-manifest'
  /** A diff or incr builds on a backup (a chain member) that is not complete in the repository: it cannot be restored. */
  | 'broken-chain'
  /** A diff or incr's chain disagrees with its members' manifests (another chain, another cluster, no full first). */
  | 'chain-mismatch'
  /** A files-engine backup's file list does not decompress or parse (full verify only). */
  | 'invalid-file-list'
  /** A file list names parts its chain does not hold: another backup, an object not listed, the wrong content (full verify only). */
  | 'file-list-mismatch'
  /** An etcd snapshot's manifest.json exists but cannot be read. */
  | 'invalid-etcd-manifest'
  /** A drill report that does not validate. */
  | 'invalid-drill-report'
  /** An object under the cluster's prefix that no manifest names and that is no WAL, lock, report or cluster.json. */
  | 'foreign-object';

export interface VerifyProblem {
  kind: ProblemKind;
  /** The repository key the problem is about (for a run of missing WAL: the first missing segment's key). */
  key: string;
  /** One sentence for people, saying what is wrong and what it breaks. */
  detail: string;
  /** Ids of the backups this problem makes unrestorable (fully, or beyond some point). */
  breaks: string[];
}

/** Things worth knowing that are not damage: backups or snapshots without a manifest (running, or interrupted). */
export interface VerifyNote {
  /** pending-write: a temp file or multipart upload a killed writer left (pgdr expire removes it after garbageGrace). */
  /** encrypted-file-list: a full verify without an identity checks an encrypted file list's sha256, not its parts. */
  /** wal-between-backups: WAL a repository that does not receive WAL was never meant to hold (see VerifyOptions). */
  /** retention-short: on a repository under Object Lock, objects locked for less than the policy needs (or not at all). */
  /** wal-segment-size-assumed: nothing told the WAL segment size (an encrypted newest segment, no key, no manifest). */
  kind: 'incomplete-backup' | 'incomplete-etcd-snapshot' | 'pending-write' | 'encrypted-file-list' | 'wal-between-backups' | 'retention-short' | 'wal-segment-size-assumed';
  key: string;
  detail: string;
}

/** "backup X" / "backups X and Y" / "backups X, Y and Z". */
export function describeBackups(ids: readonly string[]): string {
  if (ids.length === 1) return `backup ${ids[0]}`;
  const sorted = [...ids].sort();
  return `backups ${sorted.slice(0, -1).join(', ')} and ${sorted[sorted.length - 1]}`;
}

/** A moment as people read it in a problem line: 2024-05-03 10:00:12 UTC. */
export function formatMoment(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
