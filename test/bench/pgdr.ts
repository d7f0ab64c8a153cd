/**
 * The pgdr side of the bench, driven only through the CLI contract (../shared/CLI.md): `pgdr backup now --json`,
 * `pgdr restore --pgdata DIR --target latest`, `pgdr wal push PATH` as archive_command, with a file:// repository
 * in a temp dir. It runs the compiled CLI (bin/pgdr → dist/), as the postgres OS user, like a real deployment.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackupRun, RestoreRun } from './pgbackrest.js';
import type { BenchServer } from './lib/pg.js';
import { chownToPg, dropCaches, duBytes, PG_BIN, pgTempDir, timedAsPg } from './lib/proc.js';
import type { PushTiming } from './wal-load.js';

export const PGDR_BIN = resolve(fileURLToPath(import.meta.url), '../../../bin/pgdr');
const CLUSTER = 'bench';

export function pgdrAvailable(): boolean {
  return existsSync(resolve(PGDR_BIN, '../../dist/bundle/entry.js'));
}

export class PgdrSide {
  readonly repoDir: string;
  readonly spoolDir: string;

  private constructor(
    readonly root: string,
    readonly server: BenchServer,
  ) {
    this.repoDir = join(root, 'repo');
    this.spoolDir = join(root, 'spool');
  }

  static create(server: BenchServer): PgdrSide {
    const side = new PgdrSide(pgTempDir('pgdr'), server);
    for (const d of [side.repoDir, side.spoolDir]) {
      mkdirSync(d);
      chownToPg(d);
    }
    return side;
  }

  get repoUrl(): string {
    return `file://${this.repoDir}`;
  }

  /** Settings through the environment, as the CronJobs and archive_command pass them. */
  get env(): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.root,
      ...this.server.env,
      PGDR_REPO: this.repoUrl,
      PGDR_CLUSTER: CLUSTER,
      PGDR_SPOOL_DIR: this.spoolDir,
      PGDR_PG_BIN: PG_BIN,
    };
  }

  /** archive_command: PostgreSQL runs it through sh in PGDATA, so the settings go in front as assignments. */
  archiveCommand(): string {
    const vars = `PGDR_REPO=${this.repoUrl} PGDR_CLUSTER=${CLUSTER} PGDR_SPOOL_DIR=${this.spoolDir} PGDR_PG_BIN=${PG_BIN}`;
    return `${vars} ${process.execPath} ${PGDR_BIN} wal push %p`;
  }

  /** `pgdr backup now --json` with `extra` flags (the engine bench passes --engine files --jobs 2 --type ...). */
  async backupFull(extra: string[] = []): Promise<BackupRun & { json: Record<string, unknown> }> {
    await dropCaches();
    const timed = await timedAsPg(process.execPath, [PGDR_BIN, 'backup', 'now', ...extra, '--json'], this.env, this.root);
    const json = JSON.parse(timed.stdout) as Record<string, unknown>;
    const label = String(json.backupId);
    const dir = join(this.repoDir, CLUSTER, 'backups', label);
    return { ...timed, json, label, storedBytes: existsSync(dir) ? await duBytes(dir) : Number(json.storedBytes) };
  }

  /** `pgdr restore` of the newest backup (--target latest) into `target`, an empty directory owned by postgres. */
  async restore(target: string, backupId?: string, flags: string[] = []): Promise<RestoreRun> {
    await dropCaches();
    const extra = [...(backupId ? ['--backup-id', backupId] : []), ...flags];
    const timed = await timedAsPg(
      process.execPath,
      [PGDR_BIN, 'restore', '--pgdata', target, '--target', 'latest', ...extra, '--json'],
      this.env,
      this.root,
    );
    return { ...timed, restoredBytes: await duBytes(target) };
  }

  /** One `pgdr wal push PATH`, timed from spawn to exit: what PostgreSQL waits for per segment. */
  async pushOne(path: string): Promise<PushTiming> {
    const t = await timedAsPg(process.execPath, [PGDR_BIN, 'wal', 'push', path], this.env, this.root, this.server.pgdata);
    return { seconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, rssKiB: t.memory.timeMaxKiB };
  }
}
