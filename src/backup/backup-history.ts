import { RepositoryError } from '../errors.js';
import { parseBackupHistoryFile, type BackupHistory } from '../postgres/backup-label.js';
import { formatWalSegmentName, walSegmentRange, type WalSegmentName } from '../postgres/wal-file-name.js';
import type { RepositoryLayout } from '../repo/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { zstdDecompressBuffer } from '../stream/zstd.js';

/**
 * Finds the backup history file a primary archived when the backup stopped, `<start segment>.<offset>.backup`,
 * and reads the backup's start, stop and timeline from it. The server archives it (through `pgdr wal push`) before
 * pg_basebackup returns, so it is normally there at the first look; the caller's deadline covers a slow archiver.
 *
 * The start segment is not known in advance, only bounded: the backup's checkpoint comes after `from` (the
 * segment being written when pgdr started pg_basebackup) and before `to` (the one written after it ended).
 */
export interface FindBackupHistoryOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  /** The LABEL pg_basebackup was given; several backups (pgdr's, other tools') may start in one segment. */
  label: string;
  from: WalSegmentName;
  to: WalSegmentName;
  segmentSize: number;
  waitMs: number;
  pollMs?: number;
}

const HISTORY_OBJECT = /\.([0-9A-F]{8})\.backup\.zst$/;

export async function findBackupHistory(options: FindBackupHistoryOptions): Promise<BackupHistory> {
  const { store, layout } = options;
  const deadline = Date.now() + options.waitMs;
  const candidates = [...walSegmentRange(options.from, options.to, options.segmentSize)].map(formatWalSegmentName);
  for (;;) {
    for (const segment of candidates) {
      // Lists "<segment>." : the segment itself and any history files of backups that started in it.
      const prefix = layout.walObject(segment).slice(0, -'.zst'.length) + '.';
      for await (const info of store.list(prefix)) {
        if (!HISTORY_OBJECT.test(info.key)) continue;
        const history = parseBackupHistoryFile((await zstdDecompressBuffer(await store.getBuffer(info.key))).toString('utf8'));
        if (history.label === options.label) return history;
      }
    }
    if (Date.now() >= deadline) {
      throw new RepositoryError(
        `the backup history file of "${options.label}" (a .backup file in ${candidates[0]}..${candidates[candidates.length - 1]}) did not reach ${store.location} within ${Math.round(options.waitMs / 1000)} s`,
        "set archive_command = 'pgdr wal push %p' with the same --repo and --cluster, and check pg_stat_archiver for failures",
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}
