import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { pgdrCommandLine, pgdrEnvironment, runPgdr, runPgdrOk } from '../harness/cli.js';
import {
  descendantPids,
  isProcessAlive,
  type PostgresServer,
  runAsPostgres,
  startPostgres,
  startPostgresFromDir,
} from '../harness/postgres.js';
import { pgBin, pgBinDir, pgdrBin, repoRoot } from '../harness/preflight.js';
import { makeTempDir, serviceUser } from '../harness/temp.js';

afterAll(stopAll);

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Closes the current WAL segment (so it gets archived) and returns its file name. */
async function switchWal(server: PostgresServer): Promise<string> {
  const [row] = await server.query<{ walfile: string }>('select pg_walfile_name(pg_switch_wal()) as walfile');
  if (row === undefined) throw new Error('pg_switch_wal returned no row');
  return row.walfile;
}

describe('startPostgres', () => {
  it('starts PostgreSQL 15 on 127.0.0.1 with data checksums, as the service user', async () => {
    const server = await startPostgres({ name: 'basic' });
    const [row] = await server.query<{ version: string; checksums: string; addr: string; port: number; user: string }>(
      `select version() as version, current_setting('data_checksums') as checksums,
              host(inet_server_addr()) as addr, inet_server_port() as port, current_user as user`,
    );
    expect(row?.version).toMatch(/^PostgreSQL 15\./);
    expect(row?.checksums).toBe('on');
    expect(row?.addr).toBe('127.0.0.1');
    expect(row?.port).toBe(server.port);
    expect(row?.user).toBe('postgres');
    expect(await server.query('select $1::int + 1 as n', [41])).toEqual([{ n: 42 }]);
    expect((await server.psql('select 40 + 2;')).trim()).toBe('42');
    expect(server.libpqEnv()).toEqual({ PGHOST: '127.0.0.1', PGPORT: String(server.port), PGUSER: 'postgres' });

    const [settings] = await server.query<{ wal_level: string; socket: string }>(
      `select current_setting('wal_level') as wal_level, current_setting('unix_socket_directories') as socket`,
    );
    expect(settings).toEqual({ wal_level: 'replica', socket: server.socketDir });
    expect(existsSync(join(server.socketDir, `.s.PGSQL.${server.port}`))).toBe(true);
    expect(statSync(join(server.pgdata, 'PG_VERSION')).uid).toBe(serviceUser().uid);
    expect(server.logTail(200)).toMatch(/database system is ready to accept connections/);

    await server.stop();
    expect(existsSync(server.dir)).toBe(false);
  });

  it('writes settings and archive_command verbatim, and passes env to archive_command', async () => {
    const archive = makeTempDir('archive', { owner: 'service' });
    // Quotes, backslashes and % in values must reach PostgreSQL unchanged.
    const appName = `it's a \\ test %`;
    const archiveCommand = `test "$ARCHIVE_TOKEN" = 'from-env' && cp %p ${archive}/%f`;
    const server = await startPostgres({
      name: 'archiving',
      archiveCommand,
      settings: { application_name: appName, archive_timeout: '60s', work_mem: 8192, hot_standby: true },
      env: { ARCHIVE_TOKEN: 'from-env' },
    });
    const [row] = await server.query<Record<string, string>>(
      `select current_setting('application_name') as app, current_setting('archive_command') as cmd,
              current_setting('archive_mode') as mode, current_setting('work_mem') as work_mem`,
    );
    expect(row).toEqual({ app: appName, cmd: archiveCommand, mode: 'on', work_mem: '8MB' });

    await server.query('create table t as select 1 as x');
    const walfile = await switchWal(server);
    await waitFor('the segment in the archive', async () => (existsSync(join(archive, walfile)) ? true : undefined));
    const [stats] = await server.query<{ failed_count: string }>('select failed_count::text from pg_stat_archiver');
    expect(stats?.failed_count).toBe('0');
    await server.stop();
  });

  it('kill() SIGKILLs the postmaster and all its children; restart() recovers the committed data', async () => {
    const server = await startPostgres({ name: 'crash' });
    await server.query('create table t (x int); insert into t select generate_series(1, 1000)');
    const postmaster = server.pid();
    expect(postmaster).toBeDefined();
    const children = descendantPids(postmaster as number);
    expect(children.length).toBeGreaterThan(2); // checkpointer, walwriter, autovacuum launcher, ...

    await server.kill();
    for (const pid of [postmaster as number, ...children]) expect(isProcessAlive(pid)).toBe(false);
    expect(server.isRunning()).toBe(false);
    expect(existsSync(join(server.pgdata, 'postmaster.pid'))).toBe(true);

    await server.restart();
    expect(server.logTail(50)).toMatch(/database system was interrupted|was not properly shut down/);
    expect(await server.query('select count(*)::int as n from t')).toEqual([{ n: 1000 }]);
    await server.stop();
  });

  it('the cleanup registry stops a server that a test left running', async () => {
    const server = await startPostgres({ name: 'forgotten' });
    const pids = [server.pid() as number, ...descendantPids(server.pid() as number)];
    expect(pids.every(isProcessAlive)).toBe(true);

    await stopAll();
    for (const pid of pids) expect(isProcessAlive(pid)).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
  });

  it('a test process that dies leaves no PostgreSQL process or directory behind', async () => {
    const scratch = makeTempDir('exit-hook');
    const script = join(scratch, 'dies.mts');
    const harness = pathToFileURL(join(repoRoot, 'test', 'harness', 'postgres.ts')).href;
    writeFileSync(
      script,
      [
        `import { descendantPids, startPostgres } from ${JSON.stringify(harness)};`,
        `const server = await startPostgres({ name: 'orphan' });`,
        `const pid = server.pid();`,
        `process.stdout.write(JSON.stringify({ dir: server.dir, pids: [pid, ...descendantPids(pid)] }) + '\\n');`,
        // An uncaught error, as a crashing test worker would have: only process.on('exit') runs.
        `throw new Error('test worker crashed');`,
      ].join('\n'),
    );
    const child = await execa(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, reject: false, timeout: 120_000 });
    expect(child.exitCode, child.stderr).toBe(1);
    expect(child.stderr).toContain('test worker crashed');
    const { dir, pids } = JSON.parse(child.stdout) as { dir: string; pids: number[] };
    expect(pids.length).toBeGreaterThan(3);
    for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('reports a failed start with the log tail', async () => {
    await expect(startPostgres({ name: 'broken', settings: { shared_buffers: 'not-a-size' } })).rejects.toThrow(
      /did not start[\s\S]*shared_buffers/,
    );
  });
});

describe('startPostgresFromDir', () => {
  it('starts a pg_basebackup copy (made by root) on its own port and socket directory', async () => {
    const source = await startPostgres({ name: 'source' });
    await source.query('create table seeded as select generate_series(1, 100) as n');
    // As root, so the copy belongs to root and startPostgresFromDir has to hand it to postgres.
    const copy = join(makeTempDir('copy', { owner: 'service' }), 'pgdata');
    const connection = ['-h', source.host, '-p', String(source.port), '-U', 'postgres'];
    const backup = await execa(pgBin('pg_basebackup'), ['-D', copy, '-X', 'stream', '-c', 'fast', ...connection], {
      reject: false,
      timeout: 120_000,
    });
    expect(backup.exitCode, backup.stderr).toBe(0);

    const restored = await startPostgresFromDir(copy, { name: 'copy' });
    expect(restored.port).not.toBe(source.port);
    expect(restored.socketDir).not.toBe(source.socketDir);
    const [row] = await restored.query<{ n: number; datadir: string; checksums: string }>(
      `select (select count(*)::int from seeded) as n, current_setting('data_directory') as datadir,
              current_setting('data_checksums') as checksums`,
    );
    expect(row).toEqual({ n: 100, datadir: copy, checksums: 'on' });
    expect(statSync(copy).mode & 0o777).toBe(0o700);
    expect(statSync(join(copy, 'base')).uid).toBe(serviceUser().uid);

    await restored.stop();
    // The data directory is the caller's; only the server's own temp directory goes.
    expect(existsSync(join(copy, 'PG_VERSION'))).toBe(true);
    expect(existsSync(restored.dir)).toBe(false);
    await source.stop();
  });

  it('says what to do when the service user cannot reach the data directory', async () => {
    const pgdata = join(makeTempDir('private'), 'pgdata'); // a root-owned 0700 parent
    mkdirSync(pgdata);
    writeFileSync(join(pgdata, 'PG_VERSION'), '15\n');
    await expect(startPostgresFromDir(pgdata)).rejects.toThrow(/must reach[\s\S]*owner: 'service'/);
  });

  it('refuses a directory that a running server is using', async () => {
    const server = await startPostgres({ name: 'busy' });
    await expect(startPostgresFromDir(server.pgdata)).rejects.toThrow(/already running/);
    expect(await server.query('select 1 as one')).toEqual([{ one: 1 }]);
    await server.stop();
  });
});

describe('runAsPostgres', () => {
  it('runs as the service user with the environment it is given', async () => {
    const result = await runAsPostgres('sh', ['-c', 'echo "$(id -un) $HOME $ONLY_THIS"'], {
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', ONLY_THIS: 'yes' },
      extendEnv: false,
    });
    expect(result.stdout).toBe(`${serviceUser().name} /nonexistent yes`);
  });
});

describe('runPgdr', () => {
  it('returns the exit code and output instead of throwing', async () => {
    const help = await runPgdrOk(['--help']);
    expect(help.stdout).toMatch(/Usage: pgdr/);
    const wrong = await runPgdr(['no-such-command']);
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toMatch(/no-such-command/);
    await expect(runPgdrOk(['no-such-command'])).rejects.toThrow(/exited 2/);
    expect(() => wrong.json()).toThrow(/did not print JSON/);
  });

  it('gives pgdr a minimal environment of its own', () => {
    const env = pgdrEnvironment({ PGDR_REPO: 'file:///x' });
    expect(Object.keys(env).sort()).toEqual(['HOME', 'LANG', 'LOGNAME', 'PATH', 'PGDR_REPO', 'USER']);
    expect(env.HOME).not.toBe(process.env.HOME);
    expect(statSync(env.HOME as string).uid).toBe(serviceUser().uid);
    expect(env.PATH?.split(':')[0]).toBe(pgBinDir());
  });
});

describe('pgdrCommandLine', () => {
  it('quotes for the shell, keeps %p bare and doubles other % signs', () => {
    const line = pgdrCommandLine(['wal', 'push', '%p', '--repo', "file:///tmp/a b/it's", '--cluster', '50%']);
    expect(line).toBe(`${process.execPath} ${pgdrBin} wal push %p --repo 'file:///tmp/a b/it'\\''s' --cluster '50%%'`);
  });

  it('works as a real archive_command', async () => {
    const repoDir = makeTempDir('cmdline repo', { owner: 'service' });
    const repo = `file://${repoDir}`;
    const archiveCommand = pgdrCommandLine(['wal', 'push', '%p', '--repo', repo]);
    const server = await startPostgres({ name: 'pgdr-archiving', archiveCommand });
    await server.query('create table t as select 1 as x');
    const walfile = await switchWal(server);
    const archived = await waitFor('pg_stat_archiver to report the segment', async () => {
      const [stats] = await server.query<{ last: string | null; failed: string }>(
        'select last_archived_wal as last, failed_count::text as failed from pg_stat_archiver',
      );
      if (stats?.failed !== '0') throw new Error(`archive_command failed; log:\n${server.logTail(30)}`);
      return stats.last === walfile ? stats : undefined;
    }, 60_000);
    expect(archived.last).toBe(walfile);
    expect(readdirSync(repoDir).length).toBeGreaterThan(0);
    await server.stop();
  });
});
