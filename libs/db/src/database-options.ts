/**
 * How a `Database` (database.ts, the query interface) reaches each kind of server: the TypeORM data
 * source options per dialect (pool, SQLite pragmas, PostgreSQL schema, MariaDB number handling), and
 * how driver values are read so that they arrive exact and in wire form: node-postgres' type parsers,
 * mysql2's type casts, and SQLite's re-read of integers beyond ±2^53, with the driver objects
 * `Database.queryArrays` reads arrays through.
 */
import { types as pgTypes } from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
import type { ParsedDatabaseUrl } from './url';
import { pgDateToWire, pgInstantToWire, pgTimestampToWire } from './value-forms';
import { CENTRAL_MIGRATIONS, SITE_MIGRATIONS } from './migrations';

/** Which sitesync tables a database holds. */
export type DatabaseRole = 'central' | 'site';

export interface OpenOptions {
  role: DatabaseRole;
  /** Run pending migrations on open. @default true */
  migrate?: boolean;
  /** Pool size for server databases. @default 10 */
  poolSize?: number;
  /**
   * Where the URL was set, named by the errors of opening as `check <urlSource>`: e.g. `db.url in
   * /etc/sitesync/central.json (or SYNC_DB_URL)` (see `ConfigOrigin.whereSet`). @default 'db.url'
   */
  urlSource?: string;
  /**
   * Opens the database so that nothing can be written through it: SQLite read-only (the file must
   * exist), PostgreSQL with `default_transaction_read_only`, MariaDB with a read-only session, one
   * connection. SQL Server has no such session mode: there nothing is enforced, only nothing is
   * written (see docs/upgrades.md). Implies `migrate: false`. @default false
   */
  readOnly?: boolean;
}

/** The driver objects `queryArrays` reads through (TypeORM's better-sqlite3 and postgres drivers). */
export interface SqliteStatement {
  raw(on: boolean): SqliteStatement;
  safeIntegers(on: boolean): SqliteStatement;
  all(...params: unknown[]): unknown[];
}
export interface SqliteConnection {
  prepare(sql: string): SqliteStatement;
}
export interface DriverHandles {
  databaseConnection?: SqliteConnection;
  master?: {
    query(q: { text: string; values: readonly unknown[]; rowMode: 'array' }): Promise<{ rows: unknown[][] }>;
  };
  /** TypeORM's mysql driver: its mysql2 pool. */
  pool?: {
    query(
      q: { sql: string; values: readonly unknown[]; rowsAsArray: true; typeCast: typeof mysqlRowTypeCast },
      done: (err: Error | null, rows: unknown[][]) => void,
    ): void;
  };
}

/** PostgreSQL type oids whose values are read as text, never through the process's time zone. */
const PG_TIMESTAMP_OID = 1114;
const PG_DATE_OID = 1082;
const PG_TIMESTAMPTZ_OID = 1184;

/**
 * node-postgres' type parsers, except `timestamp without time zone` and `date`, which it would turn
 * into a `Date` in the process's local time zone (a site agent in Buenos Aires moved 23:59:59 to
 * 02:59:59 the next day, and a 1901 date by the zone's local mean time): they are kept as their
 * wall clock (see value-forms.ts). A `timestamptz` becomes its UTC instant as text, keeping the
 * microseconds a `Date` drops. `int8` and `numeric` stay text, as pg gives them by default.
 */
const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): unknown {
    if (format !== 'binary' && oid === PG_TIMESTAMP_OID) return pgTimestampToWire;
    if (format !== 'binary' && oid === PG_DATE_OID) return pgDateToWire;
    if (format !== 'binary' && oid === PG_TIMESTAMPTZ_OID) return pgInstantToWire;
    return format === 'binary' ? pgTypes.getTypeParser(oid, 'binary') : pgTypes.getTypeParser(oid);
  },
};

/** The parts of a mysql2 result field a type cast reads. */
interface MysqlField {
  type: string;
  string(): string | null;
}

/**
 * mysql2 reads a DOUBLE or FLOAT's text with its own digit loop, which is not correctly rounded:
 * MariaDB's exact `973344272535.6991` arrived as …6992. `Number()` of the same text is exact.
 */
function mysqlTypeCast(field: MysqlField, next: () => unknown): unknown {
  return field.type === 'DOUBLE' || field.type === 'FLOAT' ? textOf(field, Number) : next();
}

/**
 * `mysqlTypeCast`, and for the rows `queryArrays` reads (a site's rows, `verify`'s): a DATETIME,
 * TIMESTAMP or DATE as its text in wire form, since a `Date` keeps milliseconds only (a DATETIME(6)
 * lost its microseconds). The form is the one a `Date` in UTC (driver time zone `Z`) gave before,
 * so millisecond values keep their hashes (see value-forms.ts). Not for every query: the agents'
 * own timestamps are read as `Date`s and written back as such.
 */
export function mysqlRowTypeCast(field: MysqlField, next: () => unknown): unknown {
  switch (field.type) {
    case 'DATETIME':
    case 'TIMESTAMP':
      return textOf(field, pgTimestampToWire);
    case 'DATE':
    case 'NEWDATE':
      return textOf(field, pgDateToWire);
    default:
      return mysqlTypeCast(field, next);
  }
}

function textOf<T>(field: MysqlField, convert: (text: string) => T): T | null {
  const text = field.string();
  return text === null ? null : convert(text);
}

/** Page cache of a central SQLite database, KiB. */
const CENTRAL_SQLITE_CACHE_KIB = 64 * 1024;

export function dataSourceOptions(p: ParsedDatabaseUrl, opts: OpenOptions): DataSourceOptions {
  const migrations = opts.role === 'central' ? CENTRAL_MIGRATIONS : SITE_MIGRATIONS;
  const common = {
    migrations,
    migrationsTableName: `sitesync_${opts.role}_migrations`,
    migrationsTransactionMode: 'each' as const,
    logging: false,
  };
  const pool = opts.poolSize ?? 10;
  switch (p.dialect) {
    case 'sqlite':
      return {
        ...common,
        type: 'better-sqlite3',
        database: p.path!,
        readonly: opts.readOnly === true,
        fileMustExist: opts.readOnly === true,
        prepareDatabase: (db: { pragma(s: string): unknown }) => {
          // The journal mode is written into the file: a read-only open leaves it as it is.
          if (!opts.readOnly) db.pragma('journal_mode = WAL');
          db.pragma('synchronous = NORMAL');
          db.pragma('busy_timeout = 10000');
          db.pragma('foreign_keys = ON');
          // The central merges every site into one file: SQLite's default 2 MiB page cache re-reads
          // the ledger's and the tables' upper index pages from the OS on every batch. Sites keep
          // the default (their memory is bounded; other programs write their file anyway).
          if (opts.role === 'central') db.pragma(`cache_size = -${CENTRAL_SQLITE_CACHE_KIB}`);
        },
      };
    case 'postgres':
      return {
        ...common,
        type: 'postgres',
        ...postgresServer(p),
        ...(p.schema ? { schema: p.schema } : {}),
        extra: { max: pool, types: PG_TYPES, ...postgresSessionOptions(p, opts) },
      };
    case 'mssql':
      return {
        ...common,
        type: 'mssql',
        ...server(p, { port: 1433, user: 'sa', database: 'master' }),
        ...(p.schema ? { schema: p.schema } : {}),
        pool: { max: pool },
        options: {
          encrypt: p.params.encrypt === 'true',
          trustServerCertificate: p.params.trustServerCertificate !== 'false',
        },
      };
    case 'mysql':
      return {
        ...common,
        type: 'mysql',
        ...server(p, { port: 3306, user: 'root', database: 'test' }),
        // Read-only is a session setting: one session, set once it is open (see Database.open).
        poolSize: opts.readOnly ? 1 : pool,
        // BIGINT (and DECIMAL) beyond ±2^53 as strings, within as numbers: exact, and the form
        // integers have always had on the wire (bigNumberStrings would turn every one into text).
        supportBigNumbers: true,
        bigNumberStrings: false,
        timezone: 'Z',
        extra: { typeCast: mysqlTypeCast },
      };
  }
}

/** PostgreSQL settings given at connect: the URL's schema first in the search path, read-only transactions. */
function postgresSessionOptions(p: ParsedDatabaseUrl, opts: OpenOptions): { options?: string } {
  const settings = [
    ...(p.schema ? [`-c search_path=${p.schema}`] : []),
    ...(opts.readOnly ? ['-c default_transaction_read_only=on'] : []),
  ];
  return settings.length ? { options: settings.join(' ') } : {};
}

/** Where a server dialect's URL points, with the dialect's defaults for what it leaves out. */
function server(
  p: ParsedDatabaseUrl,
  defaults: { port: number; user: string; database: string },
): { host: string; port: number; username: string; password: string; database: string } {
  return {
    host: p.host ?? '127.0.0.1',
    port: p.port ?? defaults.port,
    username: p.user ?? defaults.user,
    password: p.password ?? '',
    database: p.database ?? defaults.database,
  };
}

/** `server` for PostgreSQL: no password at all when the URL gives none (trust or peer authentication). */
function postgresServer(p: ParsedDatabaseUrl) {
  const { password, ...rest } = server(p, { port: 5432, user: 'postgres', database: 'postgres' });
  return { ...rest, ...(password ? { password } : {}) };
}

/** True when a row holds a number that may be a rounded integer: beyond ±(2^53 - 1). */
export function hasInexactInteger(rows: readonly unknown[][]): boolean {
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) {
      const v = r[i];
      if (typeof v === 'number' && (v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER)) return true;
    }
  }
  return false;
}

/**
 * SQLite integers read as bigints, in the form they travel in: a number within ±(2^53 - 1) (the form
 * every SQLite integer had on the wire before, so their hashes stay), a decimal string beyond (the
 * form PostgreSQL's and SQL Server's drivers give a bigint).
 */
export function exactIntegers(rows: unknown[][]): unknown[][] {
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) {
      const v = r[i];
      if (typeof v === 'bigint') r[i] = v <= MAX_EXACT && v >= -MAX_EXACT ? Number(v) : v.toString();
    }
  }
  return rows;
}
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

/** Creates the schema a PostgreSQL URL names, when it does not exist yet. */
export async function ensurePostgresSchema(p: ParsedDatabaseUrl): Promise<void> {
  const ds = new DataSource({
    type: 'postgres',
    ...postgresServer(p),
  });
  await ds.initialize();
  try {
    await ds.query(`CREATE SCHEMA IF NOT EXISTS "${p.schema!.replace(/"/g, '""')}"`);
  } finally {
    await ds.destroy();
  }
}
