import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
import pg from 'pg';
import { registerCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { pgBin, testPath } from './preflight.js';
import { chownToServiceUser, keepTemp, serviceUser } from './temp.js';

/**
 * Real PostgreSQL 15 servers for the integration tests: each in its own temp directory, on 127.0.0.1 and a free
 * port, run as the `postgres` OS user, and registered with the cleanup registry so that no postmaster outlives
 * a failed test or the test process.
 */

export type SettingValue = string | number | boolean;
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface PostgresConnection {
  host: string;
  port: number;
  user: string;
  database: string;
}

export interface PostgresServer {
  readonly name: string;
  /** The temp directory holding the socket directory, the log and (for startPostgres) the data directory. */
  readonly dir: string;
  readonly pgdata: string;
  readonly port: number;
  readonly host: '127.0.0.1';
  readonly socketDir: string;
  readonly logFile: string;
  readonly connection: PostgresConnection;
  /** The libpq variables that point a client (pgdr, psql, pg_basebackup) at this server. */
  libpqEnv(): { PGHOST: string; PGPORT: string; PGUSER: string };
  /** Runs one statement on a fresh connection and returns its rows. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs SQL through psql (unaligned, tuples only, stops at the first error) and returns its output. */
  psql(sql: string): Promise<string>;
  /** The postmaster's pid while it runs. */
  pid(): number | undefined;
  isRunning(): boolean;
  /** Stops the server and removes the temp directory (and, for startPostgres, the data directory). */
  stop(mode?: StopMode): Promise<void>;
  /** Stops the server but keeps every file, for start() later or to copy the data directory. */
  halt(mode?: StopMode): Promise<void>;
  /** Starts the server again after halt() or kill(), on the same port. */
  start(): Promise<void>;
  /** Stops (if running) and starts again; after kill() this is crash recovery. */
  restart(): Promise<void>;
  /**
   * SIGKILLs the postmaster and every process under it, as a machine crash would, and waits until they are gone.
   * The files stay; restart() then runs crash recovery.
   */
  kill(): Promise<void>;
  /** The last lines of the server log. */
  logTail(lines?: number): string;
}

export interface StartPostgresOptions {
  name?: string;
  /** postgresql.conf settings; they win over the harness defaults. */
  settings?: Record<string, SettingValue>;
  /** Sets archive_mode=on and this archive_command. */
  archiveCommand?: string;
  restoreCommand?: string;
  /** Extra initdb arguments, after the harness's own (so they can override locale or encoding). */
  initdbArgs?: string[];
  /**
   * Environment of the postmaster, and so of archive_command and restore_command (credentials go here, never on
   * a command line). Added to a minimal PATH, HOME (a directory of this server's), LANG=C.UTF-8.
   */
  env?: Record<string, string>;
  /** pg_ctl's wait for the server to accept connections. Default 60. */
  startTimeoutSeconds?: number;
}

export interface StartFromDirOptions extends Omit<StartPostgresOptions, 'initdbArgs'> {
  /** Default: a free port. */
  port?: number;
  /**
   * Put `trust` lines for local and 127.0.0.1 connections first in pg_hba.conf, for a data directory whose
   * pg_hba.conf (from Patroni, say) would ask the harness for a password. Off by default: it edits the copy.
   */
  trustLocalConnections?: boolean;
}

const harnessConfFile = 'pgdr-harness.conf';
const includeLine = `include '${harnessConfFile}'`;

/** Starts a new PostgreSQL 15 cluster (initdb with data checksums, trust auth for the `postgres` superuser). */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const name = options.name ?? 'pg';
  const dir = createServerDir(name);
  const pgdata = join(dir, 'pgdata');
  const server = new LocalPostgres(name, dir, pgdata, 0, options, true);
  try {
    const initdb = await runAsPostgres(
      pgBin('initdb'),
      [
        ...['--data-checksums', '-U', 'postgres', '--auth=trust', '--no-locale', '--encoding=UTF8', '--no-sync'],
        ...['-D', pgdata, ...(options.initdbArgs ?? [])],
      ],
      { env: server.environment(), extendEnv: false, cwd: dir, reject: false, timeout: 120_000 },
    );
    if (initdb.exitCode !== 0) {
      throw new Error(`initdb for PostgreSQL "${name}" failed (exit ${initdb.exitCode}):\n${initdb.stderr || initdb.stdout}`);
    }
    appendFileLine(
      join(pgdata, 'postgresql.conf'),
      `\n# The pgdr test harness keeps its settings (port, sockets, WAL, logging) in ${harnessConfFile}.\n${includeLine}\n`,
    );
    await server.startOnFreePort();
    return server;
  } catch (err) {
    await server.discard();
    throw err;
  }
}

/**
 * Starts PostgreSQL on an existing data directory (a restore, a pg_basebackup, a copy): gives it to the postgres
 * user with mode 0700, points port, sockets and logging at a new temp directory, and waits until it accepts
 * connections. The data directory stays the caller's: stop() removes only the temp directory.
 */
export async function startPostgresFromDir(pgdata: string, options: StartFromDirOptions = {}): Promise<PostgresServer> {
  const name = options.name ?? 'restored';
  const dir = createServerDir(name);
  const server = new LocalPostgres(name, dir, pgdata, options.port ?? 0, options, false);
  try {
    if (!existsSync(join(pgdata, 'PG_VERSION'))) throw new Error(`${pgdata} is not a PostgreSQL data directory (no PG_VERSION)`);
    removeStalePidFile(pgdata);
    chownToServiceUser(pgdata, { recursive: true });
    chmodSync(pgdata, 0o700);
    const conf = join(pgdata, 'postgresql.conf');
    if (!existsSync(conf)) writeFileSync(conf, '');
    ensureIncludeLast(conf);
    if (options.trustLocalConnections) trustLocalConnections(join(pgdata, 'pg_hba.conf'));
    chownToServiceUser(conf);
    if (options.port !== undefined) await server.start();
    else await server.startOnFreePort();
    return server;
  } catch (err) {
    await server.discard();
    throw err;
  }
}

/**
 * Runs a program as the service user (`runuser -u postgres` when the tests run as root). The environment is built
 * here, not inherited through runuser: HOME defaults to the service user's home, and options.env wins.
 */
export function runAsPostgres<O extends ExecaOptions = ExecaOptions>(
  file: string,
  args: readonly string[],
  options?: O,
): ResultPromise<O> {
  const user = serviceUser();
  const base: Record<string, string | undefined> = options?.extendEnv === false ? {} : { ...process.env };
  const env: Record<string, string | undefined> = {
    ...base,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    ...(options?.env ?? {}),
  };
  const merged = { ...options, env, extendEnv: false } as O;
  if (!user.switchUser) return execa(file, args, merged) as unknown as ResultPromise<O>;
  // -m keeps the environment given here instead of runuser's own HOME/SHELL/USER.
  return execa(runuserPath(), ['-m', '-u', user.name, '--', file, ...args], merged) as unknown as ResultPromise<O>;
}

let cachedRunuser: string | undefined;
function runuserPath(): string {
  cachedRunuser ??= ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p)) ?? 'runuser';
  return cachedRunuser;
}

/** True while the process exists and is not a zombie waiting to be reaped. */
export function isProcessAlive(pid: number): boolean {
  return processState(pid) === 'alive';
}

/** Every process below `pid` (children, their children, ...), from one scan of /proc. */
export function descendantPids(pid: number): number[] {
  const childrenOf = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat === undefined) continue;
    const list = childrenOf.get(stat.ppid) ?? [];
    list.push(Number(entry));
    childrenOf.set(stat.ppid, list);
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift() as number;
    for (const child of childrenOf.get(next) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

class LocalPostgres implements PostgresServer {
  readonly host = '127.0.0.1' as const;
  readonly socketDir: string;
  readonly logFile: string;
  private currentPort: number;
  private lastPid: number | undefined;
  private unregister: (() => void) | undefined;
  private removed = false;
  /** Set by the first start(): until then a postmaster.pid in pgdata belongs to someone else and is not ours to kill. */
  private startAttempted = false;

  constructor(
    readonly name: string,
    readonly dir: string,
    readonly pgdata: string,
    port: number,
    private readonly options: StartPostgresOptions & StartFromDirOptions,
    /** Whether the data directory lives in `dir` (and goes with it) or belongs to the caller. */
    private readonly ownsData: boolean,
  ) {
    this.currentPort = port;
    this.socketDir = join(dir, 'sock');
    this.logFile = join(dir, 'postgresql.log');
    mkdirSync(this.socketDir, { mode: 0o700 });
    mkdirSync(join(dir, 'home'), { mode: 0o700 });
    chownToServiceUser(this.socketDir);
    chownToServiceUser(join(dir, 'home'));
    this.unregister = registerCleanup(
      `PostgreSQL ${name} (${dir})`,
      () => this.emergencyStop(),
      () => this.emergencyStopSync(),
    );
  }

  get port(): number {
    return this.currentPort;
  }

  get connection(): PostgresConnection {
    return { host: this.host, port: this.currentPort, user: 'postgres', database: 'postgres' };
  }

  libpqEnv(): { PGHOST: string; PGPORT: string; PGUSER: string } {
    return { PGHOST: this.host, PGPORT: String(this.currentPort), PGUSER: 'postgres' };
  }

  environment(): Record<string, string> {
    return {
      PATH: testPath(),
      HOME: join(this.dir, 'home'),
      LANG: 'C.UTF-8',
      ...(this.options.env ?? {}),
    };
  }

  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ ...this.connection, connectionTimeoutMillis: 15_000 });
    await client.connect();
    try {
      const result = await client.query(sql, params);
      return result.rows as T[];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async psql(sql: string): Promise<string> {
    const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', '-'];
    args.push('-h', this.socketDir, '-p', String(this.currentPort), '-U', 'postgres', '-d', 'postgres');
    const result = await runAsPostgres(pgBin('psql'), args, {
      input: sql,
      env: this.environment(),
      extendEnv: false,
      cwd: this.dir,
      reject: false,
      timeout: 120_000,
    });
    if (result.exitCode !== 0) throw new Error(`psql on PostgreSQL "${this.name}" failed (exit ${result.exitCode}): ${result.stderr}`);
    return result.stdout;
  }

  pid(): number | undefined {
    if (!this.startAttempted) return undefined;
    const pid = readPostmasterPid(this.pgdata);
    return pid !== undefined && isProcessAlive(pid) ? pid : undefined;
  }

  isRunning(): boolean {
    return this.pid() !== undefined;
  }

  async startOnFreePort(): Promise<void> {
    // freePort() only says the port was free a moment ago: another server may take it first, so retry.
    for (let attempt = 1; ; attempt++) {
      this.currentPort = await freePort();
      try {
        await this.start();
        return;
      } catch (err) {
        const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(this.logTail(40));
        if (attempt >= 3 || !portTaken) throw err;
      }
    }
  }

  async start(): Promise<void> {
    this.writeHarnessConf();
    forgetZombiePostmaster(this.pgdata, this.socketDir);
    const timeout = this.options.startTimeoutSeconds ?? 60;
    // From here on a postmaster on this data directory is ours to stop, even if pg_ctl gives up waiting for it.
    this.startAttempted = true;
    const result = await this.pgCtl(['-w', '-t', String(timeout), '-l', this.logFile, 'start'], (timeout + 30) * 1000);
    this.lastPid = readPostmasterPid(this.pgdata);
    if (result.exitCode !== 0 || this.pid() === undefined) {
      const output = (result.stderr || result.stdout).trim();
      const hint = /Permission denied/.test(output)
        ? `\nhint: the ${serviceUser().name} OS user must reach ${this.pgdata}: every parent directory needs o+x or to be theirs ` +
          `(makeTempDir(label, { owner: 'service' }) makes such a parent)`
        : '';
      throw new Error(
        `PostgreSQL "${this.name}" did not start on port ${this.currentPort} (pg_ctl exit ${result.exitCode}): ${output}${hint}\n` +
          `--- last lines of ${this.logFile} ---\n${this.logTail(40)}`,
      );
    }
  }

  async halt(mode: StopMode = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    const result = await this.pgCtl(['-w', '-t', '120', '-m', mode, 'stop'], 150_000);
    if (result.exitCode !== 0 && this.isRunning()) {
      throw new Error(
        `PostgreSQL "${this.name}" did not stop (pg_ctl exit ${result.exitCode}): ${result.stderr}\n${this.logTail(20)}`,
      );
    }
  }

  async restart(): Promise<void> {
    await this.halt('fast');
    await this.start();
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (this.removed) return;
    try {
      await this.halt(mode);
    } catch (err) {
      await this.kill();
      throw err;
    } finally {
      await this.discard();
    }
  }

  async kill(): Promise<void> {
    const pids = this.freezeAndCollect();
    for (const pid of pids) signal(pid, 'SIGKILL');
    const deadline = Date.now() + 15_000;
    while (pids.some(isProcessAlive)) {
      if (Date.now() > deadline) {
        throw new Error(`PostgreSQL "${this.name}": processes ${pids.filter(isProcessAlive).join(', ')} survived SIGKILL`);
      }
      await sleep(50);
    }
    // Give init a moment to reap them, so that ps and a restart see what a crash leaves; start() copes if not.
    const reaped = Date.now() + 2_000;
    while (Date.now() < reaped && pids.some((pid) => processState(pid) !== 'gone')) await sleep(50);
  }

  logTail(lines = 50): string {
    let text: string;
    try {
      text = readTail(this.logFile, 256 * 1024);
    } catch {
      return `(no log at ${this.logFile})`;
    }
    const all = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
    return all.slice(-lines).join('\n');
  }

  /** Unregisters and removes the temp directory; the server must already be down. */
  async discard(): Promise<void> {
    if (this.removed) return;
    if (this.isRunning()) await this.kill().catch(() => undefined);
    this.removed = true;
    this.unregister?.();
    this.unregister = undefined;
    if (keepTemp()) {
      process.stderr.write(`PGDR_KEEP_TEMP: kept ${this.dir}\n`);
      return;
    }
    await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }

  private async emergencyStop(): Promise<void> {
    if (this.isRunning()) {
      await this.pgCtl(['-w', '-t', '30', '-m', 'immediate', 'stop'], 40_000).catch(() => undefined);
      if (this.isRunning()) await this.kill().catch(() => undefined);
    }
    await this.discard();
  }

  /** From process.on('exit'): nothing can be awaited or spawned, so SIGKILL the tree and remove the files. */
  private emergencyStopSync(): void {
    for (const pid of this.freezeAndCollect()) signal(pid, 'SIGKILL');
    if (!keepTemp()) rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * The postmaster and every process under it. The postmaster is stopped first so that it cannot fork a new
   * child between the scan and the kill.
   */
  private freezeAndCollect(): number[] {
    const pid = this.postmasterPidForCleanup();
    if (pid === undefined) return [];
    signal(pid, 'SIGSTOP');
    return [pid, ...descendantPids(pid)];
  }

  /**
   * postmaster.pid when it is readable; otherwise the pid seen at the last start, if that process is still a
   * postgres binary (the caller's data directory may already be gone at exit, and a pid can be reused).
   */
  private postmasterPidForCleanup(): number | undefined {
    if (!this.startAttempted) return undefined;
    const fromFile = readPostmasterPid(this.pgdata);
    if (fromFile !== undefined && isProcessAlive(fromFile) && isPostgresProcess(fromFile)) return fromFile;
    if (this.lastPid !== undefined && isProcessAlive(this.lastPid) && isPostgresProcess(this.lastPid)) return this.lastPid;
    return undefined;
  }

  private writeHarnessConf(): void {
    const settings: Record<string, SettingValue> = {
      listen_addresses: '127.0.0.1',
      port: this.currentPort,
      unix_socket_directories: this.socketDir,
      wal_level: 'replica',
      max_wal_senders: 10,
      max_replication_slots: 10,
      // Everything the server says goes to the file pg_ctl -l names, even if a copied config turned a collector on.
      logging_collector: false,
      log_destination: 'stderr',
      log_line_prefix: '%m [%p] %q%u@%d ',
    };
    if (!this.ownsData) {
      // A data directory from elsewhere (Patroni writes these) may name the original node's paths.
      settings.data_directory = this.pgdata;
      if (existsSync(join(this.pgdata, 'pg_hba.conf'))) settings.hba_file = join(this.pgdata, 'pg_hba.conf');
      if (existsSync(join(this.pgdata, 'pg_ident.conf'))) settings.ident_file = join(this.pgdata, 'pg_ident.conf');
    }
    if (this.options.archiveCommand !== undefined) {
      settings.archive_mode = 'on';
      settings.archive_command = this.options.archiveCommand;
    }
    if (this.options.restoreCommand !== undefined) settings.restore_command = this.options.restoreCommand;
    Object.assign(settings, this.options.settings ?? {});
    const lines = ['# Written by the pgdr test harness (test/harness/postgres.ts) at every start.'];
    for (const [key, value] of Object.entries(settings)) lines.push(`${settingName(key)} = ${settingValue(value)}`);
    const file = join(this.pgdata, harnessConfFile);
    writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
    chownToServiceUser(file);
  }

  private pgCtl(args: string[], timeoutMs: number) {
    return runAsPostgres(pgBin('pg_ctl'), ['-D', this.pgdata, ...args], {
      env: this.environment(),
      extendEnv: false,
      cwd: this.dir,
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
    });
  }
}

function createServerDir(name: string): string {
  // Short names: the socket path (dir/sock/.s.PGSQL.NNNNN) must stay under the kernel's 107 bytes.
  const label = name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 24);
  const dir = mkdtempSync(join(tmpdir(), `pgdr-pg-${label}-`));
  chmodSync(dir, 0o700);
  chownToServiceUser(dir);
  return dir;
}

function settingName(key: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(key)) throw new Error(`not a PostgreSQL setting name: ${JSON.stringify(key)}`);
  return key;
}

/** postgresql.conf syntax: in quoted values the parser also reads backslash escapes, so both must be escaped. */
function settingValue(value: SettingValue): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function appendFileLine(file: string, text: string): void {
  writeFileSync(file, text, { flag: 'a' });
}

/** Our include must come last in postgresql.conf so that its port and paths win over the copied ones. */
function ensureIncludeLast(conf: string): void {
  const lines = readFileSync(conf, 'utf8').split('\n');
  const kept = lines.filter((line) => line.trim() !== includeLine);
  while (kept.length > 0 && kept[kept.length - 1]?.trim() === '') kept.pop();
  writeFileSync(conf, `${kept.join('\n')}\n${includeLine}\n`);
}

function trustLocalConnections(hba: string): void {
  const existing = existsSync(hba) ? readFileSync(hba, 'utf8') : '';
  const trust = [
    '# Added by the pgdr test harness for its own connections.',
    'local all all trust',
    'host all all 127.0.0.1/32 trust',
    '',
  ].join('\n');
  writeFileSync(hba, trust + existing);
  chownToServiceUser(hba);
}

/**
 * A postmaster.pid copied along with a data directory names a process that is not running on this copy. Left in
 * place it may make PostgreSQL refuse to start (if that pid is alive), so it goes, unless a postmaster really
 * runs on this very directory.
 */
function removeStalePidFile(pgdata: string): void {
  const pid = readPostmasterPid(pgdata);
  if (pid === undefined) return;
  if (isProcessAlive(pid) && processCwd(pid) === safeRealpath(pgdata)) {
    throw new Error(`a PostgreSQL server (pid ${pid}) is already running on ${pgdata}`);
  }
  rmSync(join(pgdata, 'postmaster.pid'), { force: true });
}

/** The end of a file, without reading all of a log that a chatty test made large. */
function readTail(file: string, bytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const { size } = fstatSync(fd);
    const start = Math.max(0, size - bytes);
    const buffer = Buffer.alloc(size - start);
    readSync(fd, buffer, 0, buffer.length, start);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * After kill() the dead postmaster may linger as a zombie until init reaps it, and PostgreSQL takes a zombie's
 * pid for a live postmaster ("lock file already exists"), both in postmaster.pid and in the socket's lock file.
 * A zombie is dead: its lock files can go.
 */
function forgetZombiePostmaster(pgdata: string, socketDir: string): void {
  const pid = readPostmasterPid(pgdata);
  if (pid === undefined || processState(pid) !== 'zombie') return;
  rmSync(join(pgdata, 'postmaster.pid'), { force: true });
  for (const entry of readdirSync(socketDir)) {
    const match = /^(\.s\.PGSQL\.\d+)\.lock$/.exec(entry);
    if (match === null || readPidFile(join(socketDir, entry)) !== pid) continue;
    rmSync(join(socketDir, entry), { force: true });
    rmSync(join(socketDir, match[1] as string), { force: true });
  }
}

function readPostmasterPid(pgdata: string): number | undefined {
  return readPidFile(join(pgdata, 'postmaster.pid'));
}

/** The pid on the first line of a PostgreSQL lock file. */
function readPidFile(file: string): number | undefined {
  try {
    const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
    const pid = Number(first.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function readStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name sits in parentheses and may itself contain spaces or parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

function processState(pid: number): 'alive' | 'zombie' | 'gone' {
  const stat = readStat(pid);
  if (stat === undefined) return 'gone';
  return stat.state === 'Z' || stat.state === 'X' ? 'zombie' : 'alive';
}

function isPostgresProcess(pid: number): boolean {
  try {
    return /\/postgres$/.test(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return false;
  }
}

function processCwd(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
