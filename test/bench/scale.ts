/**
 * `npm run bench:scale`: how pgdr's repository-wide commands grow with the repository, on a file:// repository and
 * on MinIO, at 1k, 10k and 100k WAL segments (10, 100, 300 backups).
 *
 *   1. A throwaway PostgreSQL 15 archives with `pgdr wal push` into a file:// repository; pgdr takes one real backup
 *      of a small dataset (--data-mb).
 *   2. For each size the repository is grown synthetically (scale-repository.ts): the smallest real compressed
 *      segment hard-linked under consecutive names, the real backup copied with patched ids, times and LSNs. The
 *      server is then moved past the synthetic archive (pg_resetwal -l) and archives its next segment for real, so
 *      `health` judges a live server against an archive that is current. The MinIO repository is a mirror.
 *   3. Each command runs as the built CLI (`node bin/pgdr …`, as the postgres user, under /usr/bin/time):
 *      `verify --quick`, `verify` (its --json timings give the hashing split), `expire --dry-run`,
 *      `health --check repository,backup-age,wal-archive`, `backup list`. Wall time and peak RSS are recorded.
 *   4. With --before DIR, the same commands also run from another pgdr build (a checkout of an older commit with
 *      `npm run build` done), on the same repositories: the "before" column.
 *   5. The section between the scale markers in docs/benchmarks.md is replaced (raw results in .bench/).
 *
 *   6. At the largest size, `backup list`, `health` and `expire --dry-run` run once more against MinIO through a proxy
 *      that delays every packet by --latency-ms each way: what a real S3 region's round trips cost them.
 *
 * Flags: --sizes 1000,10000,100000  --backups 10,100,300  --stores fs,minio  --data-mb N (default 24)
 *        --latency-ms N (default 25; 0: no such runs)  --before DIR  --before-label TEXT  --doc PATH
 *        --quick (1000,10000 only, written to .bench/ not docs/).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../src/storage/open-store.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { startMinio, type MinioServer } from '../harness/minio.js';
import { onCleanup, runWithCleanup } from './lib/cleanup.js';
import { startLatencyProxy, type LatencyProxy } from './lib/latency-proxy.js';
import { load1, machineInfo } from './lib/machine.js';
import { BenchServer } from './lib/pg.js';
import { asPg, chownToPg, PG_BIN, pgTempDir, timedAsPg } from './lib/proc.js';
import { fmtBytes, fmtSeconds, replaceSection } from './lib/report.js';
import { mirrorToStore, segmentName, SyntheticRepository } from './scale-repository.js';
import { renderScaleSection, SCALE_SECTION, type ScaleResults, type ScaleRun } from './scale-doc.js';

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const CLUSTER = 'scale';
const COMMANDS: { name: ScaleRun['command']; args: string[] }[] = [
  { name: 'verify --quick', args: ['verify', '--quick', '--json'] },
  { name: 'verify', args: ['verify', '--json'] },
  { name: 'expire --dry-run', args: ['expire', '--dry-run', '--json'] },
  { name: 'health', args: ['health', '--check', 'repository,backup-age,wal-archive', '--json'] },
  { name: 'backup list', args: ['backup', 'list', '--json'] },
];
const DEFAULT_BACKUPS: Record<number, number> = { 1000: 10, 10000: 100, 100000: 300 };

/** Run again through a proxy that adds S3-like round trips: the commands whose cost is per request. */
const LATENCY_COMMANDS = COMMANDS.filter((c) => ['backup list', 'health', 'expire --dry-run'].includes(c.name));

interface Options {
  latencyMs: number;
  sizes: number[];
  backups: number[];
  stores: ('fs' | 'minio')[];
  dataMiB: number;
  before: string | undefined;
  /** How the doc names the --before build (default: its directory). */
  beforeLabel: string | undefined;
  doc: string;
  quick: boolean;
}

function parseOptions(argv: string[]): Options {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const list = (text: string) => text.split(',').map((s) => Number(s.trim()));
  const quick = argv.includes('--quick');
  const sizes = list(value('--sizes') ?? (quick ? '1000,10000' : '1000,10000,100000'));
  const backups = value('--backups') !== undefined ? list(value('--backups')!) : sizes.map((s) => DEFAULT_BACKUPS[s] ?? Math.max(2, Math.round(s / 333)));
  if (backups.length !== sizes.length || sizes.some((s, i) => !(s > 0) || (i > 0 && s <= sizes[i - 1]!))) {
    throw new Error('--sizes must be increasing numbers, with as many --backups');
  }
  const before = value('--before');
  return {
    sizes,
    backups,
    stores: (value('--stores') ?? 'fs,minio').split(',') as ('fs' | 'minio')[],
    dataMiB: Number(value('--data-mb') ?? 24),
    latencyMs: Number(value('--latency-ms') ?? 25),
    before: before === undefined ? undefined : resolve(before),
    beforeLabel: value('--before-label'),
    doc: resolve(REPO_ROOT, value('--doc') ?? (quick ? '.bench/benchmarks-scale-quick.md' : 'docs/benchmarks.md')),
    quick,
  };
}

const log = (s: string) => process.stderr.write(`${s}\n`);

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const builds: { label: ScaleRun['build']; bin: string }[] = [{ label: 'after', bin: join(REPO_ROOT, 'bin', 'pgdr') }];
  if (opts.before) builds.push({ label: 'before', bin: join(opts.before, 'bin', 'pgdr') });
  for (const build of builds) {
    if (!existsSync(join(build.bin, '..', '..', 'dist', 'cli', 'entry.js'))) throw new Error(`${build.bin} is not built: run npm run build there`);
  }

  const root = pgTempDir('scale');
  const repoDir = join(root, 'repo');
  const spoolDir = join(root, 'spool');
  for (const dir of [repoDir, spoolDir]) {
    mkdirSync(dir);
    chownToPg(dir);
  }
  const results: ScaleResults = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    machine: await machineInfo(root, REPO_ROOT),
    options: { ...opts, before: opts.before ?? null, beforeLabel: opts.beforeLabel ?? (opts.before ? `the build in ${opts.before}` : null) },
    sizes: [],
    runs: [],
    errors: [],
  };
  const save = () => {
    results.finishedAt = new Date().toISOString();
    mkdirSync(join(REPO_ROOT, '.bench'), { recursive: true });
    writeFileSync(join(REPO_ROOT, '.bench', `scale-results${opts.quick ? '-quick' : ''}.json`), JSON.stringify(results, null, 2));
  };

  // 1. A real server, a real archive and one real backup.
  log('== a real repository: PostgreSQL 15 archiving with pgdr wal push, one backup');
  const fsUrl = `file://${repoDir}`;
  const archiveCommand = `PGDR_REPO=${fsUrl} PGDR_CLUSTER=${CLUSTER} PGDR_SPOOL_DIR=${spoolDir} ${process.execPath} ${builds[0]!.bin} wal push %p`;
  const server = await BenchServer.create({ label: 'scale-pg', settings: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${archiveCommand}'` } });
  await server.start();
  const baseEnv = (repoUrl: string, extra: Record<string, string> = {}): Record<string, string> => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: root,
    ...server.env,
    PGDR_REPO: repoUrl,
    PGDR_CLUSTER: CLUSTER,
    PGDR_SPOOL_DIR: spoolDir,
    PGDR_PG_BIN: PG_BIN,
    ...extra,
  });
  // md5 text compresses about 2:1, so the backup object is roughly --data-mb / 2 as stored.
  const rows = Math.round((opts.dataMiB * 1024 * 1024) / 100);
  await server.query(`CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload FROM generate_series(1, ${rows}) g`);
  // The basebackup engine: the synthetic backups are copies of its one data object (scale-repository.ts); the files
  // engine, which `auto` picks on this host, stores several objects and a file list that the copies would not match.
  await timedAsPg(process.execPath, [builds[0]!.bin, 'backup', 'now', '--engine', 'basebackup', '--json', '--no-progress'], baseEnv(fsUrl), root);
  await switchAndWait(server);
  const repo = SyntheticRepository.capture(repoDir, CLUSTER, join(root, 'templates'));
  log(`  template segment ${fmtBytes(repo.segmentObjectBytes)} stored, backup object ${fmtBytes(repo.backupObjectBytes)} stored`);

  let minio: MinioServer | undefined;
  let s3: ObjectStore | undefined;
  const uploaded = new Set<string>();
  if (opts.stores.includes('minio')) {
    const started = await startMinio();
    minio = started;
    Object.assign(process.env, started.env());
    const store = openStore(`s3://${started.bucket}/scale`, { s3Endpoint: started.endpoint, s3ForcePathStyle: true, s3Region: started.region });
    s3 = store;
    onCleanup('MinIO', async () => {
      await store.close();
      await started.stop();
    });
  }

  for (const [i, size] of opts.sizes.entries()) {
    const backups = opts.backups[i]!;
    log(`== ${size} WAL segments, ${backups} backups`);
    // 2. Grow the archive to `size` segments, leave the server writing the one after the next.
    const grownAt = Date.now();
    const last = size;
    const added = repo.growWal(last);
    repo.writeBackups(backups, 2, new Date(), 30 / backups);
    await moveServerPast(server, segmentName(last + 1), archiveCommand);
    const walObjects = repo.walObjectCount();
    log(`  grown by ${added} segments in ${fmtSeconds((Date.now() - grownAt) / 1000)}: ${walObjects} WAL objects`);
    const sizeInfo: ScaleResults['sizes'][number] = { wal: size, backups, walObjects, objects: repo.objectFiles().size, mirrorSeconds: null };
    if (s3) {
      const mirrored = await mirrorToStore(repo.objectFiles(), s3, uploaded, 32, log);
      sizeInfo.mirrorSeconds = mirrored.seconds;
      log(`  MinIO: ${mirrored.uploaded} objects uploaded, ${mirrored.deleted} deleted in ${fmtSeconds(mirrored.seconds)}`);
    }
    results.sizes.push(sizeInfo);
    save();

    // 3. Time every repository-wide command.
    const runs: { store: ScaleRun['store']; env: Record<string, string>; commands: typeof COMMANDS }[] = [];
    for (const store of opts.stores) {
      runs.push({ store, env: store === 'fs' ? baseEnv(fsUrl) : baseEnv(`s3://${minio!.bucket}/scale`, minio!.env()), commands: COMMANDS });
    }
    let proxy: LatencyProxy | undefined;
    if (minio && opts.latencyMs > 0 && i === opts.sizes.length - 1) {
      proxy = await startLatencyProxy(new URL(minio.endpoint), opts.latencyMs);
      runs.push({ store: 'minio-latency', env: baseEnv(`s3://${minio.bucket}/scale`, { ...minio.env(), PGDR_S3_ENDPOINT: proxy.endpoint }), commands: LATENCY_COMMANDS });
    }
    for (const { store, env, commands } of runs) {
      for (const build of builds) {
        for (const command of commands) {
          try {
            const load = load1();
            const timed = await timedAsPg(process.execPath, [build.bin, ...command.args], env, root);
            const run: ScaleRun = {
              command: command.name,
              store,
              build: build.label,
              wal: size,
              backups,
              wallSeconds: timed.wallSeconds,
              cpuSeconds: timed.cpuSeconds,
              peakKiB: Math.max(timed.memory.mainKiB, timed.memory.timeMaxKiB),
              load1: load,
            };
            if (command.name === 'verify') {
              const json = JSON.parse(timed.stdout) as { timings?: ScaleRun['timings']; checked: { bytesHashed: number } };
              run.bytesHashed = json.checked.bytesHashed;
              if (json.timings) run.timings = json.timings;
            }
            results.runs.push(run);
            log(`  ${store} ${build.label} ${command.name}: ${fmtSeconds(run.wallSeconds)} (CPU ${fmtSeconds(run.cpuSeconds)}), peak ${(run.peakKiB / 1024).toFixed(0)} MiB`);
          } catch (err) {
            const message = `${store} ${build.label} ${command.name} at ${size} WAL: ${(err as Error).message.split('\n').slice(0, 4).join(' | ')}`;
            results.errors.push(message);
            log(`  FAILED ${message}`);
          }
          save();
        }
      }
    }
    await proxy?.close();
  }

  await server.stop();
  save();
  // 5. The doc section.
  const section = renderScaleSection(results);
  const existing = existsSync(opts.doc) ? readFileSync(opts.doc, 'utf8') : '';
  mkdirSync(resolve(opts.doc, '..'), { recursive: true });
  writeFileSync(opts.doc, replaceSection(existing, SCALE_SECTION, section));
  log(`\nwrote ${opts.doc}`);
  process.stdout.write(section);
  if (results.errors.length > 0) throw new Error(`${results.errors.length} run(s) failed; see above`);
}

/** pg_switch_wal() and wait until the archiver has stored the segment it closed. */
async function switchAndWait(server: BenchServer): Promise<void> {
  const closed = await server.scalar('SELECT pg_walfile_name(pg_switch_wal())');
  const deadline = Date.now() + 120_000;
  for (;;) {
    const last = await server.scalar("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
    if (last.slice(8) >= closed.slice(8)) return;
    if (Date.now() > deadline) throw new Error(`the archiver did not reach ${closed}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Moves the server's WAL position to `segment` (pg_resetwal -l, on a clean shutdown) and archives that segment, so
 * the synthetic archive ends right before the segment the server writes: health then sees a current archive.
 */
async function moveServerPast(server: BenchServer, segment: string, archiveCommand: string): Promise<void> {
  await server.stop();
  await asPg(join(PG_BIN, 'pg_resetwal'), ['-l', segment, '-D', server.pgdata]);
  await server.start();
  // BenchServer.stop leaves archive_command = /bin/true behind, so that nothing is archived during shutdown.
  await server.setConf({ archive_command: archiveCommand });
  await switchAndWait(server);
}

process.exitCode = await runWithCleanup(main);
