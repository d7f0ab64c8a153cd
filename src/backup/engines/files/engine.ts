import { statSync } from 'node:fs';
import { ServiceError } from '../../../errors.js';
import { withConnection } from '../../../postgres/connection.js';
import { parseBackupLabel } from '../../../postgres/backup-label.js';
import { parseLsn } from '../../../postgres/lsn.js';
import { BLOCK_SIZE } from '../../../postgres/page.js';
import { mapConcurrently } from '../../../repo/concurrent-reads.js';
import { entryKey, serializeFileList, type FileEntry, type FileListEntry } from '../../../repo/file-list.js';
import type { BackupObject } from '../../../repo/manifest.js';
import { sha256Hex } from '../../../stream/checksum.js';
import type { BackupEngine, EngineJob, EngineResult, FilesEngineSummary } from '../../engine.js';
import { encodeSmallObject } from '../../object-upload.js';
import { Bundle } from './bundle.js';
import { copyChangedBlocks, copyWholeFile, VANISHED, type CopiedFile, type PageChecks } from './copy.js';
import { PageReaderPool } from '../../../postgres/page-reader.js';
import { localDataDirectoryProblem, readLocalServerFacts, type LocalServerFacts } from './local-server.js';
import { planBundles, planFileAction, type BundleTask, type FileAction, type ReferenceBackup } from './plan.js';
import { parseMaxRate, rateLimiter, unlimited } from './rate-limit.js';
import { walkDataDirectory, type FoundEntry, type FoundTablespace } from './walk.js';

/**
 * The files engine: pgdr reads the data directory itself, on the server's host, between pg_backup_start and
 * pg_backup_stop on one held session (PostgreSQL's non-exclusive low-level backup API). N workers read files,
 * check page checksums, and stream them into tar bundles, each compressed by its own zstd; a diff or incr backup
 * stores only what changed since its reference (whole files, or a relation's changed blocks). The file list, written
 * before the manifest, says where every file's bytes are; backup_label and tablespace_map from pg_backup_stop are
 * stored beside it.
 */
export const filesEngine: BackupEngine = {
  name: 'files',
  run: (job) => withConnection(job.endpoint, (client) => runFilesBackup(job, client)),
};

type Client = Parameters<Parameters<typeof withConnection>[1]>[0];

async function runFilesBackup(job: EngineJob, client: Client): Promise<EngineResult> {
  const facts = await readLocalServerFacts(client);
  const pgdata = job.pgdata ?? facts.dataDirectory;
  const problem = localDataDirectoryProblem(pgdata, facts);
  if (problem !== undefined) {
    throw new ServiceError(`the files engine cannot read the server's data directory: ${problem}`, 'run pgdr on the server\'s host as its OS user (give --pgdata when the data directory is mounted elsewhere), or use --engine basebackup');
  }
  const owner = ownerOf(pgdata);
  job.log(`backup ${job.backupId}: reading ${pgdata} with ${job.jobs} worker${job.jobs === 1 ? '' : 's'}${job.reference ? ` (${job.reference.type} on ${job.reference.manifest.backupId})` : ''}`);

  const started = await client.query<{ lsn: string }>('SELECT pg_backup_start($1, true)::text AS lsn', [job.label]).catch((err: Error) => {
    throw new ServiceError(`pg_backup_start failed: ${err.message}`, 'the role needs superuser or EXECUTE on pg_backup_start and pg_backup_stop', err);
  });
  const startLsn = started.rows[0]!.lsn;
  // From here the server holds the backup open for this session; a failure ends the session, which aborts it.
  let stopped = false;
  try {
    const tablespaceDirectory = `PG_${job.server.major}_${facts.catalogVersion}`;
    const walked = await walkDataDirectory(pgdata, tablespaceDirectory);
    const reference = job.reference === undefined ? undefined : referenceOf(job.reference);
    const actions = new Map<FoundEntry, FileAction>(walked.entries.map((e) => [e, planFileAction(e, reference)]));
    const tasks = planBundles(walked.entries, actions, { jobs: job.jobs });
    // Threads start with the first file they are given, and stop when the files are read.
    const readers = new PageReaderPool(job.jobs);
    const checks: PageChecks = {
      enabled: facts.dataChecksums,
      backupStartLsn: parseLsn(startLsn, 'backup start LSN'),
      limiter: job.maxRate === undefined ? unlimited : rateLimiter(parseMaxRate(job.maxRate)),
      readers,
    };
    const readBytes = tasks.reduce((sum, t) => sum + t.bytes, 0);
    job.log(
      `backup ${job.backupId}: ${walked.entries.filter((e) => e.type === 'file').length} files; reading ${readBytes} bytes in ${tasks.length} objects` +
        (reference ? `, ${[...actions.values()].filter((a) => a.kind === 'reference').length} files unchanged since ${reference.backupId}` : ''),
    );

    const writer = new BundleWriter(job, walked.tablespaces, facts, owner, checks, actions, readBytes);
    try {
      await writer.run(tasks);
    } finally {
      await readers.close();
    }

    const stop = await client.query<{ lsn: string; labelfile: string; spcmapfile: string }>('SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop(false)');
    stopped = true;
    const { lsn: stopLsn, labelfile, spcmapfile } = stop.rows[0]!;
    const label = parseBackupLabel(labelfile);
    if (label.startLsn !== startLsn) {
      throw new ServiceError(`pg_backup_stop reported a backup that started at ${label.startLsn}, not ${startLsn}`, 'another backup may have run on this session: run the backup again');
    }
    const stopTimeline = await stopTimelineOf(client, facts.inRecovery, label.startTimeline);

    const objects = [...writer.objects];
    objects.push(await storeSmallFile(job, 'backup_label.zst', Buffer.from(labelfile), { file: 'backup_label' }));
    if (spcmapfile !== null && spcmapfile !== '') objects.push(await storeSmallFile(job, 'tablespace_map.zst', Buffer.from(spcmapfile), { file: 'tablespace_map' }));

    const list = fileList(job, walked.entries, actions, writer);
    objects.push(await storeSmallFile(job, 'files.jsonl.zst', serializeFileList(list), { content: 'file-list' }));

    const summary: FilesEngineSummary = {
      type: job.reference?.type ?? 'full',
      ...(job.reference ? { reference: job.reference.manifest.backupId } : {}),
      chain: job.reference?.chain ?? [],
      restoredBytes: list.reduce((sum, e) => sum + (e.type === 'file' ? e.size : 0), 0),
      fileCount: list.filter((e) => e.type === 'file').length,
      pageChecksumFailures: writer.badPages,
    };
    return { objects, start: { lsn: startLsn, timeline: label.startTimeline }, stop: { lsn: stopLsn, timeline: stopTimeline }, files: summary };
  } finally {
    if (!stopped) {
      // Ending the session aborts the server's backup; withConnection closes it when this throws.
      job.log(`backup ${job.backupId}: stopping; the server's backup ends with this session`);
    }
    job.progress.stop();
  }
}

function referenceOf(reference: NonNullable<EngineJob['reference']>): ReferenceBackup {
  const files = new Map<string, FileEntry>();
  for (const entry of reference.files) if (entry.type === 'file') files.set(entryKey(entry), entry);
  return {
    backupId: reference.manifest.backupId,
    startTime: new Date(reference.manifest.startTime),
    startLsn: parseLsn(reference.manifest.startLsn, 'reference start LSN'),
    files,
  };
}

/**
 * The timeline the backup ends on: a primary's own, or a standby's replay timeline (a standby that follows a new
 * leader during the backup ends on the new timeline).
 */
async function stopTimelineOf(client: Client, inRecovery: boolean, startTimeline: number): Promise<number> {
  const { rows } = await client.query<{ tl: string | null }>(
    inRecovery ? 'SELECT min_recovery_end_timeline::text AS tl FROM pg_control_recovery()' : 'SELECT timeline_id::text AS tl FROM pg_control_checkpoint()',
  );
  const timeline = Number(rows[0]?.tl ?? 0);
  return Number.isInteger(timeline) && timeline >= startTimeline ? timeline : startTimeline;
}

async function storeSmallFile(job: EngineJob, name: string, data: Buffer, describe: Pick<BackupObject, 'file' | 'content'>): Promise<BackupObject> {
  const key = job.layout.backupObject(job.backupId, name);
  job.started.push(key);
  const compressed = await encodeSmallObject(data, job.compress.level, job.encryptTo);
  await job.store.put(key, { kind: 'buffer', data: compressed });
  return { name, bytes: data.length, storedBytes: compressed.length, sha256: sha256Hex(compressed), encoding: 'zstd', ...describe };
}

/** tar members carry the files' owner, as PostgreSQL's own tar does: a restore as root then keeps them postgres's. */
function ownerOf(pgdata: string): { uid: number; gid: number } {
  const info = statSync(pgdata);
  return { uid: info.uid, gid: info.gid };
}

/** What each file became: copied into an object of this backup, or vanished while the backup ran. */
interface Outcome {
  copied: CopiedFile;
  object: string;
}

/** Runs the bundle tasks on N workers; an error in one stops the others. */
class BundleWriter {
  readonly objects: BackupObject[] = [];
  readonly outcomes = new Map<FoundEntry, Outcome | typeof VANISHED>();
  readonly badPages: FilesEngineSummary['pageChecksumFailures'] = [];
  private readonly live = new Set<Bundle>();
  private counters = { files: 0, blocks: 0 };
  private done = 0;
  private failure: Error | undefined;

  constructor(
    private readonly job: EngineJob,
    private readonly tablespaces: FoundTablespace[],
    private readonly facts: LocalServerFacts,
    private readonly owner: { uid: number; gid: number },
    private readonly checks: PageChecks,
    private readonly actions: ReadonlyMap<FoundEntry, FileAction>,
    private readonly total: number,
  ) {
    job.progress.setTotal?.(total);
  }

  async run(tasks: BundleTask[]): Promise<void> {
    const stop = (err: unknown): void => {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
      for (const bundle of this.live) bundle.abort(this.failure);
    };
    this.job.interrupted.catch(stop);
    // Names follow the plan's order, so that they do not depend on which worker finished first.
    const named = tasks.map((task) => ({ task, name: this.nameFor(task) }));
    await mapConcurrently(named, this.job.jobs, async ({ task, name }) => {
      if (this.failure !== undefined) throw this.failure;
      try {
        await this.runTask(task, name);
      } catch (err) {
        stop(err);
        throw this.failure ?? err;
      }
    });
  }

  /**
   * One large file can be more than a worker's share of the backup (a 700 MB table of a 1.2 GB database): its object
   * is then the backup's critical path, and once the other workers are done its zstd alone would use one core of
   * several. Such an object is compressed by `jobs` zstd threads; the rest by one each.
   */
  private zstdThreads(task: BundleTask): number {
    return this.job.jobs > 1 && task.bytes * this.job.jobs > this.total ? this.job.jobs : 1;
  }

  private nameFor(task: BundleTask): string {
    const n = ++this.counters[task.content];
    return `${task.content}-${String(n).padStart(6, '0')}.tar.zst`;
  }

  private tablespaceOf(task: BundleTask): BackupObject['tablespace'] | undefined {
    if (task.tablespace === undefined) return undefined;
    const found = this.tablespaces.find((t) => t.oid === task.tablespace)!;
    const name = this.facts.tablespaceNames.get(found.oid);
    return { oid: found.oid, location: found.location, ...(name === undefined ? {} : { name }) };
  }

  private async runTask(task: BundleTask, name: string): Promise<void> {
    let bundle: Bundle | undefined;
    const tablespace = this.tablespaceOf(task);
    const open = (): Bundle => {
      if (bundle === undefined) {
        bundle = new Bundle(this.job, name, { content: task.content, ...(tablespace ? { tablespace } : {}) }, Math.max(task.bytes, 1024 * 1024), this.zstdThreads(task));
        this.live.add(bundle);
      }
      return bundle;
    };
    const { uid, gid } = this.owner;
    for (const entry of task.entries) {
      if (this.failure !== undefined) throw this.failure;
      if (entry.type === 'dir') {
        await open().member({ name: entry.path, type: 'dir', mode: entry.mode, mtime: Number(entry.mtimeNs / 1_000_000_000n), uid, gid });
        continue;
      }
      if (entry.type === 'link') {
        await open().member({ name: entry.path, type: 'link', mode: 0o777, mtime: Number(entry.mtimeNs / 1_000_000_000n), uid, gid, linkTarget: entry.target! });
        continue;
      }
      const action = this.actions.get(entry)!;
      const copied =
        action.kind === 'blocks'
          ? await copyChangedBlocks(entry, open, this.checks, action.sinceLsn, action.base.size / BLOCK_SIZE, uid, gid)
          : await copyWholeFile(entry, open(), this.checks, uid, gid);
      this.outcomes.set(entry, copied === VANISHED ? VANISHED : { copied, object: name });
      if (copied !== VANISHED && copied.badBlocks.length > 0) {
        this.badPages.push({ path: entry.path, ...(entry.tablespace === undefined ? {} : { tablespace: entry.tablespace }), blocks: copied.badBlocks });
        this.job.log(`backup ${this.job.backupId}: WARNING: ${copied.badBlocks.length} page${copied.badBlocks.length === 1 ? '' : 's'} of ${entry.absolute} failed their checksum (blocks ${copied.badBlocks.slice(0, 10).join(', ')}${copied.badBlocks.length > 10 ? ', ...' : ''})`);
      }
      this.done += entry.size;
      this.job.progress.update(this.done);
    }
    if (bundle !== undefined) {
      const object = await bundle.finish();
      this.live.delete(bundle);
      this.objects.push(object);
    }
  }
}

/** The file list: every entry as the backup found it, each file pointing at where its bytes are. */
function fileList(job: EngineJob, entries: readonly FoundEntry[], actions: ReadonlyMap<FoundEntry, FileAction>, writer: BundleWriter): FileListEntry[] {
  const list: FileListEntry[] = [];
  for (const entry of entries) {
    const common = { path: entry.path, ...(entry.tablespace === undefined ? {} : { tablespace: entry.tablespace }), mode: entry.mode };
    if (entry.type === 'dir') {
      list.push({ type: 'dir', ...common });
      continue;
    }
    if (entry.type === 'link') {
      list.push({ type: 'link', ...common, target: entry.target! });
      continue;
    }
    const action = actions.get(entry)!;
    const mtime = String(entry.mtimeNs);
    if (action.kind === 'reference') {
      const { base } = action;
      list.push({ type: 'file', ...common, size: base.size, mtime: base.mtime, sha256: base.sha256, parts: base.parts });
      continue;
    }
    const outcome = writer.outcomes.get(entry);
    if (outcome === undefined || outcome === VANISHED) continue;
    const { copied, object } = outcome;
    if (action.kind === 'blocks') {
      const parts = copied.runs && copied.runs.length > 0 ? [...action.base.parts, { backup: job.backupId, object, blocks: copied.runs }] : action.base.parts;
      list.push({ type: 'file', ...common, size: copied.size, mtime, sha256: copied.sha256, parts });
    } else {
      list.push({ type: 'file', ...common, size: copied.size, mtime, sha256: copied.sha256, parts: [{ backup: job.backupId, object }] });
    }
  }
  return list;
}
