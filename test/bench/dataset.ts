import { execa } from 'execa';
import { pathToFileURL } from 'node:url';
import { runWithCleanup } from './lib/cleanup.js';
import { BenchServer } from './lib/pg.js';
import { fmtBytes, fmtSeconds } from './lib/report.js';

/**
 * The bench dataset: an orders/customers/events schema whose pages compress like a real application's
 * (names, emails, addresses from word lists, skewed picks, varied numerics, timestamps, JSON documents,
 * some free text, a few indexes), not pgbench's blank filler, which zstd squeezes ~50x and which would flatter
 * every tool's throughput. Generated entirely in SQL with generate_series and a fixed setseed(), so two runs
 * produce the same rows.
 *
 * The load runs with wal_level=minimal and CREATE TABLE in the same transaction as the INSERT, which skips
 * WAL for the bulk data: a 2 GB dataset then loads in minutes on 2 cores. The server is restarted with
 * wal_level=replica and archiving afterwards (see prepareForBackups).
 */

/** Rows per unit of scale; scale 1 gives a database of roughly 2.5 GB (calibrated on the bench machine). */
const ROWS_PER_SCALE = { customers: 600_000, orders: 1_600_000, events: 3_200_000 };

/** Settings for loading: no WAL for the bulk data, big checkpoints, memory for index builds. */
export const LOAD_SETTINGS: Record<string, string> = {
  wal_level: 'minimal',
  max_wal_senders: '0',
  archive_mode: 'off',
  fsync: 'on',
  shared_buffers: "'512MB'",
  maintenance_work_mem: "'512MB'",
  max_wal_size: "'4GB'",
  checkpoint_timeout: "'30min'",
  max_parallel_maintenance_workers: '1',
};

export const WORDS_SQL = String.raw`
CREATE TABLE bench_words AS SELECT
  ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth','William','Barbara',
        'Richard','Susan','Joseph','Jessica','Thomas','Sarah','Charles','Karen','Christopher','Lisa','Daniel','Nancy',
        'Matthew','Betty','Anthony','Margaret','Mark','Sandra','Donald','Ashley','Steven','Kimberly','Paul','Emily',
        'Andrew','Donna','Joshua','Michelle','Kenneth','Carol','Kevin','Amanda','Brian','Dorothy','George','Melissa',
        'Timothy','Deborah','Ronald','Stephanie','Edward','Rebecca','Jason','Sharon','Jeffrey','Laura','Ryan','Cynthia',
        'Lukas','Sofia','Mateo','Amelie','Noah','Emma','Luca','Mia','Jonas','Hannah','Yuki','Hiro','Aarav','Priya',
        'Chen','Wei','Olga','Ivan','Fatima','Omar']::text[] AS first,
  ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez','Hernandez',
        'Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin','Lee','Perez','Thompson',
        'White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young','Allen','King','Wright',
        'Scott','Torres','Nguyen','Hill','Flores','Green','Adams','Nelson','Baker','Hall','Rivera','Campbell',
        'Mitchell','Carter','Roberts','Mueller','Schmidt','Schneider','Fischer','Weber','Meyer','Wagner','Becker',
        'Rossi','Russo','Ferrari','Esposito','Bianchi','Dubois','Lefebvre','Moreau','Laurent','Tanaka','Suzuki',
        'Kowalski','Nowak','Ivanov','Petrov','Kumar','Singh','Wang','Li','Zhang','Silva','Santos']::text[] AS last,
  ARRAY['gmail.com','yahoo.com','outlook.com','hotmail.com','icloud.com','proton.me','gmx.de','web.de','orange.fr',
        'example.com','mail.ru','yandex.ru','qq.com','aol.com','fastmail.com']::text[] AS domains,
  ARRAY['Oak','Maple','Cedar','Pine','Elm','Washington','Lake','Hill','Main','Park','Church','High','Station','Mill',
        'River','Spring','Meadow','Forest','Sunset','Highland','Victoria','King','Queen','Bridge','Market','School',
        'North','South','West','East','Garden','Orchard','Willow','Chestnut','Birch','Harbor','Valley','Ridge']::text[] AS streets,
  ARRAY['Street','Avenue','Road','Lane','Drive','Way','Court','Place','Boulevard','Terrace']::text[] AS street_kinds,
  ARRAY['London','Paris','Berlin','Madrid','Rome','Amsterdam','Vienna','Prague','Warsaw','Lisbon','Dublin','Brussels',
        'Munich','Hamburg','Milan','Barcelona','Lyon','Zurich','Geneva','Oslo','Stockholm','Copenhagen','Helsinki',
        'New York','Chicago','Boston','Seattle','Austin','Denver','Toronto','Montreal','Vancouver','Sydney',
        'Melbourne','Tokyo','Osaka','Seoul','Singapore','Mumbai','Sao Paulo']::text[] AS cities,
  ARRAY['GB','FR','DE','ES','IT','NL','AT','CZ','PL','PT','IE','BE','CH','NO','SE','DK','FI','US','CA','AU','JP',
        'KR','SG','IN','BR']::text[] AS countries,
  ARRAY['vip','newsletter','wholesale','returning','churn-risk','b2b','student','employee','beta','gift',
        'mobile','desktop','promo-2023','promo-2024','referral','loyalty-gold','loyalty-silver','eu','us','apac']::text[] AS tags,
  ARRAY['Classic','Organic','Premium','Compact','Wireless','Vintage','Smart','Eco','Deluxe','Portable','Ergonomic',
        'Handmade','Stainless','Bamboo','Cotton','Leather','Ceramic','Digital','Outdoor','Mini']::text[] AS adjectives,
  ARRAY['Mug','Backpack','Lamp','Headphones','Notebook','Chair','Desk','Kettle','Blender','Jacket','Sneakers',
        'Watch','Wallet','Pillow','Blanket','Speaker','Charger','Bottle','Tent','Camera','Keyboard','Mouse',
        'Monitor','Candle','Teapot','Scarf','Umbrella','Sunglasses','Plant Pot','Cutting Board']::text[] AS nouns,
  ARRAY['the','and','to','of','a','in','is','for','that','it','on','with','as','was','be','this','please','order',
        'delivery','package','door','leave','call','before','after','gift','wrap','thanks','customer','address',
        'arrived','late','damaged','box','replace','refund','size','color','wrong','item','missing','return',
        'label','courier','tracking','number','week','monday','friday','weekend','morning','evening','office',
        'reception','neighbour','ring','bell','twice','fragile','handle','care','birthday','present','note',
        'include','invoice','company','vat','discount','code','applied','price','changed','support','ticket',
        'resolved','escalated','priority','express','standard','shipping','warehouse','stock','backorder',
        'expected','soon','sorry','delay','great','quality','product','again','would','recommend','friends',
        'not','very','happy','with','service','fast','slow','response','email','phone','chat','agent','helpful',
        'could','you','send','new','one','instead','of','the','old','broken','part','screen','battery','cable',
        'charger','lid','handle','zip','strap','button','light','sound','noise','smell','fabric','stitching']::text[] AS vocab,
  ARRAY['page_view','search','add_to_cart','remove_from_cart','checkout_start','checkout_complete','login',
        'logout','signup','review_posted','wishlist_add','coupon_applied','support_chat','email_open']::text[] AS kinds,
  ARRAY['home','search','product','category','cart','checkout','account','orders','wishlist','help','blog',
        'deals','new','brands','gift-cards','returns','shipping','contact','about','careers']::text[] AS paths,
  ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15',
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
        'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36',
        'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0',
        'okhttp/4.12.0','ShopApp/5.3.1 (iOS 17.2; iPhone15,2)','ShopApp/5.3.0 (Android 14; SM-S918B)']::text[] AS agents,
  ARRAY['pending','paid','shipped','delivered','delivered','delivered','cancelled','refunded']::text[] AS statuses,
  ARRAY['EUR','EUR','EUR','USD','USD','GBP','CHF','SEK','JPY']::text[] AS currencies;
`;

// pick(arr, skew): an element of w.<arr>, favouring the first ones when skew > 1 (Zipf-like, as real data is).
export function pick(array: string, skew = 1): string {
  const r = skew === 1 ? 'random()' : `power(random(), ${skew})`;
  return `w.${array}[1 + floor(${r} * array_length(w.${array}, 1))::int]`;
}

function customersSql(n: number): string {
  return `
BEGIN;
SELECT setseed(0.11);
CREATE TABLE customers (
  id bigint NOT NULL, first_name text NOT NULL, last_name text NOT NULL, email text NOT NULL, phone text,
  street text, city text, postcode text, country char(2), created_at timestamptz NOT NULL, birth_date date,
  balance numeric(12,2), loyalty_points int, tags text[], marketing_opt_in boolean, password_hash text
);
INSERT INTO customers
SELECT g, fn, ln,
  lower(fn || CASE WHEN g % 3 = 0 THEN '_' ELSE '.' END || ln || g::text) || '@' || dom,
  '+' || (1 + floor(random() * 98))::int || ' ' || lpad(floor(random() * 1e9)::bigint::text, 9, '0'),
  (1 + floor(random() * 400))::int || ' ' || street,
  city, lpad(floor(random() * 99999)::int::text, 5, '0'), country,
  timestamptz '2015-01-01 00:00:00+00' + (g::float8 / ${n}) * interval '3200 days' + random() * interval '2 days',
  date '1945-01-01' + floor(random() * 22000)::int,
  round((random() * random() * 5000)::numeric, 2),
  floor(random() * random() * 20000)::int,
  tags, random() < 0.4,
  -- a bcrypt-shaped hash: incompressible bytes, as real credential columns are
  '$2b$12$' || rtrim(encode(decode(md5(random()::text) || md5(random()::text), 'hex'), 'base64'), '=')
FROM (
  SELECT g, ${pick('first', 1.5)} AS fn, ${pick('last', 1.5)} AS ln, ${pick('domains', 2)} AS dom,
    ${pick('streets')} || ' ' || ${pick('street_kinds', 2)} AS street, ${pick('cities', 1.7)} AS city,
    ${pick('countries', 1.7)} AS country,
    ARRAY(SELECT ${pick('tags', 2)} FROM generate_series(1, g % 4)) AS tags
  FROM generate_series(1, ${n}) g, bench_words w
) s;
COMMIT;`;
}

function ordersSql(n: number, customers: number): string {
  return `
BEGIN;
SELECT setseed(0.22);
CREATE TABLE orders (
  id bigint NOT NULL, customer_id bigint NOT NULL, ordered_at timestamptz NOT NULL, status text NOT NULL,
  currency char(3) NOT NULL, subtotal numeric(12,2), tax numeric(12,2), shipping numeric(10,2), total numeric(12,2),
  items jsonb NOT NULL, shipping_address text, note text, tracking_number text
);
INSERT INTO orders
SELECT g, cust, ordered_at, status, currency, subtotal, round(subtotal * 0.19, 2), shipping,
  subtotal + round(subtotal * 0.19, 2) + shipping, items, addr, note,
  CASE WHEN status IN ('shipped', 'delivered') THEN upper(substr(md5(random()::text), 1, 18)) END
FROM (
  SELECT g,
    1 + floor(power(random(), 1.6) * ${customers})::bigint AS cust,
    timestamptz '2019-01-01 00:00:00+00' + (g::float8 / ${n}) * interval '1800 days' + random() * interval '6 hours' AS ordered_at,
    ${pick('statuses')} AS status, ${pick('currencies')} AS currency,
    round((5 + random() * random() * 900)::numeric, 2) AS subtotal,
    (ARRAY[0, 0, 4.99, 9.99, 14.5])[1 + floor(random() * 5)::int]::numeric(10,2) AS shipping,
    (SELECT jsonb_agg(jsonb_build_object(
        'line', i,
        'sku', 'SKU-' || lpad((1 + floor(power(random(), 2) * 50000))::int::text, 6, '0'),
        'name', ${pick('adjectives', 1.3)} || ' ' || ${pick('nouns', 1.3)},
        'qty', 1 + floor(power(random(), 3) * 6)::int,
        'unit_price', round((2 + random() * 300)::numeric, 2)))
     FROM generate_series(1, 1 + g % 4) i) AS items,
    (1 + floor(random() * 400))::int || ' ' || ${pick('streets')} || ' ' || ${pick('street_kinds', 2)} || ', '
      || lpad(floor(random() * 99999)::int::text, 5, '0') || ' ' || ${pick('cities', 1.7)} AS addr,
    CASE WHEN g % 4 = 0 THEN
      array_to_string(ARRAY(SELECT ${pick('vocab', 1.8)} FROM generate_series(1, 6 + g % 23)), ' ')
    END AS note
  FROM generate_series(1, ${n}) g, bench_words w
) s;
COMMIT;`;
}

function eventsSql(n: number, customers: number): string {
  return `
BEGIN;
SELECT setseed(0.33);
CREATE TABLE events (
  id bigint NOT NULL, customer_id bigint, occurred_at timestamptz NOT NULL, kind text NOT NULL, session_id uuid,
  request_id uuid NOT NULL, client_ip inet, user_agent text, path text, payload jsonb
);
INSERT INTO events
SELECT g,
  CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + floor(power(random(), 1.6) * ${customers})::bigint END,
  timestamptz '2023-01-01 00:00:00+00' + (g::float8 / ${n}) * interval '365 days' + random() * interval '90 seconds',
  kind, md5('session' || (g / 17)::text)::uuid, md5(random()::text)::uuid,
  ('10.' || (g / 17 % 250)::text || '.' || floor(random() * 250)::int || '.' || (1 + g / 17 % 250)::text)::inet,
  agent, '/' || path || CASE WHEN path IN ('product', 'category', 'orders') THEN '/' || floor(power(random(), 2) * 50000)::int ELSE '' END,
  jsonb_build_object(
    'ref', ${pick('paths', 1.5)},
    'duration_ms', floor(power(random(), 3) * 8000)::int,
    'screen', (ARRAY['1920x1080', '1366x768', '390x844', '1440x900', '2560x1440'])[1 + floor(random() * 5)::int],
    'lang', (ARRAY['en-US', 'en-GB', 'de-DE', 'fr-FR', 'es-ES', 'ja-JP'])[1 + floor(power(random(), 2) * 6)::int],
    'cart_items', floor(power(random(), 2) * 8)::int,
    'experiment', CASE WHEN g % 3 = 0 THEN 'checkout-v' || (g % 4)::text END,
    'query', CASE WHEN kind = 'search' THEN ${pick('adjectives', 1.3)} || ' ' || ${pick('nouns', 1.3)} END)
FROM (
  SELECT g, ${pick('kinds', 2.2)} AS kind, ${pick('agents', 1.6)} AS agent, ${pick('paths', 1.8)} AS path
  FROM generate_series(1, ${n}) g, bench_words w
) s, bench_words w;
COMMIT;`;
}

const INDEX_SQL = {
  customers: `ALTER TABLE customers ADD PRIMARY KEY (id); CREATE INDEX customers_email ON customers (email);`,
  orders: `ALTER TABLE orders ADD PRIMARY KEY (id); CREATE INDEX orders_customer ON orders (customer_id);
           CREATE INDEX orders_ordered_at ON orders (ordered_at);`,
  events: `ALTER TABLE events ADD PRIMARY KEY (id); CREATE INDEX events_occurred_at ON events (occurred_at);`,
};

export interface DatasetInfo {
  database: string;
  scale: number;
  rows: { customers: number; orders: number; events: number };
  /** pg_database_size after the load, indexes and VACUUM. */
  bytes: number;
  loadSeconds: number;
  tables: { name: string; bytes: number }[];
}

/**
 * Loads the dataset into `database` of a server started with LOAD_SETTINGS. Two connections work in parallel
 * (2 cores): one loads customers then events, the other orders; then each builds its indexes and VACUUM
 * FREEZEs (so the backup sees settled pages, hint bits set, as in a long-running database).
 */
export async function loadDataset(server: BenchServer, scale: number, database = 'bench', log = console.error): Promise<DatasetInfo> {
  const started = Date.now();
  await server.query(`CREATE DATABASE ${database}`);
  await server.query(WORDS_SQL, database);
  const rows = {
    customers: Math.max(1000, Math.round(ROWS_PER_SCALE.customers * scale)),
    orders: Math.max(1000, Math.round(ROWS_PER_SCALE.orders * scale)),
    events: Math.max(1000, Math.round(ROWS_PER_SCALE.events * scale)),
  };
  const exec = async (sql: string, what: string) => {
    const t = Date.now();
    const client = await server.connect(database);
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
    log(`  ${what}: ${fmtSeconds((Date.now() - t) / 1000)}`);
  };
  await Promise.all([
    (async () => {
      await exec(customersSql(rows.customers), `customers (${rows.customers} rows)`);
      await exec(eventsSql(rows.events, rows.customers), `events (${rows.events} rows)`);
      await exec(INDEX_SQL.customers, 'customers indexes');
      await exec(INDEX_SQL.events, 'events indexes');
      await exec('VACUUM (FREEZE, ANALYZE) customers', 'vacuum customers');
      await exec('VACUUM (FREEZE, ANALYZE) events', 'vacuum events');
    })(),
    (async () => {
      await exec(ordersSql(rows.orders, rows.customers), `orders (${rows.orders} rows)`);
      await exec(INDEX_SQL.orders, 'orders indexes');
      await exec('VACUUM (FREEZE, ANALYZE) orders', 'vacuum orders');
      await exec('VACUUM (FREEZE, ANALYZE) bench_words', 'vacuum bench_words');
    })(),
  ]);
  await server.query('CHECKPOINT');
  const bytes = Number(await server.scalar(`SELECT pg_database_size('${database}')`));
  const tables = (
    await server.query<{ name: string; bytes: string }>(
      `SELECT relname AS name, pg_total_relation_size(oid) AS bytes FROM pg_class
       WHERE relname IN ('customers','orders','events') ORDER BY 2 DESC`,
      database,
    )
  ).map((r) => ({ name: r.name, bytes: Number(r.bytes) }));
  return { database, scale, rows, bytes, loadSeconds: (Date.now() - started) / 1000, tables };
}

/** The directory of the database's relation files, relative to PGDATA (base/<oid>). */
export async function databaseDir(server: BenchServer, database: string): Promise<string> {
  const oid = await server.scalar(`SELECT oid FROM pg_database WHERE datname = '${database}'`);
  return `base/${oid}`;
}

export interface RatioInfo {
  rawBytes: number;
  zstdBytes: number;
  ratio: number;
}

/** How well the database's files compress with zstd -3 (tar | zstd -3 -T2 | wc -c), the level both tools use. */
export async function measureRatio(server: BenchServer, database: string): Promise<RatioInfo> {
  const dir = await databaseDir(server, database);
  const raw = await execa('sh', ['-c', `tar -C '${server.pgdata}' -cf - '${dir}' | wc -c`]);
  const z = await execa('sh', ['-c', `tar -C '${server.pgdata}' -cf - '${dir}' | zstd -3 -T2 -q -c | wc -c`]);
  const rawBytes = Number(raw.stdout.trim());
  const zstdBytes = Number(z.stdout.trim());
  return { rawBytes, zstdBytes, ratio: rawBytes / zstdBytes };
}

/** Switches a loaded server to what backups and WAL archiving need; archive_command is set per phase later. */
export const ARCHIVE_SETTINGS: Record<string, string> = {
  wal_level: 'replica',
  max_wal_senders: '10',
  archive_mode: 'on',
  archive_command: "'/bin/true'",
  archive_timeout: '0',
  max_wal_size: "'1GB'",
  wal_compression: 'off',
};

export function parseScale(argv: string[]): number {
  const i = argv.indexOf('--scale');
  if (i >= 0) return Number(argv[i + 1]);
  return argv.includes('--quick') ? 0.08 : 1;
}

async function main(): Promise<void> {
  const scale = parseScale(process.argv);
  const server = await BenchServer.create({ label: 'dataset', settings: LOAD_SETTINGS });
  await server.start();
  console.error(`loading dataset at scale ${scale} into ${server.pgdata} (port ${server.port})`);
  const info = await loadDataset(server, scale);
  const ratio = await measureRatio(server, info.database);
  await server.stop();
  console.log(
    JSON.stringify(
      { ...info, size: fmtBytes(info.bytes), zstd3: { ...ratio, ratio: Number(ratio.ratio.toFixed(2)) } },
      null,
      2,
    ),
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await runWithCleanup(main);
}
