import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { stringify as toYaml } from 'yaml';
import { killQuietly, registerCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { descendantPids, isProcessAlive } from './postgres.js';
import { findOnPath, pgBinDir, testPath } from './preflight.js';
import { chownToServiceUser, makeTempDir, removeTempDir, serviceUser } from './temp.js';

/**
 * Real Patroni clusters for the integration tests: Debian's patroni 3.0.2 running PostgreSQL 15 as the postgres OS
 * user, every member on 127.0.0.1 and free ports, its DCS an etcd cluster from test/harness/etcd.ts, timings short
 * (ttl 10 s, loop_wait 2 s) so that a failover takes seconds. Members are stopped, and every PostgreSQL process of
 * theirs killed, even when a test fails: Patroni starts the postmaster detached from itself (it is not Patroni's
 * child), so the harness finds it through postmaster.pid.
 */

/** What the harness needs of an etcd cluster (test/harness/etcd.ts provides it). */
export interface PatroniDcs {
  readonly endpoints: readonly string[];
}

export interface PatroniMemberInfo {
  readonly name: string;
  readonly pgdata: string;
  readonly pgPort: number;
}

export interface StartPatroniOptions {
  /** Default 2. */
  members?: number;
  /** Patroni scope; default a random one so that clusters of one etcd never meet. */
  scope?: string;
  etcd: PatroniDcs;
  /** archive_command of each member (archive_mode on); pgdrCommandLine(['wal', 'push', '%p']) for pgdr. */
  archiveCommand?: (member: PatroniMemberInfo) => string;
  /** restore_command of each member (Patroni's recovery_conf), e.g. pgdr wal fetch. */
  restoreCommand?: (member: PatroniMemberInfo) => string;
  /** Environment of Patroni, and so of PostgreSQL and its archive_command: credentials go here, never in argv. */
  env?: Record<string, string>;
  /** Extra postgresql.conf parameters for every member. */
  parameters?: Record<string, string | number | boolean>;
  /** Extra Patroni `postgresql:` settings (e.g. create_replica_methods) merged into each member's. */
  postgresql?: (member: PatroniMemberInfo) => Record<string, unknown>;
  /** Replaces the `bootstrap` section's initdb with this (e.g. a custom bootstrap method). */
  bootstrap?: Record<string, unknown>;
  /** How long to wait for the leader and the streaming replicas. Default 120 s. */
  timeoutMs?: number;
  /** Start only the first member's Patroni (the others are started later with member.start()). */
  startOnlyFirst?: boolean;
}

export interface PatroniMember extends PatroniMemberInfo {
  /** http://127.0.0.1:PORT, Patroni's REST API. */
  readonly restUrl: string;
  readonly dir: string;
  /** Patroni's own log (its stdout and stderr). */
  readonly logFile: string;
  readonly connection: { host: '127.0.0.1'; port: number; user: 'postgres'; database: 'postgres' };
  /** Patroni's pid while it runs. */
  pid(): number | undefined;
  /** The postmaster's pid while it runs. */
  postmasterPid(): number | undefined;
  isRunning(): boolean;
  /** SIGKILLs Patroni and PostgreSQL (postmaster and every backend), as a machine crash would; files stay. */
  kill(): Promise<void>;
  /** Stops Patroni (which stops PostgreSQL and gives up the leader key); whatever is left is killed. Files stay. */
  stop(): Promise<void>;
  /** Starts Patroni again on the same ports and data directory; it rejoins (pg_rewind if needed). */
  start(): Promise<void>;
  /** The ends of Patroni's log and PostgreSQL's log. */
  logTail(lines?: number): string;
}

export interface PatroniCluster {
  readonly scope: string;
  readonly members: PatroniMember[];
  readonly etcdEndpoints: readonly string[];
  /** REST URLs of every member. */
  restUrls(): string[];
  member(name: string): PatroniMember;
  /**
   * Waits until a member holds the leader key, reports running, and its PostgreSQL is out of recovery. `not`
   * excludes a member (the one just killed), to wait for a failover.
   */
  waitForLeader(options?: { timeoutMs?: number; not?: string }): Promise<PatroniMember>;
  /**
   * Waits until `count` replicas (default: every other running member) stream from the leader and, unless
   * caughtUp is false, have replayed everything the leader has written.
   */
  waitForReplicasStreaming(options?: { timeoutMs?: number; count?: number; caughtUp?: boolean }): Promise<void>;
  query<T = Record<string, unknown>>(member: PatroniMember, sql: string, params?: unknown[]): Promise<T[]>;
  /** What pgdr reads: PGDR_PATRONI with every REST URL. */
  env(): { PGDR_PATRONI: string };
  /** Stops every member and removes the temp directory. */
  stop(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 120_000;

export function patroniBinary(): string {
  const found = findOnPath(process.env.PGDR_PATRONI_BIN ?? 'patroni', testPath());
  if (found === undefined) throw new Error('patroni not found on PATH: run bash test/setup/ensure-deps.sh');
  return found;
}

export async function startPatroniCluster(options: StartPatroniOptions): Promise<PatroniCluster> {
  const count = options.members ?? 2;
  if (!Number.isInteger(count) || count < 1) throw new Error(`startPatroniCluster: members must be a positive integer, got ${count}`);
  if (options.etcd.endpoints.length === 0) throw new Error('startPatroniCluster: the etcd cluster has no endpoints');
  const scope = options.scope ?? `pgdr-${randomBytes(3).toString('hex')}`;
  // Owned by postgres with o+x parents: Patroni and PostgreSQL must reach their files in it.
  const dir = makeTempDir(`patroni-${scope}`, { owner: 'service' });
  const members: LocalPatroniMember[] = [];
  const usedPorts = new Set<number>();
  const port = async (): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (!usedPorts.has(p)) {
        usedPorts.add(p);
        return p;
      }
    }
  };
  for (let i = 1; i <= count; i++) {
    members.push(new LocalPatroniMember(`pg${i}`, scope, join(dir, `m${i}`), await port(), await port(), options));
  }
  const cluster = new LocalPatroniCluster(scope, dir, members, options);
  const unregister = registerCleanup(
    `Patroni cluster ${scope}`,
    () => cluster.stop(),
    () => {
      for (const m of members) m.killSync();
    },
  );
  cluster.onStop(unregister);
  try {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const first = members[0] as LocalPatroniMember;
    first.launch();
    await cluster.waitForLeader({ timeoutMs });
    if (!options.startOnlyFirst) {
      // After the first bootstrapped: replicas then clone from a leader that exists, instead of racing for it.
      for (const m of members.slice(1)) m.launch();
      await cluster.waitForReplicasStreaming({ timeoutMs, count: count - 1 });
    }
  } catch (err) {
    const logs = members.map((m) => `--- ${m.name} ---\n${m.logTail(25)}`).join('\n');
    await cluster.stop().catch(() => undefined);
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return cluster;
}

class LocalPatroniCluster implements PatroniCluster {
  private stopped = false;
  private unregister: (() => void) | undefined;

  constructor(
    readonly scope: string,
    private readonly dir: string,
    readonly members: LocalPatroniMember[],
    private readonly options: StartPatroniOptions,
  ) {}

  get etcdEndpoints(): readonly string[] {
    return this.options.etcd.endpoints;
  }

  onStop(unregister: () => void): void {
    this.unregister = unregister;
  }

  restUrls(): string[] {
    return this.members.map((m) => m.restUrl);
  }

  member(name: string): PatroniMember {
    const found = this.members.find((m) => m.name === name);
    if (found === undefined) throw new Error(`no Patroni member ${name} in ${this.scope} (members: ${this.members.map((m) => m.name).join(', ')})`);
    return found;
  }

  env(): { PGDR_PATRONI: string } {
    return { PGDR_PATRONI: this.restUrls().join(',') };
  }

  async query<T = Record<string, unknown>>(member: PatroniMember, sql: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ ...member.connection, connectionTimeoutMillis: 10_000 });
    await client.connect();
    client.on('error', () => undefined);
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async waitForLeader(options: { timeoutMs?: number; not?: string } = {}): Promise<PatroniMember> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      for (const member of this.members.filter((m) => m.isRunning())) {
        try {
          const response = await fetch(`${member.restUrl}/cluster`, { signal: AbortSignal.timeout(2_000) });
          const body = (await response.json()) as { members?: Array<{ name: string; role: string; state?: string }> };
          const leader = body.members?.find((m) => m.role === 'leader' || m.role === 'master' || m.role === 'primary');
          if (leader === undefined) {
            last = `${member.name} sees no leader`;
            continue;
          }
          if (leader.name === options.not) {
            last = `${member.name} still sees ${leader.name} as the leader`;
            continue;
          }
          if (leader.state !== 'running') {
            last = `leader ${leader.name} is ${leader.state}`;
            continue;
          }
          const found = this.members.find((m) => m.name === leader.name);
          if (found === undefined) throw new Error(`Patroni names a leader ${leader.name} that this harness did not start`);
          const [row] = await this.query<{ recovery: boolean }>(found, 'select pg_is_in_recovery() as recovery');
          if (row?.recovery === false) return found;
          last = `leader ${leader.name} is still in recovery`;
        } catch (err) {
          last = `${member.name}: ${(err as Error).message}`;
        }
      }
      if (Date.now() > deadline) throw new Error(`Patroni cluster ${this.scope} has no leader after ${timeoutMs / 1000} s (last: ${last})`);
      for (const member of this.members) member.checkAlive();
      await sleep(250);
    }
  }

  async waitForReplicasStreaming(options: { timeoutMs?: number; count?: number; caughtUp?: boolean } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const leader = await this.waitForLeader({ timeoutMs });
    const count = options.count ?? this.members.filter((m) => m.isRunning()).length - 1;
    const caughtUp = options.caughtUp ?? true;
    let last = 'nothing yet';
    for (;;) {
      try {
        const rows = await this.query<{ name: string; state: string; caught_up: boolean }>(
          leader,
          `select application_name as name, state, coalesce(replay_lsn >= pg_current_wal_lsn(), false) as caught_up
             from pg_stat_replication`,
        );
        // Only the members' own walreceivers: pg_basebackup's WAL stream while a replica is being cloned counts not.
        const names = new Set(this.members.map((m) => m.name));
        const streaming = rows.filter((r) => names.has(r.name) && r.state === 'streaming' && (!caughtUp || r.caught_up));
        if (streaming.length >= count) return;
        last = JSON.stringify(rows);
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`Patroni cluster ${this.scope}: ${count} replica(s) not streaming${caughtUp ? ' and caught up' : ''} after ${timeoutMs / 1000} s (pg_stat_replication on ${leader.name}: ${last})`);
      }
      for (const member of this.members) member.checkAlive();
      await sleep(250);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Replicas first, so the leader is not left waiting on them and no replica tries to take over.
    const [first, ...rest] = this.members;
    await Promise.all(rest.map((m) => m.stop().catch(() => m.kill())));
    if (first) await first.stop().catch(() => first.kill());
    this.unregister?.();
    await removeTempDir(this.dir);
  }
}

class LocalPatroniMember implements PatroniMember {
  readonly pgdata: string;
  readonly logFile: string;
  readonly restUrl: string;
  private readonly configFile: string;
  private readonly pgLogDir: string;
  private readonly home: string;
  private child: ChildProcess | undefined;
  private exited: string | undefined;
  /** The last postmaster seen, for cleanup when postmaster.pid is already gone. */
  private lastPostmaster: number | undefined;

  constructor(
    readonly name: string,
    private readonly scope: string,
    readonly dir: string,
    readonly pgPort: number,
    private readonly restPort: number,
    private readonly options: StartPatroniOptions,
  ) {
    this.pgdata = join(dir, 'pgdata');
    this.logFile = join(dir, 'patroni.log');
    this.configFile = join(dir, 'patroni.yml');
    this.pgLogDir = join(dir, 'pglog');
    this.home = join(dir, 'home');
    this.restUrl = `http://127.0.0.1:${restPort}`;
    for (const sub of [dir, this.pgLogDir, this.home, join(dir, 'sock')]) {
      mkdirSync(sub, { recursive: true, mode: 0o700 });
      chownToServiceUser(sub);
    }
    writeFileSync(this.configFile, toYaml(this.config()), { mode: 0o600 });
    chownToServiceUser(this.configFile);
  }

  get connection(): { host: '127.0.0.1'; port: number; user: 'postgres'; database: 'postgres' } {
    return { host: '127.0.0.1', port: this.pgPort, user: 'postgres', database: 'postgres' };
  }

  private config(): Record<string, unknown> {
    const info: PatroniMemberInfo = { name: this.name, pgdata: this.pgdata, pgPort: this.pgPort };
    const parameters: Record<string, unknown> = {
      unix_socket_directories: join(this.dir, 'sock'),
      wal_level: 'replica',
      hot_standby: 'on',
      max_wal_senders: 10,
      max_replication_slots: 10,
      wal_keep_size: '128MB',
      // pg_rewind after a failover needs hint bits in WAL (the data checksums from initdb give that too).
      wal_log_hints: 'on',
      logging_collector: 'on',
      log_directory: this.pgLogDir,
      log_filename: 'postgresql.log',
      log_line_prefix: '%m [%p] %q%u@%d ',
      ...(this.options.parameters ?? {}),
    };
    if (this.options.archiveCommand) {
      parameters.archive_mode = 'on';
      parameters.archive_command = this.options.archiveCommand(info);
    }
    const postgresql: Record<string, unknown> = {
      listen: `127.0.0.1:${this.pgPort}`,
      connect_address: `127.0.0.1:${this.pgPort}`,
      data_dir: this.pgdata,
      bin_dir: pgBinDir(),
      pgpass: join(this.dir, 'pgpass'),
      // Trust on loopback only: the tests hold no passwords, so none can leak.
      authentication: { superuser: { username: 'postgres' }, replication: { username: 'postgres' } },
      pg_hba: ['local all all trust', 'local replication all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust'],
      parameters,
      use_pg_rewind: true,
      create_replica_methods: ['basebackup'],
      basebackup: [{ checkpoint: 'fast' }],
      ...(this.options.restoreCommand ? { recovery_conf: { restore_command: this.options.restoreCommand(info) } } : {}),
      ...(this.options.postgresql ? this.options.postgresql(info) : {}),
    };
    return {
      scope: this.scope,
      namespace: '/service/',
      name: this.name,
      log: { level: 'INFO', format: '%(asctime)s %(levelname)s: %(message)s' },
      restapi: { listen: `127.0.0.1:${this.restPort}`, connect_address: `127.0.0.1:${this.restPort}` },
      etcd3: { hosts: this.options.etcd.endpoints.map((e) => e.replace(/^https?:\/\//, '')), protocol: 'http' },
      bootstrap: {
        dcs: {
          // Short timings so that a failover takes seconds: loop_wait + 2 * retry_timeout <= ttl, as Patroni asks.
          ttl: 10,
          loop_wait: 2,
          retry_timeout: 4,
          maximum_lag_on_failover: 16 * 1024 * 1024,
          postgresql: { use_pg_rewind: true, use_slots: true },
        },
        initdb: [{ encoding: 'UTF8' }, { locale: 'C' }, 'data-checksums'],
        ...(this.options.bootstrap ?? {}),
      },
      postgresql,
      tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
    };
  }

  pid(): number | undefined {
    const pid = this.child?.pid;
    return pid !== undefined && this.exited === undefined && isProcessAlive(pid) ? pid : undefined;
  }

  postmasterPid(): number | undefined {
    let pid: number | undefined;
    try {
      pid = Number(readFileSync(join(this.pgdata, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
    } catch {
      pid = undefined;
    }
    if (pid !== undefined && Number.isInteger(pid) && pid > 0 && isProcessAlive(pid) && isPostgres(pid)) {
      this.lastPostmaster = pid;
      return pid;
    }
    if (this.lastPostmaster !== undefined && isProcessAlive(this.lastPostmaster) && isPostgres(this.lastPostmaster)) return this.lastPostmaster;
    return undefined;
  }

  isRunning(): boolean {
    return this.pid() !== undefined;
  }

  /** Throws with the log when Patroni died on its own (a bad config, a crash), instead of letting a wait time out. */
  checkAlive(): void {
    if (this.child !== undefined && this.exited !== undefined) {
      throw new Error(`Patroni member ${this.name} ${this.exited}; its log ends with:\n${this.logTail(30)}`);
    }
  }

  launch(): void {
    if (this.pid() !== undefined) throw new Error(`Patroni member ${this.name} is already running`);
    const user = serviceUser();
    const log = openSync(this.logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(patroniBinary(), [this.configFile], {
        cwd: this.dir,
        // Nothing of the test process's environment (PGHOST, AWS_*, PATRONI_*) reaches Patroni by accident.
        env: { PATH: testPath(), HOME: this.home, LANG: 'C.UTF-8', USER: user.name, LOGNAME: user.name, ...(this.options.env ?? {}) },
        stdio: ['ignore', log, log],
        ...(user.switchUser ? { uid: user.uid, gid: user.gid } : {}),
      });
    } finally {
      closeSync(log);
    }
    this.child = proc;
    this.exited = undefined;
    proc.once('exit', (code, signal) => {
      this.exited = `exited with ${signal ?? `code ${code}`}`;
    });
    proc.once('error', (err) => {
      this.exited = `could not start: ${err.message}`;
    });
  }

  async start(): Promise<void> {
    this.launch();
  }

  async kill(): Promise<void> {
    const pids = this.freezeAndCollect();
    for (const pid of pids) killQuietly(pid, 'SIGKILL');
    const deadline = Date.now() + 15_000;
    while (pids.some(isProcessAlive)) {
      if (Date.now() > deadline) throw new Error(`Patroni member ${this.name}: processes ${pids.filter(isProcessAlive).join(', ')} survived SIGKILL`);
      await sleep(50);
    }
    await this.waitExited(5_000);
    // Dead on purpose: checkAlive() must not report it.
    this.child = undefined;
  }

  /** From process.on('exit'): only synchronous work. */
  killSync(): void {
    for (const pid of this.freezeAndCollect()) killQuietly(pid, 'SIGKILL');
  }

  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid !== undefined) {
      killQuietly(pid, 'SIGTERM');
      // Patroni stops PostgreSQL (fast shutdown, a checkpoint) before it exits.
      await this.waitExited(60_000);
    }
    if (this.pid() !== undefined || this.postmasterPid() !== undefined) await this.kill();
    this.child = undefined;
  }

  logTail(lines = 40): string {
    const tail = (file: string): string => {
      try {
        return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '(no log)';
      }
    };
    return `[patroni ${this.logFile}]\n${tail(this.logFile)}\n[postgresql]\n${tail(join(this.pgLogDir, 'postgresql.log'))}`;
  }

  /**
   * Patroni, everything under it (pg_basebackup, pg_rewind, a callback) and the postmaster with its backends. Each
   * parent is stopped first so that it cannot start a new child between the scan and the kill.
   */
  private freezeAndCollect(): number[] {
    const roots = [this.pid(), this.postmasterPid()].filter((p): p is number => p !== undefined);
    const all = new Set<number>();
    for (const root of roots) {
      killQuietly(root, 'SIGSTOP');
      all.add(root);
    }
    for (const root of roots) for (const pid of descendantPids(root)) all.add(pid);
    return [...all];
  }

  private async waitExited(timeoutMs: number): Promise<void> {
    const child = this.child;
    if (child === undefined || this.exited !== undefined) return;
    await Promise.race([new Promise<void>((resolve) => child.once('exit', () => resolve())), sleep(timeoutMs)]);
  }
}

function isPostgres(pid: number): boolean {
  try {
    return /\/postgres$/.test(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return false;
  }
}

/** For diagnostics in a failing test: which processes run on a data directory's behalf. */
export function postgresProcessesOf(pgdata: string): number[] {
  if (!existsSync(pgdata)) return [];
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      try {
        return isPostgres(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgdata);
      } catch {
        return false;
      }
    });
}
