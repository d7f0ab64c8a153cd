import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { DrillPolicy } from '../config/policy.js';
import { errorMessage, UsageError } from '../errors.js';
import { withConnection, type PgEndpoint } from '../postgres/connection.js';
import { pgBinary } from '../postgres/binaries.js';
import { isServerRunning, startLocalServer, stopLocalServer, waitForPromotion } from '../postgres/local-server.js';
import { quoteConfigValue } from '../postgres/recovery-config.js';
import { describeRecoveryTarget } from '../postgres/recovery-target.js';
import { childEnv } from '../process/child-env.js';
import { startSubprocess } from '../process/subprocess.js';
import { readBackupCatalog } from '../repo/catalog.js';
import { newBackupId, type RepositoryLayout } from '../repo/layout.js';
import { executeRestore } from '../restore/execute.js';
import type { ObjectStore } from '../storage/object-store.js';
import { PGDR_VERSION } from '../version.js';
import { describeWalNeed, evaluateExpectation, planDrill, type DrillPlan } from './drill-plan.js';
import { checkIdentityFor } from '../stream/age.js';
import { storeDrillReport, type DrillCheckResult, type DrillReport } from './drill-report.js';
import { readWalArchive } from './verify-repository.js';

export interface DrillOptions {
  store: ObjectStore;
  layout: RepositoryLayout;
  policy: DrillPolicy;
  /** restore_command for the scratch server, reaching this same repository (buildRestoreCommand). */
  restoreCommand: string;
  random: boolean;
  /** Keep the scratch directory (the server is stopped either way). */
  keep: boolean;
  /** Where the scratch directory is made; the system temp directory by default. */
  scratchParent?: string;
  /** How long unpacking, recovery, pg_amcheck and each check may take. */
  timeoutMs: number;
  /** pg_amcheck --heapallindexed: also check that every heap tuple has its index entries (slower). */
  heapallindexed: boolean;
  /** Role for the checks on the scratch copy (it must exist there); libpq's default (PGUSER, the OS user) when unset. */
  user?: string;
  /** Objects unpacked at once. */
  jobs?: number;
  /** age identity file for an encrypted backup; checked before the drill starts. */
  identityFile?: string;
  /** age recipients the stored report's details are sealed to (docs/repository-format.md#drill-reports). */
  encryptTo?: readonly string[];
  log: (message: string) => void;
  now?: () => Date;
  random01?: () => number;
}

export interface DrillOutcome {
  report: DrillReport;
  /** Where the report was stored. */
  key: string;
  /** The scratch directory, when kept. */
  keptDir?: string;
}

/**
 * The restore drill: restore into a scratch directory, start PostgreSQL there on a free port with a private socket
 * directory, wait for recovery, measure the time until the copy answers a query (the RTO), run pg_amcheck and the
 * policy's SQL checks, stop and remove the copy, and store the report. Everything after planning is recorded in the
 * report, failures included: a drill that fails must leave its reason in the repository, where `pgdr health` and
 * `pgdr drill list` find it. Only a drill that cannot start at all (run as root) throws.
 */
export async function runDrill(options: DrillOptions): Promise<DrillOutcome> {
  const { store, layout } = options;
  const now = options.now ?? (() => new Date());
  if (process.getuid?.() === 0) {
    throw new UsageError(
      'cannot run a restore drill as root: PostgreSQL refuses to start as root, and the scratch copy must belong to an unprivileged user',
      'run it as the PostgreSQL OS user, e.g. `runuser -u postgres -- pgdr drill`',
    );
  }
  const startedAt = now();
  const drillId = await freshDrillId(store, layout, now);
  const began = Date.now();
  // Each step's time since the start, so a slow drill shows where its time went.
  const log = (message: string): void => options.log(`drill ${drillId} +${((Date.now() - began) / 1000).toFixed(1)} s: ${message}`);
  const steps: DrillOptions = { ...options, log };
  const report: DrillReport = {
    format: 1,
    drillId,
    cluster: layout.cluster,
    backupId: null,
    target: '',
    mode: options.random ? 'random' : 'newest',
    startedAt: startedAt.toISOString(),
    finishedAt: startedAt.toISOString(),
    rtoSeconds: null,
    result: 'failed',
    wal: { ok: false, detail: 'not checked' },
    checks: [],
    amcheck: options.policy.amcheck
      ? { ok: false, detail: 'not run: the restored copy never became usable' }
      : { ok: true, detail: 'not run: disabled by the drill policy (drill.amcheck: false)' },
    recovered: null,
    failures: [],
    host: hostname(),
    pgdrVersion: PGDR_VERSION,
  };
  const failures: string[] = [];
  let scratch: ScratchServer | undefined;
  let keptDir: string | undefined;
  const guard = guardAgainstSignals(() => scratch, options.keep);
  let identityRefused: unknown;
  try {
    const planned = await planFromRepository(steps);
    if (planned === undefined) {
      failures.push(`the repository holds no complete backup of cluster ${layout.cluster} to restore`);
    } else {
      const { plan, wal } = planned;
      report.backupId = plan.backup.backupId;
      report.target = describeRecoveryTarget(plan.target);
      report.wal = wal;
      log(plan.reason);
      if (!wal.ok) {
        failures.push(wal.detail);
        log(`WAL check failed: ${wal.detail}; restoring anyway to see how far recovery gets`);
      }
      if (plan.backup.encryption !== undefined) {
        try {
          await checkIdentityFor(options.identityFile, plan.backup.encryption.recipients, `backup ${plan.backup.backupId}`);
        } catch (err) {
          // The operator's key, not the backup, is at fault: no report that says the backups fail to restore.
          identityRefused = err;
          throw err;
        }
      }
      scratch = await prepareScratch(options.scratchParent ?? tmpdir(), drillId);
      await restoreAndCheck(steps, plan, scratch, report, failures);
    }
  } catch (err) {
    if (err !== identityRefused) failures.push(errorMessage(err));
  } finally {
    guard.disarm();
    if (scratch) {
      await scratch.stop(log);
      log('the copy is stopped');
      if (options.keep) {
        keptDir = scratch.dir;
        log(`kept the stopped copy in ${scratch.dir} (start it with: pg_ctl -D ${scratch.pgdata} -l ${scratch.logFile} start)`);
      } else {
        await scratch.remove(log);
      }
    }
  }
  if (identityRefused !== undefined) {
    guard.reportSettled();
    throw identityRefused;
  }
  // Whatever else went wrong then, the cause was the signal.
  if (guard.signal) failures.unshift(`the drill was interrupted by ${guard.signal}`);
  report.finishedAt = now().toISOString();
  report.result = failures.length === 0 ? 'passed' : 'failed';
  report.failures = failures.map(firstLine);
  if (failures.length > 0) report.error = report.failures[0];
  let key: string;
  try {
    key = await storeDrillReport(store, layout, report, options.encryptTo ?? []);
  } finally {
    guard.reportSettled();
  }
  log(`${report.result}; report stored as ${key}`);
  return { report, key, ...(keptDir === undefined ? {} : { keptDir }) };
}

interface PlannedDrill {
  plan: DrillPlan;
  /** The WAL pre-check: whether everything the restore reads is archived. */
  wal: { ok: boolean; detail: string };
}

async function planFromRepository(options: DrillOptions): Promise<PlannedDrill | undefined> {
  const { store, layout, log } = options;
  const catalog = await readBackupCatalog(store, layout);
  if (catalog.complete.length === 0) return undefined;
  const archive = await readWalArchive(store, layout, undefined, log, options.identityFile, catalog.complete);
  const plan = planDrill(catalog.complete, archive.index, { random: options.random, random01: options.random01 ?? Math.random });
  return { plan, wal: describeWalNeed(plan.walNeed, archive.index) };
}

async function restoreAndCheck(options: DrillOptions, plan: DrillPlan, scratch: ScratchServer, report: DrillReport, failures: string[]): Promise<void> {
  const { log } = options;
  const restoreStarted = Date.now();
  log(`restoring backup ${plan.backup.backupId} into ${scratch.pgdata}`);
  try {
    await executeRestore({
      store: options.store,
      layout: options.layout,
      pgdata: scratch.pgdata,
      target: plan.target,
      backupId: plan.backup.backupId,
      force: false,
      jobs: options.jobs ?? 2,
      restoreCommand: options.restoreCommand,
      archiveMode: 'off',
      port: scratch.port,
      // Started below, after the scratch settings are added: executeRestore knows nothing of sockets or pg_hba.
      start: false,
      startTimeoutMs: options.timeoutMs,
      // Tablespaces into the scratch directory too: their old locations belong to the production server.
      tablespaceMap: plan.backup.objects.flatMap((o) => (o.tablespace === undefined ? [] : [{ from: String(o.tablespace.oid), to: join(scratch.dir, 'tablespaces', String(o.tablespace.oid)) }])),
      progress: false,
      ...(options.identityFile === undefined ? {} : { identityFile: options.identityFile }),
      log,
    });
    await scratch.configure(report.drillId);
    log(`starting the restored copy on port ${scratch.port} (log: ${scratch.logFile})`);
    await startLocalServer(scratch.pgdata, scratch.logFile, Math.max(Math.ceil(options.timeoutMs / 1000), 10));
    const promoted = await waitForPromotion(scratch.pgdata, scratch.logFile, options.timeoutMs, options.user);
    const endpoint = { host: scratch.socketDir, port: scratch.port, ...(options.user ? { user: options.user } : {}) } satisfies PgEndpoint;
    const lastTransactionAt = await withConnection(endpoint, async (client) => {
      const { rows } = await client.query<{ at: Date | null }>('SELECT pg_last_xact_replay_timestamp() AS at');
      return rows[0]?.at ?? null;
    });
    // The first query answered: from here the copy is usable, so this is the RTO.
    report.rtoSeconds = Math.round((Date.now() - restoreStarted) / 100) / 10;
    report.recovered = { timeline: promoted.timeline, lsn: promoted.lsn, lastTransactionAt: lastTransactionAt ? lastTransactionAt.toISOString() : null };
    log(`usable after ${report.rtoSeconds} s (timeline ${promoted.timeline}, ${promoted.lsn})`);

    if (options.policy.amcheck) {
      log('running pg_amcheck on every database of the copy');
      report.amcheck = await runAmcheck(endpoint, options);
      if (!report.amcheck.ok) failures.push(`pg_amcheck found problems: ${report.amcheck.detail}`);
    }
    // A freshness bound is measured from the moment the copy represents: the end of the archive (now) for a
    // restore to the latest WAL, the last replayed transaction for a random point.
    const reference = plan.target.kind === 'latest' ? new Date(report.startedAt) : (lastTransactionAt ?? new Date(report.startedAt));
    if (options.policy.checks.length > 0) log(`running ${options.policy.checks.length} policy checks`);
    for (const check of options.policy.checks) {
      const result = await runCheck(endpoint, check, reference, options.timeoutMs);
      report.checks.push(result);
      if (!result.ok) failures.push(`check ${JSON.stringify(check.name)} failed: ${result.detail}`);
    }
  } catch (err) {
    failures.push(errorMessage(err));
  }
}

/** pg_amcheck over every database of the copy; amcheck is installed where missing (the copy is thrown away). */
async function runAmcheck(endpoint: { host: string; port: number; user?: string }, options: DrillOptions): Promise<{ ok: boolean; detail: string }> {
  const args = ['--all', '--install-missing', '--no-password', '--host', endpoint.host, '--port', String(endpoint.port), '--jobs', '2'];
  if (endpoint.user) args.push('--username', endpoint.user);
  if (options.heapallindexed) args.push('--heapallindexed');
  const child = startSubprocess(pgBinary('pg_amcheck'), args, {
    label: 'pg_amcheck',
    env: childEnv('postgres-client'),
    timeoutMs: options.timeoutMs,
    hint: 'pg_amcheck ships with PostgreSQL 14 and newer (postgresql-15 on Debian)',
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    if (output.length < 64 * 1024) output += chunk;
  });
  try {
    await child.wait();
    return { ok: true, detail: `pg_amcheck --all${options.heapallindexed ? ' --heapallindexed' : ''} found no corruption` };
  } catch (err) {
    // pg_amcheck prints each corruption it finds on stdout; the first line says where.
    const found = output.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    const lines = found.length > 0 ? `${found.slice(0, 3).join(' | ')}${found.length > 3 ? ` (${found.length} lines)` : ''}` : errorMessage(err);
    return { ok: false, detail: lines };
  }
}

async function runCheck(endpoint: PgEndpoint, check: DrillPolicy['checks'][number], reference: Date, timeoutMs: number): Promise<DrillCheckResult> {
  try {
    const value = await withConnection(endpoint, async (client: pg.Client): Promise<{ none: string } | { value: unknown }> => {
      // Read only, so a policy check cannot change the copy it judges; bounded, so one slow query cannot hang a drill.
      await client.query('BEGIN READ ONLY');
      await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
      const result = await client.query({ text: check.sql, rowMode: 'array' });
      await client.query('ROLLBACK');
      const rows = result.rows as unknown[][];
      if (rows.length === 0) return { none: 'the query returned no rows' };
      if ((rows[0]?.length ?? 0) === 0) return { none: 'the query returned no columns' };
      return { value: rows[0]![0] };
    });
    if ('none' in value) return { name: check.name, ok: false, detail: value.none };
    return { name: check.name, ...evaluateExpectation(value.value, check.expect, reference) };
  } catch (err) {
    return { name: check.name, ok: false, detail: `the query failed: ${firstLine(errorMessage(err))}` };
  }
}

interface ScratchServer {
  dir: string;
  pgdata: string;
  socketDir: string;
  logFile: string;
  port: number;
  /** Adds the drill's own settings to the restored postgresql.auto.conf, after restore's. */
  configure(drillId: string): Promise<void>;
  stop(log: (message: string) => void): Promise<void>;
  remove(log: (message: string) => void): Promise<void>;
}

async function prepareScratch(parent: string, drillId: string): Promise<ScratchServer> {
  const dir = await mkdtemp(join(parent, `pgdr-drill-${drillId}-`));
  // Only this user may reach the copy: it holds production data, and its socket accepts anyone who can reach it.
  await chmod(dir, 0o700);
  const pgdata = join(dir, 'pgdata');
  let socketDir = join(dir, 'sockets');
  // A Unix socket path holds at most 107 bytes; a deep --scratch-dir gets its sockets in a short private temp dir.
  const separateSockets = Buffer.byteLength(join(socketDir, '.s.PGSQL.65535')) > 100;
  if (separateSockets) socketDir = await mkdtemp(join(tmpdir(), 'pgdr-sock-'));
  else await mkdir(socketDir);
  await chmod(socketDir, 0o700);
  const hbaFile = join(dir, 'pg_hba.conf');
  await writeFile(hbaFile, '# pgdr drill: the private socket directory is the only way in\nlocal all all trust\n', { mode: 0o600 });
  const logFile = join(dir, 'postgresql.log');
  const port = await freePort();
  let stopping: Promise<void> | undefined;
  let removing: Promise<void> | undefined;
  return {
    dir,
    pgdata,
    socketDir,
    logFile,
    port,
    async configure(id) {
      const conf = join(pgdata, 'postgresql.conf');
      // A data directory from Patroni may keep its configuration elsewhere; PostgreSQL needs the file to exist.
      if (!existsSync(conf)) await writeFile(conf, '# written by pgdr drill: the backup held no postgresql.conf\n', { mode: 0o600 });
      const settings: Record<string, string> = {
        // The production server's socket directory, certificates, log collector and synchronous standbys do not
        // exist for the copy, or would make it hang: it gets its own, minimal ones.
        listen_addresses: '127.0.0.1',
        unix_socket_directories: socketDir,
        hba_file: hbaFile,
        ssl: 'off',
        logging_collector: 'off',
        synchronous_standby_names: '',
        cluster_name: `pgdr-drill-${id}`,
      };
      const lines = Object.entries(settings).map(([name, value]) => `${name} = ${quoteConfigValue(value)}`);
      await appendFile(join(pgdata, 'postgresql.auto.conf'), `# pgdr drill ${id}: a private scratch copy\n${lines.join('\n')}\n`);
    },
    // Both the drill and a signal handler may ask; they share one stop and one removal, so the directory is never
    // removed under a server still shutting down.
    stop(log) {
      stopping ??= (async () => {
        if (!isServerRunning(pgdata)) return;
        try {
          await stopLocalServer(pgdata, 'fast');
        } catch (err) {
          log(`fast shutdown of the copy failed (${errorMessage(err)}); stopping it immediately`);
          await stopLocalServer(pgdata, 'immediate').catch((e: unknown) => log(`could not stop the copy in ${pgdata}: ${errorMessage(e)}`));
        }
      })();
      return stopping;
    },
    remove(log) {
      removing ??= (async () => {
        await stopping;
        for (const path of separateSockets ? [dir, socketDir] : [dir]) {
          await rm(path, { recursive: true, force: true, maxRetries: 3 }).catch((err: unknown) => log(`could not remove ${path}: ${errorMessage(err)}`));
        }
      })();
      return removing;
    },
  };
}

interface SignalGuard {
  /** The signal that interrupted the drill, if one did. */
  readonly signal: NodeJS.Signals | undefined;
  /** Stops listening, unless a signal already arrived (its cleanup then runs to the end). */
  disarm(): void;
  /** The report is stored (or failed to be): an interrupted drill may now end. */
  reportSettled(): void;
}

/** How long an interrupted drill waits for its report before dying of the signal. */
const REPORT_GRACE_MS = 10_000;

/**
 * A CronJob deadline or Ctrl-C must not leave a postmaster running on a copy of production data: on SIGTERM or
 * SIGINT the copy is stopped (and removed unless kept) at once, the drill's own flow gets a few seconds to store a
 * report saying it was interrupted, and then the signal is raised again so pgdr still dies of it. The listener stays
 * registered until then: other libraries' signal hooks (execa's child cleanup) re-raise the signal at once when they
 * see no other listener left.
 */
function guardAgainstSignals(current: () => ScratchServer | undefined, keep: boolean): SignalGuard {
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
  let received: NodeJS.Signals | undefined;
  let settle: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const handler = (signal: NodeJS.Signals): void => {
    if (received) return;
    received = signal;
    const scratch = current();
    const log = (m: string): void => void process.stderr.write(`pgdr: ${m}\n`);
    log(`received ${signal}: stopping the drill's scratch copy`);
    void (async () => {
      if (scratch) {
        await scratch.stop(log);
        if (!keep) await scratch.remove(log);
      }
      await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, REPORT_GRACE_MS))]);
      for (const s of signals) process.removeListener(s, handler);
      process.kill(process.pid, signal);
    })();
  };
  for (const s of signals) process.on(s, handler);
  return {
    get signal() {
      return received;
    },
    disarm() {
      if (received) return;
      for (const s of signals) process.removeListener(s, handler);
    },
    reportSettled() {
      settle();
    },
  };
}

async function freshDrillId(store: ObjectStore, layout: RepositoryLayout, now: () => Date): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const id = newBackupId(now());
    if ((await store.head(layout.drillReport(id))) === null || attempt >= 4) return id;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** A TCP port free on 127.0.0.1 a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
