// The site's process time zone must not move a value: every value here is read and written in a
// zone that is neither UTC nor a whole-hour offset in 1901 (Buenos Aires kept local mean time then).
process.env.TZ = 'America/Argentina/Buenos_Aires';

import { describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import type { HashingFileInput } from '@sitesync/protocol';
import { toWireValues } from '@sitesync/protocol';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, mysqlUrl, postgresUrl } from '../support/services.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping value round trips: no RabbitMQ available');

const KINDS: DbKind[] = [
  'sqlite',
  ...(postgresUrl() ? (['postgres'] as const) : []),
  ...(mysqlUrl() ? (['mysql'] as const) : []),
];
/** Every site dialect available to every central dialect available (SQL Server: see dialect.test.ts). */
const PAIRS = KINDS.flatMap((site) => KINDS.map((central) => [site, central] as const));

const SITE_ID = 101;
const MB_TEXT = 'añ€😀'.repeat(1 << 16) + 'x'.repeat(1_048_576 - 4 * (1 << 16)); // > 1 MB of UTF-8, > 64 KB

/** How a column's value is compared: each form a driver may give is reduced to one text, exactly. */
type Kind =
  'int' | 'float' | 'decimal' | 'text' | 'date' | 'time' | 'timestamp' | 'instant' | 'binary' | 'bool' | 'uuid';

interface Col {
  name: string;
  kind: Kind;
  /** Column type per site dialect; absent: the dialect has no such column. */
  ddl: Partial<Record<DbKind, string>>;
  /** SQL literal per dialect (default: the value as a string literal). */
  literal?: (v: string, d: DbKind) => string;
}

const hex = (v: string, d: DbKind) => (d === 'postgres' ? `'\\x${v}'::bytea` : `X'${v}'`);
const bool = (v: string, d: DbKind) => (d === 'postgres' ? v : v === 'true' ? '1' : '0');
const num = (v: string) => v;

const COLUMNS: Col[] = [
  { name: 'id', kind: 'int', ddl: { sqlite: 'INTEGER', postgres: 'BIGINT', mysql: 'BIGINT' }, literal: num },
  { name: 'big', kind: 'int', ddl: { sqlite: 'BIGINT', postgres: 'BIGINT', mysql: 'BIGINT' }, literal: num },
  {
    name: 'dbl',
    kind: 'float',
    ddl: { sqlite: 'DOUBLE', postgres: 'DOUBLE PRECISION', mysql: 'DOUBLE' },
    literal: num,
  },
  { name: 'dec', kind: 'decimal', ddl: { postgres: 'NUMERIC(30, 10)', mysql: 'DECIMAL(30, 10)' }, literal: num },
  { name: 'txt', kind: 'text', ddl: { sqlite: 'TEXT', postgres: 'TEXT', mysql: 'LONGTEXT' } },
  { name: 'note', kind: 'text', ddl: { sqlite: 'VARCHAR(20)', postgres: 'VARCHAR(20)', mysql: 'VARCHAR(20)' } },
  { name: 'd', kind: 'date', ddl: { sqlite: 'DATE', postgres: 'DATE', mysql: 'DATE' } },
  { name: 'ts', kind: 'timestamp', ddl: { sqlite: 'DATETIME', postgres: 'TIMESTAMP(3)', mysql: 'DATETIME(3)' } },
  { name: 'tm', kind: 'time', ddl: { postgres: 'TIME(3)', mysql: 'TIME(3)' } },
  { name: 'tstz', kind: 'instant', ddl: { postgres: 'TIMESTAMPTZ(3)' } },
  { name: 'bin', kind: 'binary', ddl: { sqlite: 'BLOB', postgres: 'BYTEA', mysql: 'LONGBLOB' }, literal: hex },
  { name: 'flag', kind: 'bool', ddl: { sqlite: 'BOOLEAN', postgres: 'BOOLEAN', mysql: 'TINYINT(1)' }, literal: bool },
  { name: 'u', kind: 'uuid', ddl: { postgres: 'UUID' } },
];

/** The hard values, as text (null: SQL NULL). `txt` of the first row is bound as a parameter (1 MB). */
const ROWS: Array<Record<string, string | null>> = [
  {
    id: '1',
    big: '9007199254740993',
    dbl: '0.30000000000000004',
    dec: '12345678901234567890.0123456789',
    txt: MB_TEXT,
    note: '',
    d: '1901-12-13',
    ts: '1901-12-13 23:59:59.123',
    tm: '23:59:59.123',
    tstz: '1901-12-13 23:59:59.123+00',
    bin: '00010000ff',
    flag: 'true',
    u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  },
  {
    id: '2',
    big: '-9007199254740993',
    dbl: '-1.5e-7',
    dec: '-0.0000000001',
    txt: 'emoji 😀👩‍👩‍👧 e\u0301 cafe\u0301 שלום עולם مرحبا',
    note: null,
    d: '2999-12-31',
    ts: '2999-12-31 23:59:59.123',
    tm: '00:00:00.001',
    tstz: '2999-12-31 23:59:59.123+00',
    bin: '000000',
    flag: 'false',
    u: null,
  },
  { id: '9223372036854775807', big: '9223372036854775807', txt: 'max', note: 'x' },
  { id: '-9223372036854775808', big: '-9223372036854775808', txt: 'min', note: null },
];

/** A value in one text form, whatever form a driver or the wire gave it in (null stays null). */
function norm(kind: Kind, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = typeof v === 'string' ? v : String(v);
  switch (kind) {
    case 'int':
      return s;
    case 'float':
      return typeof v === 'number' ? String(v) : s;
    case 'decimal':
      return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
    case 'date': {
      const m = /^(\d{4}-\d\d-\d\d)(?:T00:00:00(?:\.0+)?Z)?$/.exec(s);
      return m ? m[1]! : s;
    }
    case 'timestamp':
    case 'time': {
      const m = /^(?:1970-01-01T)?(\d{4}-\d\d-\d\d[T ])?(\d\d:\d\d:\d\d)(\.\d*?)?0*Z?$/.exec(s);
      return m ? `${(m[1] ?? '').replace('T', ' ')}${m[2]}${m[3] === '.' ? '' : (m[3] ?? '')}` : s;
    }
    case 'instant':
      return new Date(s.replace(' ', 'T').replace(/\+00$/, 'Z')).toISOString();
    case 'binary':
      return s.startsWith('base64:') ? Buffer.from(s.slice(7), 'base64').toString('hex') : s;
    case 'bool':
      return String(v === true || v === 1 || v === '1' || v === 'true');
    case 'uuid':
      return s.toLowerCase();
    default:
      return s;
  }
}

function columnsOf(site: DbKind): Col[] {
  return COLUMNS.filter((c) => c.ddl[site]);
}

async function createSiteTables(db: Database, kind: DbKind): Promise<void> {
  const q = (s: string) => db.dialect.quote(s);
  const cols = columnsOf(kind);
  await db.query(
    `CREATE TABLE vals_h (${cols.map((c) => `${q(c.name)} ${c.ddl[kind]}${c.name === 'id' ? ' NOT NULL PRIMARY KEY' : ''}`).join(', ')})`,
  );
  const bigint = kind === 'sqlite' ? 'INTEGER' : 'BIGINT';
  await db.query(
    `CREATE TABLE vals_d (${q('id')} ${bigint} NOT NULL, line ${bigint} NOT NULL, val ${cols.find((c) => c.name === 'txt')!.ddl[kind]}, PRIMARY KEY (${q('id')}, line))`,
  );
}

async function insertRow(db: Database, kind: DbKind, row: Record<string, string | null>): Promise<void> {
  const q = (s: string) => db.dialect.quote(s);
  const cols = columnsOf(kind).filter((c) => row[c.name] !== undefined);
  const params: unknown[] = [];
  const values = cols.map((c) => {
    const v = row[c.name]!;
    if (v === null) return 'NULL';
    if (c.literal) return c.literal(v, kind);
    params.push(v);
    return '?';
  });
  await db.query(`INSERT INTO vals_h (${cols.map((c) => q(c.name)).join(', ')}) VALUES (${values.join(', ')})`, params);
  // Two lines per header: their join column carries the header's key, the largest integers included.
  await db.query(`INSERT INTO vals_d (${q('id')}, line, val) VALUES (${row.id}, 1, ?), (${row.id}, 2, NULL)`, [
    `line of ${row.id}`,
  ]);
}

/** The rows of a table read back as text per column, keyed by id (`scope`: the central's site column). */
async function readBack(db: Database, table: string, cols: Col[], scoped: boolean): Promise<Map<string, string[]>> {
  const q = (s: string) => db.dialect.quote(s);
  const names = cols.map((c) => c.name);
  const rows = await db.queryArrays(
    `SELECT ${names.map(q).join(', ')} FROM ${q(table)}${scoped ? ` WHERE ${q('id_efector')} = ?` : ''}`,
    scoped ? [SITE_ID] : [],
    names,
  );
  const out = new Map<string, string[]>();
  for (const r of rows) {
    const wire = toWireValues(r);
    out.set(
      String(wire[0]),
      cols.map((c, i) => `${c.name}=${norm(c.kind, wire[i])}`),
    );
  }
  return out;
}

function expected(cols: Col[], rows = ROWS): Map<string, string[]> {
  return new Map(
    rows.map((r) => [r.id!, cols.map((c) => `${c.name}=${norm(c.kind, r[c.name] === undefined ? null : r[c.name])}`)]),
  );
}

function pipeline(): HashingFileInput {
  return { name: 'vals', baseEntity: 'vals_h', linkEntities: [{ entity: 'vals_d', join: { id: 'id' } }] };
}

/** The central's column types, from its catalogue. */
async function centralTypes(db: Database, table: string): Promise<Record<string, string>> {
  const sql =
    db.dialect.name === 'postgres'
      ? `SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?`
      : `SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`;
  const rows = await db.query<Record<string, string>>(sql, [table]);
  return Object.fromEntries(rows.map((r) => [r.c ?? r.C ?? r.COLUMN_NAME, (r.t ?? r.T ?? r.DATA_TYPE)!.toLowerCase()]));
}

describe.skipIf(!broker)('values survive a sync exactly', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('the test process runs in a non-UTC zone', () => {
    expect(new Date('1901-12-13T23:59:59.123Z').getTimezoneOffset()).not.toBe(0);
    expect(new Date('2024-06-01T00:00:00Z').getTimezoneOffset()).toBe(180);
  });

  it.each(PAIRS)('from a %s site to a %s central, and after a change', async (siteKind, centralKind) => {
    const central = await world.startCentral(world.dbUrl(centralKind, 'central'));
    const cdb = central.database!;
    await world.registerSite(cdb, SITE_ID, { pipeline: 'vals', header: 'c_vals_h', detail: 'c_vals_d' });
    const siteUrl = world.dbUrl(siteKind, 'site');
    const sdb = await world.open(siteUrl, 'site');
    await createSiteTables(sdb, siteKind);
    for (const r of ROWS) await insertRow(sdb, siteKind, r);
    const site = await world.startSite(world.siteConfig(SITE_ID, siteUrl, { pipelines: [pipeline()] }));

    const cols = columnsOf(siteKind);
    const lineCols: Col[] = [
      COLUMNS[0]!,
      { name: 'line', kind: 'int', ddl: {} },
      { name: 'val', kind: 'text', ddl: {} },
    ];
    const check = async (rows: typeof ROWS) => {
      // what the site holds is what was written, and the central holds exactly that
      expect(await readBack(sdb, 'vals_h', cols, false)).toEqual(expected(cols, rows));
      expect(await readBack(cdb, 'c_vals_h', cols, true)).toEqual(expected(cols, rows));
      expect(await readBack(cdb, 'c_vals_d', lineCols, true)).toEqual(await readBack(sdb, 'vals_d', lineCols, false));
    };

    const first = await site.runSession();
    expect(first.error).toBeUndefined();
    expect(first.status).toBe('ok');
    await check(ROWS);

    // A change at the site is sent once, the rest stays acknowledged.
    const q = (s: string) => sdb.dialect.quote(s);
    await sdb.query(
      `UPDATE vals_h SET ${q('big')} = 9007199254740995, ${q('ts')} = '1969-12-31 23:59:59.999' WHERE ${q('id')} = 1`,
    );
    const second = await site.runSession();
    expect(second.status).toBe('ok');
    expect(second.totals).toMatchObject({ headers: 1, deletions: 0 });
    const changed = ROWS.map((r) =>
      r.id === '1' ? { ...r, big: '9007199254740995', ts: '1969-12-31 23:59:59.999' } : r,
    );
    await check(changed);
    expect((await site.runSession()).totals).toMatchObject({ headers: 0, deletions: 0 });

    // A deleted header keyed by the largest int64 is deleted centrally, and nothing else is.
    await sdb.query(`DELETE FROM vals_d WHERE ${q('id')} = 9223372036854775807`);
    await sdb.query(`DELETE FROM vals_h WHERE ${q('id')} = 9223372036854775807`);
    const third = await site.runSession();
    expect(third.totals).toMatchObject({ headers: 0, deletions: 1 });
    await check(changed.filter((r) => r.id !== '9223372036854775807'));

    // The central's columns are the site's types, widened, never narrowed.
    if (centralKind !== 'sqlite') {
      const types = await centralTypes(cdb, 'c_vals_h');
      expect(types.dbl).toBe(centralKind === 'postgres' ? 'double precision' : 'double');
      expect(types.d).toBe('date');
      expect(types.ts).toBe(centralKind === 'postgres' ? 'timestamp without time zone' : 'datetime');
      expect(types.big).toBe('bigint');
      if (centralKind === 'mysql') expect(types.txt).toBe('longtext');
    }
  });
});
