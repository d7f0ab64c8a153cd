import { pathToFileURL } from 'node:url';
import { measureRatio, LOAD_SETTINGS, pick, WORDS_SQL, type RatioInfo } from './dataset.js';
import { runWithCleanup } from './lib/cleanup.js';
import { BenchServer } from './lib/pg.js';
import { fmtBytes, fmtSeconds } from './lib/report.js';

/**
 * Three shapes of data for the files-engine part of the bench, because a ratio that holds on one dataset only is
 * not a result: an incremental backup, a delta restore and compression each behave differently on
 *
 * - `logs`: short log lines (bigint id, timestamp, level, source, host, status, a short message) under four indexes,
 *   the shape of an application's log or event table;
 * - `json`: wide jsonb documents, a few kB each with a long tail that PostgreSQL moves to TOAST;
 * - `static`: several large tables that never change after the load (a ledger, a catalogue, an audit trail) and one
 *   small hot table holding about 5% of the rows, where nearly all writes land.
 *
 * Each is about 1 GB at scale 1, generated in SQL with a fixed setseed() and loaded the way dataset.ts loads the
 * mixed dataset (wal_level=minimal, CREATE TABLE in the loading transaction, indexes after, VACUUM FREEZE), each into
 * its own server, since a backup is of the whole cluster.
 *
 * The updates between backups are per shape, and chosen to be what such a table sees (see UPDATE_DESCRIPTIONS).
 */

export type ShapeName = 'logs' | 'json' | 'static';
export const SHAPE_NAMES: readonly ShapeName[] = ['logs', 'json', 'static'];

/** What the doc says each shape is; kept beside the SQL that makes it. */
export const SHAPE_DESCRIPTIONS: Record<ShapeName, string> = {
  logs:
    'one `logs` table of short log lines: bigint id, timestamptz, level (skewed towards INFO), one of 20 sources, a host, ' +
    'a status, and a 30-80 byte message from a few templates (HTTP access lines, user actions, job results, free words); ' +
    'primary key plus three secondary indexes (time, source + time, level)',
  json:
    'one `documents` table of wide jsonb rows: owner, tags, attributes, a list of line items with notes, a body of words, ' +
    'a history of changes and a random checksum; 3.4 kB of JSON on average with a long tail to ~10 kB, so the larger ' +
    'documents are compressed and moved out of line (TOAST); two range partitions by id (loaded in parallel), primary key ' +
    'and an owner index',
  static:
    'three tables that never change after the load (`ledger`: bookings; `catalog`: product descriptions with a small ' +
    'jsonb; `audit_log`: who did what) and one hot table `accounts` (fillfactor 80) holding about 5% of all rows; ' +
    'primary keys and one secondary index on each large table',
};

/** How each shape is updated between backups; `share` is 0.05 or 0.01 of the rows. */
export const UPDATE_DESCRIPTIONS: Record<ShapeName, (share: number) => string> = {
  logs: (share) => `the newest ${pct(share)} of log lines (highest ids) get a status change (\`UPDATE logs SET status = …\`), as when recent entries are acknowledged`,
  json: (share) =>
    `${pct(share)} of the documents, spread evenly over the table (\`id % ${Math.round(1 / share)} = k\`, k changing every round), get a new status inside the jsonb (\`jsonb_set\`), revision + 1 and a new updated_at`,
  static: (share) =>
    share >= 0.05
      ? 'every row of the hot `accounts` table (about 5% of all rows) gets a new balance, status, revision and updated_at; the large tables are not touched'
      : `a fifth of the hot \`accounts\` table (\`id % 5 = k\`, about ${pct(share)} of all rows) is updated the same way; the large tables are not touched`,
};

function pct(share: number): string {
  return `${Number((share * 100).toFixed(1))}%`;
}

/** Rows per unit of scale, calibrated so that each shape's database is about 1 GB at scale 1 on the bench machine. */
const ROWS_PER_SCALE = {
  logs: 6_000_000,
  documents: 330_000,
  ledger: 2_700_000,
  catalog: 650_000,
  audit_log: 2_300_000,
};

export interface ShapeInfo {
  shape: ShapeName;
  database: string;
  scale: number;
  rows: Record<string, number>;
  /** pg_database_size after the load, indexes and VACUUM FREEZE. */
  bytes: number;
  tables: { name: string; bytes: number; toastBytes: number }[];
  loadSeconds: number;
  zstd3: RatioInfo;
}

/** Word lists the shapes need beyond dataset.ts's bench_words. */
export const SHAPE_WORDS_SQL = String.raw`
CREATE TABLE shape_words AS SELECT
  ARRAY['INFO','INFO','INFO','INFO','DEBUG','DEBUG','WARN','ERROR','TRACE','FATAL']::text[] AS levels,
  ARRAY['api-gateway','auth','billing','checkout','search','catalog','inventory','shipping','notifications','payments',
        'recommendations','reviews','users','sessions','media','reports','scheduler','mailer','webhooks','ledger']::text[] AS sources,
  ARRAY['GET','GET','GET','GET','POST','POST','PUT','DELETE','PATCH']::text[] AS methods,
  ARRAY['200','200','200','200','200','201','204','301','304','400','401','403','404','409','429','500','502','503']::text[] AS codes,
  ARRAY['logged in','logged out','changed password','updated profile','added a payment method','requested a refund',
        'accepted the terms','exported data','enabled 2FA','opened a ticket','joined a team','left a team']::text[] AS actions,
  ARRAY['completed','failed','retried','timed out','skipped','queued','cancelled']::text[] AS outcomes,
  ARRAY['note','invoice','contract','ticket','article','order','profile','report']::text[] AS kinds,
  ARRAY['created','approved','edited','commented','assigned','escalated','archived','restored']::text[] AS changes,
  ARRAY['red','blue','green','black','white','grey','navy','olive','teal','maroon']::text[] AS colors,
  ARRAY['XS','S','M','L','XL','XXL']::text[] AS sizes,
  ARRAY['admin','system','import','sync-bot','api','support','billing-bot']::text[] AS actors,
  ARRAY['create','update','delete','login','export','grant','revoke','approve']::text[] AS verbs,
  ARRAY['account','invoice','order','user','role','document','payment','shipment']::text[] AS objects;
`;

/**
 * The word tables rewritten with every column stored PLAIN (inline, uncompressed; the row is ~7 kB, under a page).
 * As CREATE TABLE AS leaves them, the arrays are compressed, and every `w.vocab[i]` in the generating queries
 * decompresses the whole array again: the load then takes ten times as long for the same rows.
 */
export function plainStorageSql(table: string): string {
  return `
ALTER TABLE ${table} RENAME TO ${table}_packed;
CREATE TABLE ${table} (LIKE ${table}_packed);
DO $$DECLARE c text; BEGIN
  FOR c IN SELECT attname FROM pg_attribute WHERE attrelid = '${table}'::regclass AND attnum > 0 AND NOT attisdropped LOOP
    EXECUTE format('ALTER TABLE ${table} ALTER COLUMN %I SET STORAGE PLAIN', c);
  END LOOP;
END$$;
INSERT INTO ${table} SELECT * FROM ${table}_packed;
DROP TABLE ${table}_packed;`;
}

/** An element of shape_words.<array> (alias v), skewed towards the first ones when skew > 1. */
function pickV(array: string, skew = 1): string {
  const r = skew === 1 ? 'random()' : `power(random(), ${skew})`;
  return `v.${array}[1 + floor(${r} * array_length(v.${array}, 1))::int]`;
}

/** `n` words of dataset.ts's vocabulary, joined by spaces; `n` must refer to the outer row so it is drawn per row. */
function words(n: string, skew = 1.8): string {
  return `array_to_string(ARRAY(SELECT ${pick('vocab', skew)} FROM generate_series(1, ${n})), ' ')`;
}

function logsSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.44);
CREATE TABLE logs (
  id bigint NOT NULL, logged_at timestamptz NOT NULL, level text NOT NULL, source text NOT NULL, host text NOT NULL,
  status text NOT NULL, message text NOT NULL
);
INSERT INTO logs
SELECT g,
  timestamptz '2024-03-01 00:00:00+00' + (g::float8 / ${n}) * interval '30 days' + random() * interval '3 seconds',
  level, source, source || '-' || lpad((1 + floor(random() * 12))::int::text, 2, '0'), 'new',
  CASE kind
    WHEN 0 THEN ${pickV('methods')} || ' /' || ${pick('paths', 1.8)} || '/' || floor(power(random(), 2) * 90000)::int || ' '
      || ${pickV('codes', 1.5)} || ' ' || floor(power(random(), 3) * 3000)::int || 'ms'
    WHEN 1 THEN 'user ' || floor(power(random(), 1.5) * 800000)::int || ' ' || ${pickV('actions', 1.4)} || ' from 10.'
      || floor(random() * 250)::int || '.' || floor(random() * 250)::int || '.' || floor(random() * 250)::int
    WHEN 2 THEN 'job ' || substr(md5(random()::text), 1, 10) || ' ' || ${pickV('outcomes', 1.6)} || ' after '
      || floor(power(random(), 2) * 9000)::int || ' ms'
    ELSE ${words('3 + floor(random() * 6)::int + 0 * g')}
  END
FROM (
  SELECT g, ${pickV('levels')} AS level, ${pickV('sources', 1.6)} AS source, floor(power(random(), 1.2) * 4)::int AS kind
  FROM generate_series(1, ${n}) g, shape_words v
) s, bench_words w, shape_words v;
COMMIT;`;
}

/**
 * Documents `first`..`last` of `n` into partition `part` of `documents`, created in the loading transaction (so its
 * rows skip WAL); the two partitions load in parallel, each with its own seed, and are attached afterwards.
 */
export function documentsSql(n: number, first: number, last: number, part: number): string {
  return `
BEGIN;
SELECT setseed(${0.55 + part / 100});
CREATE TABLE documents_p${part} (
  id bigint NOT NULL, kind text NOT NULL, owner_id bigint NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL, revision int NOT NULL, doc jsonb NOT NULL
);
INSERT INTO documents_p${part}
SELECT g, kind, owner, created, created, 1,
  jsonb_build_object(
    'title', ${pick('adjectives', 1.3)} || ' ' || ${pick('nouns', 1.3)} || ' ' || kind || ' #' || g,
    'status', 'draft',
    'owner', jsonb_build_object('id', owner, 'name', ${pick('first', 1.5)} || ' ' || ${pick('last', 1.5)},
      'email', lower(${pick('first', 1.5)}) || '.' || owner || '@' || ${pick('domains', 2)}, 'city', ${pick('cities', 1.7)}),
    'tags', ARRAY(SELECT ${pick('tags', 2)} FROM generate_series(1, 1 + g % 5)),
    'attributes', jsonb_build_object('color', ${pickV('colors')}, 'size', ${pickV('sizes')},
      'weight_g', floor(random() * 5000)::int, 'origin', ${pick('countries', 1.7)}, 'fragile', random() < 0.2),
    'items', (SELECT jsonb_agg(jsonb_build_object(
        'line', i, 'sku', 'SKU-' || lpad((1 + floor(power(random(), 2) * 50000))::int::text, 6, '0'),
        'name', ${pick('adjectives', 1.3)} || ' ' || ${pick('nouns', 1.3)}, 'qty', 1 + floor(power(random(), 3) * 6)::int,
        'unit_price', round((2 + random() * 300)::numeric, 2), 'note', ${words('2 + floor(random() * 8)::int + 0 * i')}))
      FROM generate_series(1, nitems) i),
    'body', ${words('nwords')},
    'history', (SELECT jsonb_agg(jsonb_build_object('at', created + j * interval '1 day', 'by', ${pickV('actors')},
        'change', ${pickV('changes')})) FROM generate_series(1, 1 + g % 7) j),
    'checksum', md5(random()::text || g) || md5(random()::text))
FROM (
  SELECT g, ${pickV('kinds', 1.5)} AS kind, 1 + floor(power(random(), 1.6) * 200000)::bigint AS owner,
    timestamptz '2020-01-01 00:00:00+00' + (g::float8 / ${n}) * interval '1500 days' AS created,
    -- a long tail: most documents have a few lines and a paragraph, some have dozens and pages of text
    1 + floor(power(random(), 3) * 32)::int AS nitems, 10 + floor(power(random(), 2.5) * 900)::int AS nwords
  FROM generate_series(${first}, ${last}) g, shape_words v
) s, bench_words w, shape_words v;
COMMIT;`;
}

function ledgerSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.66);
CREATE TABLE ledger (
  id bigint NOT NULL, account_id bigint NOT NULL, booked_on date NOT NULL, value_date date NOT NULL,
  amount numeric(14,2) NOT NULL, currency char(3) NOT NULL, counterparty text, reference text, memo text
);
INSERT INTO ledger
SELECT g, 1 + floor(power(random(), 1.4) * 300000)::bigint, d, d + floor(random() * 3)::int,
  round(((random() - 0.45) * power(random(), 2) * 20000)::numeric, 2), ${pick('currencies')},
  ${pick('first', 1.5)} || ' ' || ${pick('last', 1.5)}, 'RF' || lpad(floor(random() * 1e12)::bigint::text, 12, '0'),
  CASE WHEN g % 3 = 0 THEN ${words('2 + g % 6')} END
FROM (SELECT g, date '2016-01-01' + floor(g::float8 / ${n} * 2900)::int AS d FROM generate_series(1, ${n}) g) s, bench_words w;
COMMIT;`;
}

function catalogSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.77);
CREATE TABLE catalog (
  id bigint NOT NULL, sku text NOT NULL, name text NOT NULL, description text, price numeric(10,2) NOT NULL,
  attrs jsonb, added_on date NOT NULL
);
INSERT INTO catalog
SELECT g, 'SKU-' || lpad(g::text, 8, '0'), ${pick('adjectives', 1.3)} || ' ' || ${pick('nouns', 1.3)} || ' ' || ${pickV('colors')},
  ${words('15 + g % 60')}, round((2 + random() * 500)::numeric, 2),
  jsonb_build_object('size', ${pickV('sizes')}, 'origin', ${pick('countries', 1.7)}, 'weight_g', floor(random() * 5000)::int),
  date '2012-01-01' + floor(random() * 4000)::int
FROM generate_series(1, ${n}) g, bench_words w, shape_words v;
COMMIT;`;
}

function auditSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.88);
CREATE TABLE audit_log (
  id bigint NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, object_type text NOT NULL,
  object_id bigint NOT NULL, details text
);
INSERT INTO audit_log
SELECT g, timestamptz '2019-01-01 00:00:00+00' + (g::float8 / ${n}) * interval '1800 days',
  CASE WHEN g % 4 = 0 THEN ${pickV('actors')} ELSE lower(${pick('first', 1.5)}) || '.' || lower(${pick('last', 1.5)}) END,
  ${pickV('verbs', 1.5)}, ${pickV('objects', 1.3)}, floor(power(random(), 1.5) * 5000000)::bigint,
  CASE WHEN g % 2 = 0 THEN ${words('3 + g % 9')} END
FROM generate_series(1, ${n}) g, bench_words w, shape_words v;
COMMIT;`;
}

function accountsSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.99);
CREATE TABLE accounts (
  id bigint NOT NULL, owner text NOT NULL, email text NOT NULL, balance numeric(14,2) NOT NULL, status text NOT NULL,
  revision int NOT NULL, updated_at timestamptz NOT NULL
) WITH (fillfactor = 80);
INSERT INTO accounts
SELECT g, fn || ' ' || ln, lower(fn) || '.' || lower(ln) || g || '@' || ${pick('domains', 2)},
  round((random() * random() * 50000)::numeric, 2), 'active', 1,
  timestamptz '2024-01-01 00:00:00+00' + random() * interval '60 days'
FROM (SELECT g, ${pick('first', 1.5)} AS fn, ${pick('last', 1.5)} AS ln FROM generate_series(1, ${n}) g, bench_words w) s, bench_words w;
COMMIT;`;
}

interface LoadStep {
  what: string;
  sql: string;
}

/**
 * The load of the logs and static shapes as two lanes of statements, one per connection (two cores). Primary keys are
 * built as unique indexes and attached after: ALTER TABLE ADD PRIMARY KEY would lock out the other lane's index build.
 */
function loadLanes(shape: 'logs' | 'static', rows: Record<string, number>): [LoadStep[], LoadStep[]] {
  const pk = (table: string) => ({ what: `${table} primary key`, sql: `CREATE UNIQUE INDEX ${table}_pkey ON ${table} (id)` });
  if (shape === 'logs') {
    return [
      [
        { what: `logs (${rows.logs} rows)`, sql: logsSql(rows.logs!) },
        pk('logs'),
        { what: 'logs level index', sql: 'CREATE INDEX logs_level ON logs (level)' },
      ],
      [
        // Starts once the other lane's loading transaction has committed the table.
        { what: 'logs time index', sql: 'CREATE INDEX logs_logged_at ON logs (logged_at)' },
        { what: 'logs source index', sql: 'CREATE INDEX logs_source_time ON logs (source, logged_at)' },
      ],
    ];
  }
  return [
    [
      { what: `ledger (${rows.ledger} rows)`, sql: ledgerSql(rows.ledger!) },
      pk('ledger'),
      { what: 'ledger account index', sql: 'CREATE INDEX ledger_account ON ledger (account_id, booked_on)' },
    ],
    [
      { what: `audit_log (${rows.audit_log} rows)`, sql: auditSql(rows.audit_log!) },
      { what: `catalog (${rows.catalog} rows)`, sql: catalogSql(rows.catalog!) },
      { what: `accounts (${rows.accounts} rows)`, sql: accountsSql(rows.accounts!) },
      pk('audit_log'),
      { what: 'audit_log object index', sql: 'CREATE INDEX audit_log_object ON audit_log (object_id)' },
      pk('catalog'),
      { what: 'catalog sku index', sql: 'CREATE UNIQUE INDEX catalog_sku ON catalog (sku)' },
      pk('accounts'),
      { what: 'accounts email index', sql: 'CREATE INDEX accounts_email ON accounts (email)' },
    ],
  ];
}

/** Tables of each shape, for attaching primary keys and the VACUUM FREEZE after the load. */
const SHAPE_TABLES: Record<ShapeName, string[]> = {
  logs: ['logs'],
  json: ['documents'],
  static: ['ledger', 'catalog', 'audit_log', 'accounts'],
};

export function shapeRows(shape: ShapeName, scale: number): Record<string, number> {
  const n = (base: number) => Math.max(1000, Math.round(base * scale));
  switch (shape) {
    case 'logs':
      return { logs: n(ROWS_PER_SCALE.logs) };
    case 'json':
      return { documents: n(ROWS_PER_SCALE.documents) };
    case 'static': {
      const rows = { ledger: n(ROWS_PER_SCALE.ledger), catalog: n(ROWS_PER_SCALE.catalog), audit_log: n(ROWS_PER_SCALE.audit_log) };
      const cold = rows.ledger + rows.catalog + rows.audit_log;
      // The hot table holds 5% of all rows: hot / (cold + hot) = 0.05.
      return { ...rows, accounts: Math.round(cold / 19) };
    }
  }
}

/**
 * Loads `shape` into `database` of a server started with LOAD_SETTINGS, two connections at a time where the shape
 * allows (the json shape's table has two partitions, each created and loaded in its own transaction).
 */
export async function loadShape(server: BenchServer, shape: ShapeName, scale: number, database = shape, log = console.error): Promise<ShapeInfo> {
  const started = Date.now();
  await server.query(`CREATE DATABASE ${database}`);
  await server.query(WORDS_SQL, database);
  await server.query(SHAPE_WORDS_SQL, database);
  await server.query(plainStorageSql('bench_words') + plainStorageSql('shape_words'), database);
  const rows = shapeRows(shape, scale);
  const exec = async (step: LoadStep) => {
    const t = Date.now();
    const client = await server.connect(database);
    try {
      await client.query(step.sql);
    } finally {
      await client.end();
    }
    log(`  ${shape}: ${step.what}: ${fmtSeconds((Date.now() - t) / 1000)}`);
  };
  if (shape === 'json') {
    const n = rows.documents!;
    const half = Math.floor(n / 2);
    await Promise.all([
      exec({ what: `documents 1..${half}`, sql: documentsSql(n, 1, half, 1) }),
      exec({ what: `documents ${half + 1}..${n}`, sql: documentsSql(n, half + 1, n, 2) }),
    ]);
    await exec({
      what: 'documents partitions attached, primary key, owner index',
      sql: `CREATE TABLE documents (LIKE documents_p1) PARTITION BY RANGE (id);
            ALTER TABLE documents ATTACH PARTITION documents_p1 FOR VALUES FROM (1) TO (${half + 1});
            ALTER TABLE documents ATTACH PARTITION documents_p2 FOR VALUES FROM (${half + 1}) TO (MAXVALUE);
            ALTER TABLE documents ADD PRIMARY KEY (id);
            CREATE INDEX documents_owner ON documents (owner_id);`,
    });
  } else {
    const [first, second] = loadLanes(shape, rows);
    await Promise.all([
      (async () => {
        for (const step of first) await exec(step);
      })(),
      (async () => {
        if (shape === 'logs') await waitForTable(server, database, 'logs');
        for (const step of second) await exec(step);
      })(),
    ]);
  }
  const names = SHAPE_TABLES[shape];
  if (shape !== 'json') await exec({ what: 'primary keys', sql: names.map((t) => `ALTER TABLE ${t} ADD PRIMARY KEY USING INDEX ${t}_pkey;`).join(' ') });
  // VACUUM FREEZE: the backups then see settled pages (hint bits set, frozen), as in a long-running database. One
  // statement each (VACUUM cannot share a query string), the first table in one lane, the rest in the other.
  const vacuum = (list: string[]) => async () => {
    for (const t of list) await exec({ what: `vacuum ${t}`, sql: `VACUUM (FREEZE, ANALYZE) ${t}` });
  };
  await Promise.all([vacuum(names.slice(0, 1))(), vacuum([...names.slice(1), 'bench_words', 'shape_words'])()]);
  await server.query('CHECKPOINT');
  const bytes = Number(await server.scalar(`SELECT pg_database_size('${database}')`));
  const tables = (
    await server.query<{ name: string; bytes: string; toast: string }>(
      `SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes,
              coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT IN ('bench_words', 'shape_words') ORDER BY 2 DESC`,
      database,
    )
  ).map((r) => ({ name: r.name, bytes: Number(r.bytes), toastBytes: Number(r.toast) }));
  const zstd3 = await measureRatio(server, database);
  return { shape, database, scale, rows, bytes, tables, loadSeconds: (Date.now() - started) / 1000, zstd3 };
}

async function waitForTable(server: BenchServer, database: string, table: string): Promise<void> {
  // The table becomes visible when the loading transaction commits.
  for (;;) {
    const found = await server.scalar(`SELECT count(*) FROM pg_class WHERE relname = '${table}'`, database);
    if (found !== '0') return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export interface UpdateResult {
  rows: number;
  seconds: number;
  /** WAL written by the update and the VACUUM after it. */
  walBytes: number;
}

/**
 * Updates `share` (0.05 or 0.01) of the rows the way the shape's table is written in real life (UPDATE_DESCRIPTIONS),
 * then VACUUMs what it touched and CHECKPOINTs. The VACUUM stands in for autovacuum, which the bench servers run
 * without: a background vacuum landing between one tool's backup and the other's would give them different data.
 */
export async function updateShape(server: BenchServer, shape: ShapeName, share: number, marker: string, round: number): Promise<UpdateResult> {
  const started = Date.now();
  const lsn0 = await server.scalar('SELECT pg_current_wal_lsn()::text');
  const client = await server.connect(shape);
  let rows = 0;
  try {
    const m = `'${marker}'`;
    if (shape === 'logs') {
      const max = Number((await client.query<{ m: string }>('SELECT max(id)::text AS m FROM logs')).rows[0]!.m);
      const r = await client.query(`UPDATE logs SET status = ${m} WHERE id > ${Math.floor(max * (1 - share))}`);
      rows = r.rowCount ?? 0;
      await client.query('VACUUM logs');
    } else if (shape === 'json') {
      const every = Math.round(1 / share);
      const r = await client.query(
        `UPDATE documents SET doc = jsonb_set(doc, '{status}', to_jsonb(${m}::text)), revision = revision + 1,
           updated_at = updated_at + interval '1 day' WHERE id % ${every} = ${round % every}`,
      );
      rows = r.rowCount ?? 0;
      await client.query('VACUUM documents');
    } else {
      const where = share >= 0.05 ? '' : `WHERE id % 5 = ${round % 5}`;
      const r = await client.query(
        `UPDATE accounts SET balance = balance + round(((id % 200) - 100)::numeric / 3, 2), status = ${m},
           revision = revision + 1, updated_at = updated_at + interval '1 hour' ${where}`,
      );
      rows = r.rowCount ?? 0;
      await client.query('VACUUM accounts');
    }
  } finally {
    await client.end();
  }
  await server.query('CHECKPOINT');
  const walBytes = Number(await server.scalar(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsn0}')::bigint`));
  return { rows, seconds: (Date.now() - started) / 1000, walBytes };
}

/**
 * One line that changes whenever the shape's rows do: row counts, and what the updates write (the status histogram
 * of the logs, the revisions and a sample of whole documents, the hot table's sums). A restored copy must give the same
 * line as the source at the time of its backup: a delta restore that kept a stale file does not.
 */
export const FINGERPRINT_SQL: Record<ShapeName, string> = {
  logs: `SELECT (SELECT count(*) FROM logs) || ' rows; ' || string_agg(status || '=' || n, ', ' ORDER BY status)
         FROM (SELECT status, count(*) AS n FROM logs GROUP BY status) s`,
  json: `SELECT count(*) || ' rows; revisions ' || sum(revision) || '; sample ' ||
           left(md5(string_agg(md5(doc::text), '' ORDER BY id) FILTER (WHERE id % 97 = 0)), 12) FROM documents`,
  static: `SELECT 'ledger ' || (SELECT count(*) FROM ledger) || ', catalog ' || (SELECT count(*) FROM catalog) ||
           ', audit_log ' || (SELECT count(*) FROM audit_log) || '; accounts ' || count(*) || ' rows, revisions ' ||
           sum(revision) || ', balance ' || sum(balance) || ', statuses ' || count(DISTINCT status) FROM accounts`,
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const scale = Number(value('--scale') ?? (argv.includes('--quick') ? 0.08 : 1));
  const shapes = (value('--shapes') ?? SHAPE_NAMES.join(',')).split(',') as ShapeName[];
  for (const shape of shapes) {
    const server = await BenchServer.create({ label: `shape-${shape}`, settings: LOAD_SETTINGS });
    await server.start();
    const info = await loadShape(server, shape, scale);
    const fingerprint = await server.scalar(FINGERPRINT_SQL[shape], shape);
    await server.stop();
    console.log(
      JSON.stringify(
        { ...info, size: fmtBytes(info.bytes), tables: info.tables.map((t) => `${t.name} ${fmtBytes(t.bytes)} (toast ${fmtBytes(t.toastBytes)})`), fingerprint },
        null,
        2,
      ),
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runWithCleanup(main);
}
