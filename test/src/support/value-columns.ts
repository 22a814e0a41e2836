import type { Database } from '@sitesync/db';
import type { HashingFileInput } from '@sitesync/protocol';
import { toWireValues } from '@sitesync/protocol';
import type { DbKind } from './harness.js';
import { localDbKinds, mssqlUrl } from './services.js';

/**
 * A site table with one column of every kind of value, on each site dialect, and how to write its
 * rows and read them back (site or central) as exact text: what the value round-trip tests share.
 */

export const SITE_ID = 101;

/**
 * The dialects a value test can run on here: SQLite always, PostgreSQL and MariaDB when they answer,
 * SQL Server when SITESYNC_TEST_MSSQL_URL is set or Docker can start one (global-setup says why not).
 */
export const VALUE_DB_KINDS: DbKind[] = [...localDbKinds(), ...(mssqlUrl() ? (['mssql'] as const) : [])];

/** How a column's value is compared: each form a driver may give is reduced to one text, exactly. */
export type Kind =
  'int' | 'float' | 'decimal' | 'text' | 'date' | 'time' | 'timestamp' | 'instant' | 'binary' | 'bool' | 'uuid';

export interface Col {
  name: string;
  kind: Kind;
  /** Column type per site dialect; absent: the dialect has no such column. */
  ddl: Partial<Record<DbKind, string>>;
  /** SQL literal per dialect (default: the value as a string literal). */
  literal?: (v: string, d: DbKind) => string;
}

const hex = (v: string, d: DbKind) => (d === 'postgres' ? `'\\x${v}'::bytea` : d === 'mssql' ? `0x${v}` : `X'${v}'`);
const bool = (v: string, d: DbKind) => (d === 'postgres' ? v : v === 'true' ? '1' : '0');
const num = (v: string) => v;
/** An instant as a literal: SQL Server wants its offset as `+hh:mm`. */
const instant = (v: string, d: DbKind) => `'${d === 'mssql' ? v.replace(/([+-]\d\d)$/, '$1:00') : v}'`;

export const COLUMNS: Col[] = [
  {
    name: 'id',
    kind: 'int',
    ddl: { sqlite: 'INTEGER', postgres: 'BIGINT', mysql: 'BIGINT', mssql: 'BIGINT' },
    literal: num,
  },
  {
    name: 'big',
    kind: 'int',
    ddl: { sqlite: 'BIGINT', postgres: 'BIGINT', mysql: 'BIGINT', mssql: 'BIGINT' },
    literal: num,
  },
  {
    name: 'dbl',
    kind: 'float',
    ddl: { sqlite: 'DOUBLE', postgres: 'DOUBLE PRECISION', mysql: 'DOUBLE', mssql: 'FLOAT(53)' },
    literal: num,
  },
  {
    name: 'dec',
    kind: 'decimal',
    ddl: { postgres: 'NUMERIC(30, 10)', mysql: 'DECIMAL(30, 10)', mssql: 'DECIMAL(30, 10)' },
    literal: num,
  },
  { name: 'txt', kind: 'text', ddl: { sqlite: 'TEXT', postgres: 'TEXT', mysql: 'LONGTEXT', mssql: 'NVARCHAR(MAX)' } },
  {
    name: 'note',
    kind: 'text',
    ddl: { sqlite: 'VARCHAR(20)', postgres: 'VARCHAR(20)', mysql: 'VARCHAR(20)', mssql: 'NVARCHAR(20)' },
  },
  { name: 'd', kind: 'date', ddl: { sqlite: 'DATE', postgres: 'DATE', mysql: 'DATE', mssql: 'DATE' } },
  {
    name: 'ts',
    kind: 'timestamp',
    ddl: { sqlite: 'DATETIME', postgres: 'TIMESTAMP(6)', mysql: 'DATETIME(6)', mssql: 'DATETIME2(7)' },
  },
  { name: 'tm', kind: 'time', ddl: { postgres: 'TIME(6)', mysql: 'TIME(6)', mssql: 'TIME(7)' } },
  { name: 'tstz', kind: 'instant', ddl: { postgres: 'TIMESTAMPTZ(6)', mssql: 'DATETIMEOFFSET(7)' }, literal: instant },
  {
    name: 'bin',
    kind: 'binary',
    ddl: { sqlite: 'BLOB', postgres: 'BYTEA', mysql: 'LONGBLOB', mssql: 'VARBINARY(MAX)' },
    literal: hex,
  },
  {
    name: 'flag',
    kind: 'bool',
    ddl: { sqlite: 'BOOLEAN', postgres: 'BOOLEAN', mysql: 'TINYINT(1)', mssql: 'BIT' },
    literal: bool,
  },
  { name: 'u', kind: 'uuid', ddl: { postgres: 'UUID', mssql: 'UNIQUEIDENTIFIER' } },
];

/** A value in one text form, whatever form a driver or the wire gave it in (null stays null). */
export function norm(kind: Kind, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = typeof v === 'string' ? v : String(v);
  switch (kind) {
    case 'int':
      return s;
    case 'float':
      return typeof v === 'number' ? String(v) : s;
    case 'decimal': {
      const t = s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
      // a decimal zero has no sign: every database stores -0.000 as 0
      return t === '-0' ? '0' : t;
    }
    case 'date': {
      const m = /^(\d{4}-\d\d-\d\d)(?:T00:00:00(?:\.0+)?Z)?$/.exec(s);
      return m ? m[1]! : s;
    }
    case 'timestamp':
    case 'time':
      return wallClock(s);
    case 'instant':
      // (the test values are all at +00: an offset of zero is the same instant written in UTC)
      return wallClock(s.replace(/(\+00|Z)$/, ''));
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

/** A wall clock or time of day as one text: `2024-05-02 23:59:59.1234`, no trailing zeros in the fraction. */
function wallClock(s: string): string {
  const m = /^(?:1970-01-01T)?(\d{4}-\d\d-\d\d[T ])?(\d\d:\d\d:\d\d)(\.\d*?)?0*Z?$/.exec(s);
  return m ? `${(m[1] ?? '').replace('T', ' ')}${m[2]}${m[3] === '.' ? '' : (m[3] ?? '')}` : s;
}

export function columnsOf(site: DbKind): Col[] {
  return COLUMNS.filter((c) => c.ddl[site]);
}

export async function createSiteTables(db: Database, kind: DbKind): Promise<void> {
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

export async function insertRow(db: Database, kind: DbKind, row: Record<string, string | null>): Promise<void> {
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

/**
 * The rows of a table read back as text per column, keyed by id (`scope`: the central's site column).
 * Each column is read as the agents read it (`Dialect.columnReader`, for the column as the catalogue
 * describes it): SQL Server's driver would round decimals and cut times to milliseconds.
 */
export async function readBack(
  db: Database,
  table: string,
  cols: Col[],
  scoped: boolean,
): Promise<Map<string, string[]>> {
  const q = (s: string) => db.dialect.quote(s);
  const names = cols.map((c) => c.name);
  const info = await db.describeTable(table);
  const readers = names.map((n) => {
    const c = info?.columns.find((x) => x.name === n);
    return db.dialect.columnReader(n, { kind: c?.kind, dbType: c?.dbType });
  });
  const rows = await db.queryArrays(
    `SELECT ${readers.map((r) => r.sql).join(', ')} FROM ${q(table)}${scoped ? ` WHERE ${q('id_efector')} = ?` : ''}`,
    scoped ? [SITE_ID] : [],
    names,
  );
  const out = new Map<string, string[]>();
  for (const r of rows) {
    readers.forEach((reader, i) => {
      if (reader.toWire && typeof r[i] === 'string') r[i] = reader.toWire(r[i]);
    });
    const wire = toWireValues(r);
    out.set(
      String(wire[0]),
      cols.map((c, i) => `${c.name}=${norm(c.kind, wire[i])}`),
    );
  }
  return out;
}

/** What `readBack` should give for `rows` (values as text, null for NULL or a column a row leaves out). */
export function expected(cols: Col[], rows: ReadonlyArray<Record<string, string | null>>): Map<string, string[]> {
  return new Map(
    rows.map((r) => [r.id!, cols.map((c) => `${c.name}=${norm(c.kind, r[c.name] === undefined ? null : r[c.name])}`)]),
  );
}

export function pipeline(): HashingFileInput {
  return { name: 'vals', baseEntity: 'vals_h', linkEntities: [{ entity: 'vals_d', join: { id: 'id' } }] };
}

/** The central's column types, from its catalogue. */
export async function centralTypes(db: Database, table: string): Promise<Record<string, string>> {
  const schema = { postgres: 'current_schema()', mssql: 'SCHEMA_NAME()' }[db.dialect.name as string] ?? 'DATABASE()';
  const sql = `SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE table_schema = ${schema} AND table_name = ?`;
  const rows = await db.query<Record<string, string>>(sql, [table]);
  return Object.fromEntries(rows.map((r) => [r.c ?? r.C ?? r.COLUMN_NAME, (r.t ?? r.T ?? r.DATA_TYPE)!.toLowerCase()]));
}
