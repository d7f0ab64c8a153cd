import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * An etcd snapshot, as the Maintenance.Snapshot RPC streams it, is the member's bbolt database followed by 32 bytes:
 * the sha256 of the database bytes before them. `etcdctl snapshot restore` (and `etcdutl`) check that trailer
 * unless told --skip-hash-check, which pgdr never passes. pgdr checks the same trailer itself, when it takes a
 * snapshot (a stream cut short or garbled must not be stored as good) and before a restore writes anything.
 */
export const SNAPSHOT_HASH_BYTES = 32;

/** bbolt pages are at least 512 bytes; etcd itself decides "has a hash" by size % 512 === 32. */
const BOLT_MIN_PAGE = 512;

export interface SnapshotTrailerCheck {
  /** Total bytes, database and trailer. */
  bytes: number;
  /** sha256 of the whole stream, trailer included (what the manifest's snapshotSha256 records). */
  sha256: string;
  /** sha256 of the database bytes (everything before the trailer). */
  databaseSha256: string;
  /** The trailer as hex; '' when the stream is shorter than one. */
  trailer: string;
  /** Why the trailer does not vouch for the database; undefined when it does. */
  problem: string | undefined;
}

/** The one rule, shared by the streaming stage and the pure function. */
function judge(bytes: number, databaseSha256: string, trailer: string): string | undefined {
  if (bytes < BOLT_MIN_PAGE + SNAPSHOT_HASH_BYTES) return `snapshot is ${bytes} bytes, too short to be an etcd database with its sha256 trailer`;
  if (bytes % BOLT_MIN_PAGE !== SNAPSHOT_HASH_BYTES) {
    return `snapshot is ${bytes} bytes, not a whole number of database pages plus the 32-byte sha256 trailer: it is truncated or has no trailer`;
  }
  if (trailer !== databaseSha256) return `snapshot's sha256 trailer ${trailer} does not match its database (sha256 ${databaseSha256}): it is damaged`;
  return undefined;
}

/** Checks a whole snapshot held in memory (tests, small snapshots). */
export function checkSnapshotTrailer(snapshot: Buffer): SnapshotTrailerCheck {
  const split = Math.max(0, snapshot.length - SNAPSHOT_HASH_BYTES);
  const databaseSha256 = createHash('sha256').update(snapshot.subarray(0, split)).digest('hex');
  const trailer = snapshot.length >= SNAPSHOT_HASH_BYTES ? snapshot.subarray(split).toString('hex') : '';
  return {
    bytes: snapshot.length,
    sha256: createHash('sha256').update(snapshot).digest('hex'),
    databaseSha256,
    trailer,
    problem: judge(snapshot.length, databaseSha256, trailer),
  };
}

/**
 * Passes a snapshot through unchanged while checking its trailer: it hashes everything but the last 32 bytes
 * (held back until more data or the end shows they are not the trailer) and, at the end, compares them. The stage
 * only observes; the caller reads `result` after the stream ended and decides (so a damaged snapshot gets a
 * VerificationError with the numbers, not a stream error from deep in a pipeline).
 */
export class SnapshotTrailerStage extends Transform {
  private readonly database: Hash = createHash('sha256');
  private readonly whole: Hash = createHash('sha256');
  private tail: Buffer = Buffer.alloc(0);
  private count = 0;
  private outcome: SnapshotTrailerCheck | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    this.whole.update(chunk);
    const joined = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
    const release = joined.length - SNAPSHOT_HASH_BYTES;
    if (release > 0) {
      this.database.update(joined.subarray(0, release));
      // A copy: the held-back bytes must not pin (or alias) the caller's whole chunk.
      this.tail = Buffer.from(joined.subarray(release));
    } else {
      this.tail = Buffer.from(joined);
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const databaseSha256 = this.database.digest('hex');
    const trailer = this.tail.length === SNAPSHOT_HASH_BYTES ? this.tail.toString('hex') : '';
    this.outcome = {
      bytes: this.count,
      sha256: this.whole.digest('hex'),
      databaseSha256,
      trailer,
      problem: judge(this.count, databaseSha256, trailer),
    };
    callback();
  }

  /** Read after the stream ended; throws before, which would be a programming error. */
  get result(): SnapshotTrailerCheck {
    if (this.outcome === undefined) throw new Error('snapshot trailer read before the stream ended');
    return this.outcome;
  }
}
