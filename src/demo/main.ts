import { appendFileSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, execaSync } from 'execa';
import pg from 'pg';
import { pgBinary } from '../postgres/binaries.js';

/**
 * `npm run demo`: the whole loop on the embedded default, narrated. A throwaway PostgreSQL 15 archives its WAL
 * with `pgdr wal push`; pgdr takes a base backup into the default local repository; rows are written before and
 * after a noted time; `pgdr restore --target-time` rebuilds the server as of that time; the demo checks that
 * exactly the rows committed before the target came back. Everything lives in one temp directory, removed at the end.
 */
const PGDR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgdr');
const asRoot = process.getuid?.() === 0;
const osUser = asRoot ? 'postgres' : userInfo().username;

function step(text: string): void {
  process.stdout.write(`\n==> ${text}\n`);
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Runs a program as the PostgreSQL OS user (PostgreSQL refuses root), with the demo's HOME. */
async function run(file: string, args: string[], env: Record<string, string>, show = true) {
  const command = asRoot ? 'runuser' : file;
  const commandArgs = asRoot ? ['-u', osUser, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), file, ...args] : args;
  if (show) process.stdout.write(`    $ ${[file === process.execPath ? 'pgdr' : file.split('/').pop(), ...args.filter((a) => a !== PGDR)].join(' ')}\n`);
  const result = await execa(command, commandArgs, { env: asRoot ? {} : { ...process.env, ...env }, reject: false, all: true });
  if (result.exitCode !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed (exit ${result.exitCode}):\n${result.all}`);
  }
  return result.stdout as string;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'pgdr-demo-'));
  if (asRoot) chownSync(work, uidOf(osUser), gidOf(osUser));
  const home = join(work, 'home');
  const sockets = join(work, 'sockets');
  const source = join(work, 'source');
  const restored = join(work, 'restored');
  const env: Record<string, string> = { HOME: home, PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };
  const started: string[] = [];
  try {
    for (const dir of [home, sockets]) {
      mkdirSync(dir, { recursive: true });
      if (asRoot) chownSync(dir, uidOf(osUser), gidOf(osUser));
    }
    const port = await freePort();
    const restoredPort = await freePort();
    const pgdr = (args: string[]) => run(process.execPath, [PGDR, ...args], { ...env, PGHOST: sockets, PGPORT: String(port), PGUSER: 'postgres' });

    step(`Creating a throwaway PostgreSQL 15 cluster in ${source} (port ${port})`);
    await run(pgBinary('initdb'), ['--data-checksums', '-U', 'postgres', '--auth=trust', '-D', source], env);
    const archiveCommand = `'${process.execPath}' '${PGDR}' wal push %p`;
    appendFileSync(
      join(source, 'postgresql.auto.conf'),
      [
        `port = ${port}`,
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${sockets}'`,
        `archive_mode = on`,
        `archive_command = '${archiveCommand.replace(/'/g, "''")}'`,
        '',
      ].join('\n'),
    );
    process.stdout.write(`    archive_command = ${archiveCommand}\n`);
    await run(pgBinary('pg_ctl'), ['-D', source, '-l', join(work, 'source.log'), '-w', 'start'], env);
    started.push(source);

    const db = async (portNumber: number, sql: string) => {
      const client = new pg.Client({ host: sockets, port: portNumber, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        return (await client.query(sql)).rows;
      } finally {
        await client.end();
      }
    };
    await db(port, `CREATE TABLE demo_orders (id int PRIMARY KEY, phase text, created_at timestamptz DEFAULT clock_timestamp())`);
    await db(port, `INSERT INTO demo_orders (id, phase) SELECT g, 'before the backup' FROM generate_series(1, 3) g`);
    process.stdout.write('    wrote rows 1-3\n');

    step('Taking a base backup into the embedded default repository (a local directory)');
    process.stdout.write(`${indent(await pgdr(['backup', 'now']))}\n`);
    process.stdout.write(`${indent(await pgdr(['backup', 'list']))}\n`);

    step('Writing rows 4-6, noting the time, then writing rows 7-9');
    await db(port, `INSERT INTO demo_orders (id, phase) SELECT g, 'before the target' FROM generate_series(4, 6) g`);
    await new Promise((r) => setTimeout(r, 1100));
    const [{ target }] = (await db(port, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS target`)) as [{ target: string }];
    await new Promise((r) => setTimeout(r, 1100));
    await db(port, `INSERT INTO demo_orders (id, phase) SELECT g, 'after the target' FROM generate_series(7, 9) g`);
    process.stdout.write(`    target time: ${target}\n`);
    // Close the current WAL segment so the rows after the target reach the archive too.
    await db(port, `SELECT pg_switch_wal()`);
    await waitForArchive(() => db(port, `SELECT last_archived_wal, pg_walfile_name(pg_current_wal_lsn()) AS current, failed_count FROM pg_stat_archiver`));

    step(`Restoring to ${target} into ${restored} and starting it on port ${restoredPort}`);
    process.stdout.write(
      `${indent(await pgdr(['restore', '--pgdata', restored, '--target-time', target, '--start', '--port', String(restoredPort), '--archive-mode', 'off']))}\n`,
    );
    started.push(restored);

    step('Checking the restored rows');
    const rows = (await db(restoredPort, `SELECT id, phase FROM demo_orders ORDER BY id`)) as { id: number; phase: string }[];
    for (const row of rows) process.stdout.write(`    ${row.id}  ${row.phase}\n`);
    const ids = rows.map((r) => r.id).join(',');
    if (ids !== '1,2,3,4,5,6') throw new Error(`expected rows 1-6 after the restore, found ${ids || 'none'}`);
    process.stdout.write(`\nOK: the restored server holds exactly rows 1-6, those committed before ${target}; rows 7-9 are not there.\n`);
  } finally {
    step('Cleaning up');
    for (const dir of started.reverse()) {
      await run(pgBinary('pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop'], env, false).catch(() => undefined);
    }
    rmSync(work, { recursive: true, force: true });
    process.stdout.write(`    stopped both servers and removed ${work}\n`);
  }
}

async function waitForArchive(read: () => Promise<unknown[]>): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [row] = (await read()) as { last_archived_wal: string | null; current: string; failed_count: string }[];
    if (row && row.last_archived_wal && row.last_archived_wal.slice(8) >= previousSegment(row.current)) return;
    if (Date.now() > deadline) throw new Error(`WAL archiving did not catch up (failed_count ${row?.failed_count})`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

function previousSegment(current: string): string {
  const n = BigInt(`0x${current.slice(8)}`) - 1n;
  return n.toString(16).toUpperCase().padStart(16, '0');
}

function indent(text: string): string {
  return text
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function uidOf(user: string): number {
  return Number(execaSync('id', ['-u', user]).stdout);
}

function gidOf(user: string): number {
  return Number(execaSync('id', ['-g', user]).stdout);
}

main().catch((err: unknown) => {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
