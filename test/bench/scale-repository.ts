/**
 * Grows a real pgdr repository to production size without producing the WAL: the layout is exactly what
 * docs/repository-format.md describes, and every object stays valid for the commands that read it.
 *
 * - WAL: one real archived segment (compressed by `pgdr wal push`) is hard-linked under consecutive segment names.
 *   Each copy is valid zstd, so a full verify or a fetch can read it; its page header names the original segment,
 *   which no repository-wide command checks (the system identifier is checked at push only).
 * - Backups: the real backup's data object is hard-linked into each synthetic backup (so its sha256 stays right)
 *   and its manifest.json is rewritten with a new id, times and LSNs spread over the archive.
 * - On MinIO the file repository is mirrored object by object, with bounded concurrency.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { formatLsn, parseLsn } from '../../src/postgres/lsn.js';
import { formatWalSegmentName, parseWalFileName, walSegmentFromNumber, walSegmentNumber } from '../../src/postgres/wal-file-name.js';
import { mapConcurrently } from '../../src/repo/concurrent-reads.js';
import { newBackupId, RepositoryLayout } from '../../src/repo/layout.js';
import type { BackupManifest } from '../../src/repo/manifest.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { chownToPg } from './lib/proc.js';

const SEGMENT_SIZE = 16 * 1024 * 1024;
const DAY_MS = 24 * 3_600_000;

export function segmentName(n: number): string {
  return formatWalSegmentName(walSegmentFromNumber(1, BigInt(n), SEGMENT_SIZE));
}

/** What is copied: the smallest real compressed segment and the real backup, kept outside the repository. */
interface Templates {
  segmentFile: string;
  backupData: string;
  manifest: BackupManifest;
}

export class SyntheticRepository {
  private readonly layout: RepositoryLayout;
  private readonly walDir: string;
  private readonly backupsDir: string;
  private highest: number;
  /** The file new segment names are linked to (the template, or a copy of it once the template has too many links). */
  private linkSource: string;
  private copies = 0;

  private constructor(
    readonly root: string,
    cluster: string,
    private readonly templates: Templates,
  ) {
    this.layout = new RepositoryLayout(cluster);
    this.walDir = join(root, cluster, 'wal', '00000001');
    this.backupsDir = join(root, cluster, 'backups');
    this.highest = this.scanHighestSegment();
    this.linkSource = templates.segmentFile;
  }

  /**
   * Takes the templates from a repository that holds one real backup and its WAL: the real backup moves out of
   * the repository (every backup in it is synthetic from then on, spread over the whole archive).
   */
  static capture(root: string, cluster: string, templateDir: string): SyntheticRepository {
    const walDir = join(root, cluster, 'wal', '00000001');
    const segments = readdirSync(walDir).filter((f) => /^[0-9A-F]{24}\.zst$/.test(f));
    if (segments.length === 0) throw new Error(`no archived segment under ${walDir}`);
    const smallest = segments.map((f) => ({ f, size: statSync(join(walDir, f)).size })).sort((a, b) => a.size - b.size)[0]!.f;
    const backups = readdirSync(join(root, cluster, 'backups'));
    if (backups.length !== 1) throw new Error(`expected one real backup, found ${backups.length}`);
    const backupDir = join(root, cluster, 'backups', backups[0]!);
    const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8')) as BackupManifest;
    mkdirSync(templateDir, { recursive: true });
    const templates: Templates = {
      segmentFile: join(templateDir, 'segment.zst'),
      backupData: join(templateDir, manifest.objects[0]!.name),
      manifest,
    };
    linkSync(join(walDir, smallest), templates.segmentFile);
    renameSync(join(backupDir, manifest.objects[0]!.name), templates.backupData);
    rmSync(backupDir, { recursive: true, force: true });
    return new SyntheticRepository(root, cluster, templates);
  }

  /** The highest plain segment number on timeline 1. */
  get highestSegment(): number {
    return this.highest;
  }

  get backupObjectBytes(): number {
    return statSync(this.templates.backupData).size;
  }

  get segmentObjectBytes(): number {
    return statSync(this.templates.segmentFile).size;
  }

  private scanHighestSegment(): number {
    let highest = -1;
    for (const f of readdirSync(this.walDir)) {
      const m = /^([0-9A-F]{24})\.zst$/.exec(f);
      if (!m) continue;
      const parsed = parseWalFileName(m[1]!, SEGMENT_SIZE);
      if (parsed.kind === 'segment') highest = Math.max(highest, Number(walSegmentNumber(parsed.segmentName, SEGMENT_SIZE)));
    }
    return highest;
  }

  /** Hard-links the template segment under every name after the highest archived one, up to `last`. */
  growWal(last: number): number {
    this.highest = this.scanHighestSegment();
    let added = 0;
    for (let n = this.highest + 1; n <= last; n++) {
      const target = join(this.walDir, `${segmentName(n)}.zst`);
      try {
        linkSync(this.linkSource, target);
      } catch (err) {
        // ext4 allows 65,000 links to one inode: go on from a fresh copy of the template.
        if ((err as NodeJS.ErrnoException).code !== 'EMLINK') throw err;
        this.linkSource = `${this.templates.segmentFile}.${++this.copies}`;
        copyFileSync(this.templates.segmentFile, this.linkSource);
        chownToPg(this.linkSource);
        linkSync(this.linkSource, target);
      }
      added++;
    }
    this.highest = Math.max(this.highest, last);
    return added;
  }

  /** How many segment objects the archive holds now (files of timeline 1, .backup files included). */
  walObjectCount(): number {
    return readdirSync(this.walDir).length;
  }

  /**
   * Replaces every backup with `count` copies of the real one, the newest an hour before `now` and the rest one
   * `spacingDays` apart before it, their start segments spread evenly from `firstSegment` to 2 before the archive's end.
   */
  writeBackups(count: number, firstSegment: number, now: Date, spacingDays: number): string[] {
    rmSync(this.backupsDir, { recursive: true, force: true });
    mkdirSync(this.backupsDir, { recursive: true });
    chownToPg(this.backupsDir);
    const real = this.templates.manifest;
    const size = BigInt(SEGMENT_SIZE);
    const realStart = parseLsn(real.startLsn);
    const startOffset = realStart % size;
    const length = parseLsn(real.stopLsn) - realStart;
    const durationMs = new Date(real.stopTime).getTime() - new Date(real.startTime).getTime();
    const lastStart = Math.max(firstSegment, this.highest - 2);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const segment = count === 1 ? lastStart : firstSegment + Math.floor((i * (lastStart - firstSegment)) / (count - 1));
      const stopTime = new Date(now.getTime() - 3_600_000 - (count - 1 - i) * spacingDays * DAY_MS);
      const startTime = new Date(stopTime.getTime() - durationMs);
      const backupId = newBackupId(startTime);
      const startLsn = BigInt(segment) * size + startOffset;
      const stopLsn = startLsn + length;
      // Only the data object is copied (the bulk verify reads); the real backup's small backup_manifest.zst is not,
      // so the copies do not name it.
      const data = real.objects[0]!;
      const manifest: BackupManifest = {
        ...real,
        objects: [data],
        bytes: data.bytes,
        storedBytes: data.storedBytes,
        backupId,
        startTime: startTime.toISOString(),
        stopTime: stopTime.toISOString(),
        startLsn: formatLsn(startLsn),
        stopLsn: formatLsn(stopLsn),
        timeline: 1,
        startWal: segmentName(Number(startLsn / size)),
        stopWal: segmentName(Number(stopLsn / size)),
      };
      const dir = join(this.backupsDir, backupId);
      mkdirSync(dir);
      linkSync(this.templates.backupData, join(dir, real.objects[0]!.name));
      writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      chownToPg(dir);
      chownToPg(join(dir, 'manifest.json'));
      ids.push(backupId);
    }
    return ids;
  }

  /** Every object key in the repository, with its file. */
  objectFiles(): Map<string, string> {
    const files = new Map<string, string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.name.startsWith('.tmp-')) continue;
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.isFile()) files.set(relative(this.root, path), path);
      }
    };
    if (existsSync(this.root)) walk(this.root);
    return files;
  }

  get clusterLayout(): RepositoryLayout {
    return this.layout;
  }
}

/**
 * Makes the S3 repository hold what the file repository holds: uploads the keys not uploaded yet (`uploaded`
 * remembers them between calls), and deletes those the file repository no longer has (backups rewritten).
 */
export async function mirrorToStore(
  files: ReadonlyMap<string, string>,
  store: ObjectStore,
  uploaded: Set<string>,
  concurrency: number,
  log: (line: string) => void,
): Promise<{ uploaded: number; deleted: number; seconds: number }> {
  const began = Date.now();
  const gone = [...uploaded].filter((key) => !files.has(key));
  for (let i = 0; i < gone.length; i += 1000) await store.delete(gone.slice(i, i + 1000));
  for (const key of gone) uploaded.delete(key);
  const missing = [...files.keys()].filter((key) => !uploaded.has(key));
  let done = 0;
  await mapConcurrently(missing, concurrency, async (key) => {
    await store.put(key, { kind: 'file', path: files.get(key)! });
    uploaded.add(key);
    if (++done % 10_000 === 0) log(`    ${done} of ${missing.length} objects uploaded`);
  });
  return { uploaded: missing.length, deleted: gone.length, seconds: (Date.now() - began) / 1000 };
}
