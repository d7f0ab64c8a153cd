/**
 * The pgBackRest side of the bench: a stanza with a posix repository in a temp dir, zstd level 3, two processes
 * (the machine has two cores; pgdr gets the same), archive-push as archive_command either synchronous or with
 * archive-async and a spool path. Everything runs as postgres with a temp pgbackrest.conf passed by --config,
 * so nothing outside the temp dir (no /etc/pgbackrest, no /var/log/pgbackrest) is touched.
 *
 * Run alone for a smoke test: `tsx test/bench/pgbackrest.ts [--quick|--scale S]` loads a dataset, takes a full
 * backup, restores it, and prints the figures.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { ARCHIVE_SETTINGS, LOAD_SETTINGS, loadDataset, parseScale } from './dataset.js';
import { runWithCleanup } from './lib/cleanup.js';
import { BenchServer } from './lib/pg.js';
import { asPg, chownToPg, dropCaches, duBytes, pgTempDir, timedAsPg, type TimedResult } from './lib/proc.js';
import { fmtBytes, fmtMiB, fmtSeconds } from './lib/report.js';
import { waitForArchiveIdle, type PushTiming } from './wal-load.js';

export const PGBACKREST = process.env.PGBACKREST_BIN ?? '/usr/bin/pgbackrest';
const STANZA = 'bench';

export interface BackupRun extends TimedResult {
  label: string;
  /** Apparent bytes of the backup's directory in the repository (du -sb). */
  storedBytes: number;
}

export interface RestoreRun extends TimedResult {
  restoredBytes: number;
}

export class PgBackRestSide {
  private constructor(
    readonly root: string,
    readonly conf: string,
    readonly repo: string,
    readonly server: BenchServer,
  ) {}

  /** Writes the config and creates the stanza (the server must be running with wal_level=replica). */
  static async create(server: BenchServer): Promise<PgBackRestSide> {
    const root = pgTempDir('pgbackrest');
    const repo = join(root, 'repo');
    const conf = join(root, 'pgbackrest.conf');
    for (const d of ['repo', 'log', 'lock', 'spool']) {
      mkdirSync(join(root, d));
      chownToPg(join(root, d));
    }
    writeFileSync(
      conf,
      [
        '[global]',
        `repo1-path=${repo}`,
        // Expiry is not what is measured; keep every backup the bench takes.
        'repo1-retention-full=99',
        'compress-type=zst',
        'compress-level=3',
        'process-max=2',
        `log-path=${join(root, 'log')}`,
        `lock-path=${join(root, 'lock')}`,
        `spool-path=${join(root, 'spool')}`,
        'log-level-console=warn',
        'log-level-file=info',
        'start-fast=y',
        // How long a backup waits for its last WAL segment to be archived (default 60 s); generous for a busy box.
        'archive-timeout=300',
        '',
        `[${STANZA}]`,
        `pg1-path=${server.pgdata}`,
        `pg1-port=${server.port}`,
        `pg1-socket-path=${server.sockDir}`,
        'pg1-user=postgres',
        '',
      ].join('\n'),
    );
    chownToPg(conf);
    const side = new PgBackRestSide(root, conf, repo, server);
    await side.run(['stanza-create']);
    return side;
  }

  private args(extra: string[]): string[] {
    return [`--config=${this.conf}`, `--stanza=${STANZA}`, ...extra];
  }

  async run(args: string[]): Promise<string> {
    return (await asPg(PGBACKREST, this.args(args), { env: { ...process.env } })).stdout;
  }

  /** The archive_command PostgreSQL runs; async queues WAL in the spool and pushes ahead with process-max. */
  archiveCommand(async: boolean): string {
    return `${PGBACKREST} --config=${this.conf} --stanza=${STANZA} ${async ? '--archive-async' : '--no-archive-async'} archive-push %p`;
  }

  async backupFull(type: 'full' | 'diff' | 'incr' = 'full'): Promise<BackupRun> {
    await dropCaches();
    const before = new Set(this.backupLabels());
    const timed = await timedAsPg(PGBACKREST, this.args([`--type=${type}`, 'backup']), { ...process.env }, this.root);
    const label = this.backupLabels().find((l) => !before.has(l));
    if (!label) throw new Error('pgbackrest backup finished but no new backup directory appeared');
    return { ...timed, label, storedBytes: await duBytes(join(this.repo, 'backup', STANZA, label)) };
  }

  backupLabels(): string[] {
    try {
      return readdirSync(join(this.repo, 'backup', STANZA))
        .filter((n) => /^\d{8}-\d{6}F/.test(n))
        .sort();
    } catch {
      return [];
    }
  }

  /** Restores `label` (default: latest) into `target`, which must be empty and owned by postgres (or, with ['--delta'], a stopped data directory). */
  async restore(target: string, label?: string, flags: string[] = []): Promise<RestoreRun> {
    await dropCaches();
    const extra = [...(label ? [`--set=${label}`] : []), ...flags];
    const timed = await timedAsPg(PGBACKREST, this.args([`--pg1-path=${target}`, ...extra, 'restore']), { ...process.env }, this.root);
    return { ...timed, restoredBytes: await duBytes(target) };
  }

  /** One synchronous archive-push of `path` (an absolute path to a WAL segment), as archive_command would run it. */
  async pushOne(path: string): Promise<PushTiming> {
    const t = await timedAsPg(PGBACKREST, this.args(['--no-archive-async', 'archive-push', path]), { ...process.env }, this.root, this.server.pgdata);
    return { seconds: t.wallSeconds, cpuSeconds: t.cpuSeconds, rssKiB: t.memory.timeMaxKiB };
  }
}

async function main(): Promise<void> {
  const scale = parseScale(process.argv);
  const server = await BenchServer.create({ label: 'pgbr-smoke', settings: LOAD_SETTINGS });
  await server.start();
  const dataset = await loadDataset(server, scale);
  console.error(`dataset: ${fmtBytes(dataset.bytes)} in ${fmtSeconds(dataset.loadSeconds)}`);
  server.appendConf(ARCHIVE_SETTINGS);
  await server.restart();
  const side = await PgBackRestSide.create(server);
  await server.setConf({ archive_command: side.archiveCommand(false) });
  await waitForArchiveIdle(server, 60);
  const backup = await side.backupFull();
  const target = join(pgTempDir('pgbr-restore'), 'pgdata');
  await asPg('mkdir', ['-m', '700', target]);
  const restore = await side.restore(target);
  const info = await execa('runuser', ['-u', 'postgres', '--', PGBACKREST, `--config=${side.conf}`, `--stanza=${STANZA}`, 'info']);
  console.log(info.stdout);
  const mem = (t: TimedResult) =>
    `main ${fmtMiB(t.memory.mainKiB)}, largest child ${fmtMiB(t.memory.largestChildKiB)} (${t.memory.largestChildName}), tree sum ${fmtMiB(t.memory.treeSumKiB)}, /usr/bin/time %M ${fmtMiB(t.memory.timeMaxKiB)}`;
  console.log(`backup ${backup.label}: ${fmtSeconds(backup.wallSeconds)}, stored ${fmtBytes(backup.storedBytes)}; ${mem(backup)}`);
  console.log(`restore: ${fmtSeconds(restore.wallSeconds)}, ${fmtBytes(restore.restoredBytes)}; ${mem(restore)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runWithCleanup(main);
}
