import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAll } from '../harness/cleanup.js';
import { runAsPostgres, startPostgres, startPostgresFromDir, type PostgresServer } from '../harness/postgres.js';
import { pgBin } from '../harness/preflight.js';
import { makeTempDir } from '../harness/temp.js';
import { ServiceError } from '../../src/errors.js';
import { openBaseBackupSession, type BaseBackupSession } from '../../src/postgres/base-backup-session.js';
import { connectForReplication } from '../../src/postgres/replication-connection.js';
import { withConnection } from '../../src/postgres/connection.js';
import { parseBackupLabel } from '../../src/postgres/backup-label.js';
import { parseLsn } from '../../src/postgres/lsn.js';

/**
 * The BASE_BACKUP client against a real PostgreSQL 15: a tablespace at a LOCATION arrives as its own tar, an
 * in-place tablespace is refused, a slow reader holds the server back instead of filling memory, and a backup that
 * fails or is cancelled leaves no walsender behind.
 */
describe('BASE_BACKUP over a replication connection', () => {
  let server: PostgresServer;
  let tablespaceDir: string;
  let tablespaceOid: number;
  const endpoint = (user = 'postgres') => ({ host: server.host, port: server.port, user });

  beforeAll(async () => {
    // Made before the server, so that the cleanup removes it only after the server has stopped.
    tablespaceDir = makeTempDir('tblspc', { owner: 'service' });
    server = await startPostgres({ name: 'bbproto' });
    await server.psql(`
      CREATE TABLE events AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 10000) g;
      CREATE TABLESPACE outside LOCATION '${tablespaceDir}';
      CREATE TABLE far TABLESPACE outside AS SELECT g AS id FROM generate_series(1, 1000) g;
    `);
    const [row] = await server.query<{ oid: string }>(`SELECT oid::text AS oid FROM pg_tablespace WHERE spcname = 'outside'`);
    tablespaceOid = Number(row!.oid);
  });

  afterAll(async () => {
    await stopAll();
  });

  /** Walsenders pgdr still has on the server (a BASE_BACKUP connection shows up as one). */
  async function pgdrWalsenders(on: PostgresServer): Promise<number> {
    const [row] = await on.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'pgdr'`,
    );
    return Number(row!.n);
  }

  /** The server ends a walsender a moment after its client is gone: wait for that, a few seconds at most. */
  async function expectNoWalsenderLeft(on: PostgresServer = server): Promise<void> {
    const deadline = Date.now() + 15_000;
    while ((await pgdrWalsenders(on)) > 0 && Date.now() < deadline) await sleep(100);
    expect(await pgdrWalsenders(on)).toBe(0);
    expect(await on.query('SELECT pid FROM pg_stat_progress_basebackup')).toEqual([]);
  }

  async function readAll(stream: Readable): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async function tarMembers(tar: Buffer): Promise<string[]> {
    const { stdout } = await execa('tar', ['-t', '-f', '-'], { input: tar });
    return stdout.split('\n');
  }

  async function tarFile(tar: Buffer, member: string): Promise<string> {
    const { stdout } = await execa('tar', ['-x', '-O', '-f', '-', member], { input: tar });
    return stdout;
  }

  it('sends each tablespace as its own tar, base.tar last, then the manifest and where the backup ends', async () => {
    const progress: [number, number][] = [];
    const session = await openBaseBackupSession({
      endpoint: endpoint(),
      label: "pgdr it's a test",
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(session.tablespaces).toEqual([
      { oid: tablespaceOid, location: tablespaceDir, sizeKb: expect.any(Number) },
      { oid: null, location: null, sizeKb: expect.any(Number) },
    ]);

    const archives: { name: string; location: string | null; tar: Buffer }[] = [];
    for (let archive = await session.nextArchive(); archive !== null; archive = await session.nextArchive()) {
      archives.push({ name: archive.name, location: archive.tablespaceLocation, tar: await readAll(archive.data) });
    }
    expect(archives.map(({ name, location }) => [name, location])).toEqual([
      [`${tablespaceOid}.tar`, tablespaceDir],
      ['base.tar', null],
    ]);
    const [tablespaceTar, baseTar] = archives.map((archive) => archive.tar) as [Buffer, Buffer];

    const tablespaceMembers = await tarMembers(tablespaceTar);
    expect(tablespaceMembers.some((member) => /^PG_15_\d+\/$/.test(member))).toBe(true);
    const baseMembers = await tarMembers(baseTar);
    expect(baseMembers).toEqual(expect.arrayContaining(['PG_VERSION', 'backup_label', 'tablespace_map', 'global/pg_control']));
    expect(await tarFile(baseTar, 'tablespace_map')).toBe(`${tablespaceOid} ${tablespaceDir}`);

    const manifest = JSON.parse((await session.manifest()).toString('utf8')) as {
      Files: { Path: string }[];
      'WAL-Ranges': { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
    };
    const end = await session.end();
    await session.closed;

    const label = parseBackupLabel(await tarFile(baseTar, 'backup_label'));
    expect(label.label).toBe("pgdr it's a test");
    expect(session.start).toEqual({ lsn: label.startLsn, timeline: label.startTimeline });
    expect(manifest['WAL-Ranges']).toEqual([{ Timeline: end.timeline, 'Start-LSN': session.start.lsn, 'End-LSN': end.lsn }]);
    expect(manifest.Files.some((file) => file.Path.startsWith(`pg_tblspc/${tablespaceOid}/PG_15_`))).toBe(true);

    const [now] = await server.query<{ timeline: number; lsn: string }>(
      'SELECT timeline_id AS timeline, pg_current_wal_lsn()::text AS lsn FROM pg_control_checkpoint()',
    );
    expect(end.timeline).toBe(now!.timeline);
    expect(parseLsn(end.lsn)).toBeGreaterThan(parseLsn(session.start.lsn));
    expect(parseLsn(end.lsn)).toBeLessThanOrEqual(parseLsn(now!.lsn));

    // The server counts every archive byte it sends, and its last count is the sum of the tars.
    expect(progress.at(-1)?.[0]).toBe(tablespaceTar.length + baseTar.length);
    expect(progress.every(([done, total]) => total >= done)).toBe(true);
    await expectNoWalsenderLeft();
  });

  it('backs up a standby the same way, its tablespace at the standby\'s own location', async () => {
    const standbyRoot = makeTempDir('standby', { owner: 'service' });
    const standbyTablespace = makeTempDir('standby-tblspc', { owner: 'service' });
    const pgdata = join(standbyRoot, 'pgdata');
    const clone = await runAsPostgres(
      pgBin('pg_basebackup'),
      ['-h', server.host, '-p', String(server.port), '-U', 'postgres', '-D', pgdata, '-X', 'stream', '-R', '-c', 'fast', `--tablespace-mapping=${tablespaceDir}=${standbyTablespace}`],
      { cwd: standbyRoot, reject: false, timeout: 120_000 },
    );
    expect(clone.exitCode, String(clone.stderr)).toBe(0);
    const standby = await startPostgresFromDir(pgdata, { name: 'bbproto-standby' });
    try {
      expect(await standby.query('SELECT pg_is_in_recovery() AS standby')).toEqual([{ standby: true }]);
      const session = await openBaseBackupSession({ endpoint: { host: standby.host, port: standby.port, user: 'postgres' }, label: 'from the standby' });
      expect(session.tablespaces.map(({ oid, location }) => [oid, location])).toEqual([
        [tablespaceOid, standbyTablespace],
        [null, null],
      ]);
      const tars = new Map<string, Buffer>();
      for (let archive = await session.nextArchive(); archive !== null; archive = await session.nextArchive()) {
        tars.set(archive.name, await readAll(archive.data));
      }
      expect([...tars.keys()]).toEqual([`${tablespaceOid}.tar`, 'base.tar']);
      const manifest = JSON.parse((await session.manifest()).toString('utf8')) as { 'WAL-Ranges': unknown[] };
      const end = await session.end();
      const label = await tarFile(tars.get('base.tar')!, 'backup_label');
      expect(label).toContain('BACKUP FROM: standby');
      expect(await tarFile(tars.get('base.tar')!, 'tablespace_map')).toBe(`${tablespaceOid} ${standbyTablespace}`);
      expect(manifest['WAL-Ranges']).toEqual([{ Timeline: 1, 'Start-LSN': session.start.lsn, 'End-LSN': end.lsn }]);
      expect(end.timeline).toBe(1);
      await expectNoWalsenderLeft(standby);
    } finally {
      await standby.stop();
    }
  });

  it('refuses a cluster with an in-place tablespace before handing out any archive', async () => {
    await server.psql(`
      SET allow_in_place_tablespaces = on;
      CREATE TABLESPACE inplace LOCATION '';
      CREATE TABLE near TABLESPACE inplace AS SELECT g AS id FROM generate_series(1, 1000) g;
    `);
    try {
      const [row] = await server.query<{ location: string }>(`SELECT pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname = 'inplace'`);
      expect(row!.location).toMatch(/^pg_tblspc\/\d+$/);
      const opening = openBaseBackupSession({ endpoint: endpoint(), label: 'in-place' });
      await expect(opening).rejects.toThrow(ServiceError);
      await expect(opening).rejects.toThrow(`in-place tablespace "inplace" (${row!.location}), which PostgreSQL leaves out of base backups`);
      await expectNoWalsenderLeft();
    } finally {
      await server.psql('DROP TABLE near; DROP TABLESPACE inplace;');
    }
  });

  it('says what is missing when the user may not replicate: the REPLICATION attribute, a pg_hba.conf line, a password', async () => {
    await server.psql(`CREATE ROLE plain LOGIN; CREATE ROLE refused LOGIN REPLICATION; CREATE ROLE guarded LOGIN REPLICATION PASSWORD 's3cret';`);
    const hint = /REPLICATION.*pg_hba\.conf.*'replication' database/;

    const noAttribute = openBaseBackupSession({ endpoint: endpoint('plain'), label: 'x' });
    await expect(noAttribute).rejects.toThrow(ServiceError);
    await expect(noAttribute).rejects.toThrow(/refused a replication connection: must be superuser or replication role/);
    await expect(noAttribute).rejects.toMatchObject({ hint: expect.stringMatching(hint) });

    const hba = join(server.pgdata, 'pg_hba.conf');
    const lines = [
      'host replication refused 127.0.0.1/32 reject',
      'host replication guarded 127.0.0.1/32 scram-sha-256',
      'host all guarded 127.0.0.1/32 scram-sha-256',
    ];
    writeFileSync(hba, `${lines.join('\n')}\n${readFileSync(hba, 'utf8')}`);
    await server.query('SELECT pg_reload_conf()');
    // The postmaster reloads pg_hba.conf on its own time; until then the connection is let in.
    let refusal: unknown;
    for (const deadline = Date.now() + 10_000; refusal === undefined && Date.now() < deadline; ) {
      try {
        const { client } = await connectForReplication(endpoint('refused'));
        await client.end();
        await sleep(100);
      } catch (err) {
        refusal = err;
      }
    }
    expect(refusal).toBeInstanceOf(ServiceError);
    expect((refusal as ServiceError).message).toMatch(/refused a replication connection: pg_hba\.conf rejects replication connection/);
    expect((refusal as ServiceError).hint).toMatch(hint);

    // The password comes from the environment (or ~/.pgpass), as for libpq.
    const password = process.env.PGPASSWORD;
    try {
      delete process.env.PGPASSWORD;
      await expect(connectForReplication(endpoint('guarded'))).rejects.toThrow(/asks for a password for the replication connection, and none was found/);
      process.env.PGPASSWORD = 'wrong';
      await expect(connectForReplication(endpoint('guarded'))).rejects.toThrow(/refused the password for a replication connection/);
      process.env.PGPASSWORD = 's3cret';
      const { client } = await connectForReplication(endpoint('guarded'));
      await client.end();
    } finally {
      if (password === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = password;
    }
  });

  it('reads the password from the file PGPASSFILE names, for normal and for replication connections (as libpq does)', async () => {
    // The roles and pg_hba.conf lines of the test above: `guarded` needs a password for both kinds of connection.
    const dir = makeTempDir('pgpassfile');
    const file = join(dir, 'pgpass');
    const saved = { PGPASSWORD: process.env.PGPASSWORD, PGPASSFILE: process.env.PGPASSFILE };
    const line = (database: string) => `${server.host}:${server.port}:${database}:guarded:s3cret`;
    try {
      delete process.env.PGPASSWORD;
      process.env.PGPASSFILE = file;
      // A password file others may read is ignored (libpq's rule, which node-postgres's pgpass follows): mode 0600.
      writeFileSync(file, `${line('postgres')}\n`, { mode: 0o600 });
      const version = await withConnection({ ...endpoint('guarded'), database: 'postgres' }, async (c) => (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v, current_user AS u")).rows[0]!.v);
      expect(version).toMatch(/^15/);
      // A replication connection looks up the database name "replication", as pg_basebackup does.
      await expect(connectForReplication(endpoint('guarded'))).rejects.toThrow(/asks for a password for the replication connection, and none was found/);
      writeFileSync(file, `${line('postgres')}\n${line('replication')}\n`, { mode: 0o600 });
      const { client } = await connectForReplication(endpoint('guarded'));
      await client.end();
      // Without PGPASSFILE the same connection finds no password ($HOME/.pgpass does not exist here).
      delete process.env.PGPASSFILE;
      await expect(connectForReplication(endpoint('guarded'))).rejects.toThrow(/none was found/);
      await expect(withConnection({ ...endpoint('guarded'), database: 'postgres' }, async () => undefined)).rejects.toThrow(/refused the connection/);
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it('with WAIT, reports the server waiting for WAL archiving, and cancel() interrupts that wait on the server', async () => {
    const stuck = await startPostgres({ name: 'bbproto-stuck', archiveCommand: 'false' });
    try {
      const notices: string[] = [];
      const session = await openBaseBackupSession({
        endpoint: { host: stuck.host, port: stuck.port, user: 'postgres' },
        label: 'waits',
        waitForWalArchive: true,
        onNotice: (message) => notices.push(message),
      });
      const baseTar = (await session.nextArchive())!;
      baseTar.data.resume();
      // The server says so after about five seconds of waiting.
      for (const deadline = Date.now() + 30_000; notices.length === 0 && Date.now() < deadline; ) await sleep(200);
      expect(notices).toContain('base backup done, waiting for required WAL segments to be archived');
      expect(await stuck.query(`SELECT pid FROM pg_stat_activity WHERE wait_event = 'BackupWaitWalArchive'`)).toHaveLength(1);

      // Closing the socket alone would leave the walsender waiting until its next write, minutes away.
      session.cancel();
      await expect(session.end()).rejects.toThrow('cancelled');
      await session.closed;
      await expectNoWalsenderLeft(stuck);
    } finally {
      await stuck.stop();
    }
  });

  describe('on a few hundred MB', () => {
    let baseTarEstimate = 0;

    beforeAll(async () => {
      await server.query(`CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS filler FROM generate_series(1, 1200000) g`);
      const [row] = await server.query<{ bytes: string }>(`SELECT sum(pg_database_size(oid))::text AS bytes FROM pg_database`);
      baseTarEstimate = Number(row!.bytes);
      expect(baseTarEstimate).toBeGreaterThan(300 * 2 ** 20);
    });

    /** Opens a session and reads the tablespace archives, leaving base.tar (the large one) to the test. */
    async function openAtBaseTar(options: { maxRate?: string } = {}): Promise<{ session: BaseBackupSession; baseTar: Readable }> {
      const session = await openBaseBackupSession({ endpoint: endpoint(), label: 'big', ...options });
      for (;;) {
        const archive = await session.nextArchive();
        if (archive === null) throw new Error('no base.tar');
        if (archive.name === 'base.tar') return { session, baseTar: archive.data };
        await readAll(archive.data);
      }
    }

    async function streamedBytes(): Promise<number> {
      const [row] = await server.query<{ streamed: string }>('SELECT backup_streamed::text AS streamed FROM pg_stat_progress_basebackup');
      return Number(row?.streamed ?? Number.NaN);
    }

    it('holds the server back while the reader pauses, with memory bounded, then delivers every byte', async () => {
      const { session, baseTar } = await openAtBaseTar();
      const reader = baseTar[Symbol.asyncIterator]();
      let received = 0;
      while (received < 4 * 2 ** 20) received += ((await reader.next()).value as Buffer).length;
      const rssBefore = process.memoryUsage().rss;

      // The reader stops: the socket buffers fill, and the walsender waits in its send.
      await sleep(1000);
      const streamedEarly = await streamedBytes();
      await sleep(3000);
      const streamedLate = await streamedBytes();
      const rssPaused = process.memoryUsage().rss;
      expect(streamedLate - streamedEarly).toBeLessThan(2 * 2 ** 20);
      expect(streamedLate).toBeLessThan(baseTarEstimate / 2);
      expect(rssPaused - rssBefore).toBeLessThan(32 * 2 ** 20);

      let rssPeak = rssPaused;
      for (let step = await reader.next(); !step.done; step = await reader.next()) {
        received += (step.value as Buffer).length;
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }
      expect(await session.nextArchive()).toBeNull();
      await session.manifest();
      await session.end();
      expect(received).toBeGreaterThan(300 * 2 ** 20);
      // A sanity bound, not a measurement (about 25 MB here): the data passed through, it did not pile up.
      expect(rssPeak - rssBefore).toBeLessThan(128 * 2 ** 20);
      await expectNoWalsenderLeft();
    });

    it('fails the stream and the session with the server message when the walsender is terminated mid-stream', async () => {
      const { session, baseTar } = await openAtBaseTar({ maxRate: '4M' });
      let received = 0;
      // Settled into a value at once: the rejection arrives while the test is busy terminating the walsender.
      const readFailure = (async () => {
        for await (const chunk of baseTar) received += (chunk as Buffer).length;
      })().then(
        () => undefined,
        (err: unknown) => err,
      );
      for (const deadline = Date.now() + 30_000; received < 2 * 2 ** 20 && Date.now() < deadline; ) await sleep(50);
      await server.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'pgdr'`);

      const serverMessage = /PostgreSQL ended the base backup: terminating connection due to administrator command/;
      const failure = await readFailure;
      expect(failure).toBeInstanceOf(ServiceError);
      expect((failure as ServiceError).message).toMatch(serverMessage);
      await expect(session.end()).rejects.toThrow(serverMessage);
      await expect(session.manifest()).rejects.toThrow(serverMessage);
      await expect(session.nextArchive()).rejects.toThrow(serverMessage);
      await session.closed;
      await expectNoWalsenderLeft();
    });

    it('cancel() closes the connection and fails the stream being read and everything pending', async () => {
      const { session, baseTar } = await openAtBaseTar();
      const reader = baseTar[Symbol.asyncIterator]();
      await reader.next();
      const reason = new Error('the upload failed');
      const ending = session.end();
      session.cancel(reason);

      await expect(reader.next()).rejects.toBe(reason);
      await expect(ending).rejects.toBe(reason);
      await expect(session.manifest()).rejects.toBe(reason);
      await expect(session.nextArchive()).rejects.toBe(reason);
      await session.closed;
      await expectNoWalsenderLeft();
    });

    it('a reader that destroys its archive stream ends the backup instead of leaving the server waiting', async () => {
      const { session, baseTar } = await openAtBaseTar();
      baseTar.destroy(new Error('zstd died'));
      await expect(session.end()).rejects.toThrow('zstd died');
      await session.closed;
      await expectNoWalsenderLeft();
    });
  });
});
