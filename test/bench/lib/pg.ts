import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../harness/ports.js';
import { onCleanup } from './cleanup.js';
import { asPg, PG_BIN, pgTempDir, treeCpuSeconds } from './proc.js';

export interface ServerOptions {
  label: string;
  /** Extra postgresql.conf lines (name -> value, quoted as needed by the caller). */
  settings?: Record<string, string>;
}

/**
 * One throwaway PostgreSQL 15 for the bench: initdb --data-checksums as postgres in a temp dir, listening on
 * 127.0.0.1 on a free port, stopped (and its directory removed) at cleanup whatever happens.
 */
export class BenchServer {
  private running = false;
  private unregisterStop: (() => Promise<void>) | undefined;

  private constructor(
    readonly root: string,
    readonly pgdata: string,
    readonly sockDir: string,
    readonly port: number,
  ) {}

  static async create(options: ServerOptions): Promise<BenchServer> {
    const root = pgTempDir(options.label);
    const pgdata = join(root, 'pgdata');
    const sockDir = root;
    const port = await freePort();
    await asPg(join(PG_BIN, 'initdb'), [
      '-D', pgdata, '--data-checksums', '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync',
    ]);
    const server = new BenchServer(root, pgdata, sockDir, port);
    server.appendConf({
      port: String(port),
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${sockDir}'`,
      logging_collector: 'off',
      ...options.settings,
    });
    return server;
  }

  /**
   * libpq environment for tools that connect to this server (pgdr, pgbench, psql): the Unix socket, the transport
   * pgBackRest's pg1-socket-path uses too, so both tools talk to the server the same way.
   */
  get env(): Record<string, string> {
    return { PGHOST: this.sockDir, PGPORT: String(this.port), PGUSER: 'postgres' };
  }

  get logFile(): string {
    return join(this.root, 'server.log');
  }

  appendConf(settings: Record<string, string>): void {
    const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`);
    appendFileSync(join(this.pgdata, 'postgresql.conf'), lines.join(''));
  }

  async start(): Promise<void> {
    await asPg(join(PG_BIN, 'pg_ctl'), ['-D', this.pgdata, '-l', this.logFile, '-w', '-t', '300', 'start']);
    this.running = true;
    // Registered after a successful start; the sync variant kills the postmaster if Node exits abruptly.
    this.unregisterStop = onCleanup(`postgres on port ${this.port}`, () => this.stopNow(), () => this.killNow());
  }

  async stop(): Promise<void> {
    if (this.unregisterStop) {
      const unregister = this.unregisterStop;
      this.unregisterStop = undefined;
      await unregister();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private async stopNow(): Promise<void> {
    if (!this.running) return;
    // Archive nothing more: at shutdown the archiver would start one more archive_command, which can outlive the
    // postmaster and write into a repository directory the cleanup is about to remove.
    try {
      await this.setConf({ archive_command: '/bin/true' });
      for (let i = 0; i < 40 && this.readyCount() > 0; i++) await new Promise((r) => setTimeout(r, 250));
    } catch {
      // not reachable: stop it anyway
    }
    try {
      await asPg(join(PG_BIN, 'pg_ctl'), ['-D', this.pgdata, '-m', 'fast', '-w', '-t', '120', 'stop']);
    } catch {
      this.killNow();
    }
    this.running = false;
  }

  private killNow(): void {
    const pidFile = join(this.pgdata, 'postmaster.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    try {
      // SIGQUIT is the immediate shutdown; the children follow their postmaster.
      process.kill(pid, 'SIGQUIT');
    } catch {
      // already gone
    }
    this.running = false;
  }

  async connect(database = 'postgres'): Promise<pg.Client> {
    const client = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres', database });
    await client.connect();
    return client;
  }

  async query<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, database = 'postgres'): Promise<T[]> {
    const client = await this.connect(database);
    try {
      const result = await client.query<T>(sql);
      return result.rows;
    } finally {
      await client.end();
    }
  }

  async scalar(sql: string, database = 'postgres'): Promise<string> {
    const rows = await this.query(sql, database);
    const row = rows[0];
    if (!row) throw new Error(`no row from ${sql}`);
    return String(Object.values(row)[0]);
  }

  /** ALTER SYSTEM + pg_reload_conf(): how the bench switches archive_command between tools. */
  async setConf(settings: Record<string, string>): Promise<void> {
    const client = await this.connect();
    try {
      for (const [name, value] of Object.entries(settings)) {
        await client.query(`ALTER SYSTEM SET ${name} = ${pg.escapeLiteral(value)}`);
      }
      await client.query('SELECT pg_reload_conf()');
    } finally {
      await client.end();
    }
  }

  /** CPU seconds the server's processes (and the commands they ran and waited for) have used so far. */
  cpuSeconds(): number {
    const pid = Number(readFileSync(join(this.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return treeCpuSeconds(pid);
  }

  /** Number of WAL files waiting for the archiver (pg_wal/archive_status/*.ready). */
  readyCount(): number {
    return readyFiles(this.pgdata).length;
  }
}

export function readyFiles(pgdata: string): string[] {
  try {
    return readdirSync(join(pgdata, 'pg_wal', 'archive_status')).filter((f) => f.endsWith('.ready'));
  } catch {
    return [];
  }
}
