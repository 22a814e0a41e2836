import 'reflect-metadata';
import { types as pgTypes } from 'pg';
import { DataSource, type DataSourceOptions, type QueryRunner } from 'typeorm';
import { ConfigError, TransientError, isTransientError, type ColumnSpec } from '@sitesync/protocol';
import { dialectFor, type Dialect, type Statement } from './dialects';
import { parseDatabaseUrl, redact, type ParsedDatabaseUrl } from './url';
import { columnSpecOf } from './schema-types';
import { liveColumnType, type ColumnTypeRow, type LiveColumnType } from './column-fit';
import { pgDateToWire, pgInstantToWire, pgTimestampToWire } from './value-forms';
import { CENTRAL_MIGRATIONS, SITE_MIGRATIONS } from './migrations';

/** Which sitesync tables a database holds. */
export type DatabaseRole = 'central' | 'site';

/** Something that runs SQL: the database itself or an open transaction. */
export interface Queryable {
  readonly dialect: Dialect;
  /** Runs one statement written with `?` placeholders; returns its rows. */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs one statement; returns the number of affected rows. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>;
  run(stmt: Statement): Promise<number>;
}

/** An open transaction: a {@link Queryable} that can also run script text as written. */
export interface Transaction extends Queryable {
  /**
   * Runs SQL exactly as written: no `?` rendering (a `?` in a script's string literal must stay one)
   * and no parameters. For one statement, or one SQL Server batch, of a script (see `splitSqlScript`).
   */
  runVerbatim(sql: string): Promise<void>;
}

export interface ColumnInfo extends ColumnSpec {
  isPrimary: boolean;
  dbType: string;
}

export interface TableInfo {
  name: string;
  columns: ColumnInfo[];
  primaryKey: string[];
  /** Names of its secondary indexes (not the primary key or unique constraints), as the catalogue spells them. */
  indexes: string[];
}

export interface OpenOptions {
  role: DatabaseRole;
  /** Run pending migrations on open. @default true */
  migrate?: boolean;
  /** Pool size for server databases. @default 10 */
  poolSize?: number;
}

class QueryRunnerQueryable implements Transaction {
  constructor(
    readonly dialect: Dialect,
    private readonly qr: QueryRunner,
  ) {}
  async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const res = await this.qr.query(this.dialect.render(sql), params as unknown[], true);
    return (Array.isArray(res.records) ? res.records : []) as T[];
  }
  async execute(sql: string, params: readonly unknown[] = []): Promise<number> {
    const res = await this.qr.query(this.dialect.render(sql), params as unknown[], true);
    return typeof res.affected === 'number' ? res.affected : 0;
  }
  run(stmt: Statement): Promise<number> {
    return this.execute(stmt.sql, stmt.params);
  }
  async runVerbatim(sql: string): Promise<void> {
    await this.qr.query(sql);
  }
}

/** The driver objects `queryArrays` reads through (TypeORM's better-sqlite3 and postgres drivers). */
interface SqliteStatement {
  raw(on: boolean): SqliteStatement;
  safeIntegers(on: boolean): SqliteStatement;
  all(...params: unknown[]): unknown[];
}
interface SqliteConnection {
  prepare(sql: string): SqliteStatement;
}
interface DriverHandles {
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
function mysqlRowTypeCast(field: MysqlField, next: () => unknown): unknown {
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

function dataSourceOptions(p: ParsedDatabaseUrl, opts: OpenOptions): DataSourceOptions {
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
        prepareDatabase: (db: { pragma(s: string): unknown }) => {
          db.pragma('journal_mode = WAL');
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
        host: p.host ?? '127.0.0.1',
        port: p.port ?? 5432,
        username: p.user ?? 'postgres',
        ...(p.password ? { password: p.password } : {}),
        database: p.database ?? 'postgres',
        ...(p.schema ? { schema: p.schema } : {}),
        extra: { max: pool, types: PG_TYPES, ...(p.schema ? { options: `-c search_path=${p.schema}` } : {}) },
      };
    case 'mssql':
      return {
        ...common,
        type: 'mssql',
        host: p.host ?? '127.0.0.1',
        port: p.port ?? 1433,
        username: p.user ?? 'sa',
        password: p.password ?? '',
        database: p.database ?? 'master',
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
        host: p.host ?? '127.0.0.1',
        port: p.port ?? 3306,
        username: p.user ?? 'root',
        password: p.password ?? '',
        database: p.database ?? 'test',
        poolSize: pool,
        // BIGINT (and DECIMAL) beyond ±2^53 as strings, within as numbers: exact, and the form
        // integers have always had on the wire (bigNumberStrings would turn every one into text).
        supportBigNumbers: true,
        bigNumberStrings: false,
        timezone: 'Z',
        extra: { typeCast: mysqlTypeCast },
      };
  }
}

/** A quote or backslash could end or escape a SQL string literal (a backslash does on MySQL); control characters too. */
function unsafeCatalogName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x27 || c === 0x5c || c < 0x20) return true;
  }
  return false;
}

const TABLE_NAMES_SQL: Record<Dialect['name'], string> = {
  sqlite: `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`,
  postgres:
    `SELECT CASE WHEN table_schema = current_schema() THEN table_name ELSE table_schema || '.' || table_name END AS name ` +
    `FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ` +
    `ORDER BY table_schema <> current_schema(), 1`,
  mssql:
    `SELECT CASE WHEN TABLE_SCHEMA = SCHEMA_NAME() THEN TABLE_NAME ELSE TABLE_SCHEMA + '.' + TABLE_NAME END AS name ` +
    `FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY CASE WHEN TABLE_SCHEMA = SCHEMA_NAME() THEN 0 ELSE 1 END, 1`,
  mysql:
    `SELECT CASE WHEN TABLE_SCHEMA = DATABASE() THEN TABLE_NAME ELSE CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) END AS name ` +
    `FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ` +
    `AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY TABLE_SCHEMA <> DATABASE(), 1`,
};

/** A tiny FIFO mutex: better-sqlite3 has one connection, so SQLite work is serialized. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * One sitesync database (central or site): TypeORM data source chosen by URL, migrations, and a
 * small query interface that renders `?` placeholders for the dialect.
 */
export class Database implements Queryable {
  private readonly lock: Mutex | undefined;
  private closed: Promise<void> | undefined;

  private constructor(
    readonly dataSource: DataSource,
    readonly dialect: Dialect,
    readonly url: ParsedDatabaseUrl,
  ) {
    this.lock = dialect.name === 'sqlite' ? new Mutex() : undefined;
  }

  /** Opens the database named by `url` and (by default) brings its sitesync tables up to date. */
  static async open(url: string, opts: OpenOptions): Promise<Database> {
    const parsed = parseDatabaseUrl(url);
    const ds = new DataSource(dataSourceOptions(parsed, opts));
    try {
      if (parsed.dialect === 'postgres' && parsed.schema) await ensurePostgresSchema(parsed);
      await ds.initialize();
    } catch (cause) {
      const err = isTransientError(cause)
        ? new TransientError(`cannot open database ${redact(url)}: ${(cause as Error).message}`, 'DB_UNREACHABLE', {
            cause,
          })
        : new ConfigError(`cannot open database ${redact(url)}: ${(cause as Error).message}`, 'db.url', { cause });
      throw err;
    }
    const db = new Database(ds, dialectFor(parsed.dialect), parsed);
    if (opts.migrate !== false) {
      try {
        await db.migrate();
      } catch (err) {
        await ds.destroy().catch(() => undefined);
        throw err;
      }
    }
    return db;
  }

  /** Runs pending migrations; returns their names. */
  async migrate(): Promise<string[]> {
    return this.serialized(async () => {
      const done = await this.dataSource.runMigrations({ transaction: 'each' });
      return done.map((m) => m.name);
    });
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock ? this.lock.run(fn) : fn();
  }

  query<T = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.serialized(async () => {
      const res = await this.dataSource.query(this.dialect.render(sql), params as unknown[]);
      return (Array.isArray(res) ? res : []) as T[];
    });
  }

  /**
   * Runs one SELECT whose select list is exactly `columns`; returns each row as an array in that
   * order. SQLite, PostgreSQL and MariaDB read arrays straight from the driver (better-sqlite3
   * `raw`, pg `rowMode: 'array'`, mysql2 `rowsAsArray`), skipping an object per row: the site's
   * scan reads every row of a first load this way. Other drivers read objects, picked by name.
   * MariaDB's timestamps and dates come as their exact text here (see `mysqlRowTypeCast`).
   */
  queryArrays(sql: string, params: readonly unknown[], columns: readonly string[]): Promise<unknown[][]> {
    const text = this.dialect.render(sql);
    const driver = this.dataSource.driver as unknown as DriverHandles;
    if (this.dialect.name === 'sqlite' && driver.databaseConnection) {
      const conn = driver.databaseConnection;
      return this.serialized(async () => {
        const args = params.map((p) => (typeof p === 'boolean' ? Number(p) : p));
        const rows = this.arrayStatement(conn, text, false).all(...args) as unknown[][];
        // better-sqlite3 reads an integer as a number, rounding one beyond ±2^53: such a value (or
        // a REAL that large) has the statement read again with every integer as a bigint. Reading
        // all pages so costs a bigint per integer (~20-40% of the read), for values that are rare.
        if (!hasInexactInteger(rows)) return rows;
        return exactIntegers(this.arrayStatement(conn, text, true).all(...args) as unknown[][]);
      });
    }
    if (this.dialect.name === 'postgres' && driver.master) {
      return driver.master.query({ text, values: params, rowMode: 'array' }).then((r) => r.rows);
    }
    if (this.dialect.name === 'mysql' && driver.pool) {
      const pool = driver.pool;
      return new Promise((resolve, reject) =>
        pool.query({ sql: text, values: params, rowsAsArray: true, typeCast: mysqlRowTypeCast }, (err, rows) =>
          err ? reject(err) : resolve(rows),
        ),
      );
    }
    return this.query<Record<string, unknown>>(sql, params).then((rows) => rows.map((r) => columns.map((c) => r[c])));
  }

  private readonly arrayStatements = new Map<string, SqliteStatement>();

  /**
   * A prepared SQLite statement returning arrays, kept for the next page (FIFO, like TypeORM's own
   * cache). `exact`: integers as bigints.
   */
  private arrayStatement(conn: SqliteConnection, text: string, exact: boolean): SqliteStatement {
    const key = exact ? `exact:${text}` : text;
    let stmt = this.arrayStatements.get(key);
    if (!stmt) {
      stmt = conn.prepare(text).raw(true).safeIntegers(exact);
      this.arrayStatements.set(key, stmt);
      if (this.arrayStatements.size > 32) this.arrayStatements.delete(this.arrayStatements.keys().next().value!);
    }
    return stmt;
  }

  execute(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.transaction((tx) => tx.execute(sql, params));
  }

  run(stmt: Statement): Promise<number> {
    return this.execute(stmt.sql, stmt.params);
  }

  /** Runs `fn` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    return this.serialized(async () => {
      const qr = this.dataSource.createQueryRunner();
      // SQLite: BEGIN IMMEDIATE takes the write lock up front, waiting up to busy_timeout for
      // another process's writer. A deferred transaction that reads and then writes fails at once
      // with "database is locked" when another process committed in between (it cannot upgrade
      // its stale snapshot), which busy_timeout does not cover.
      const immediate = this.dialect.name === 'sqlite';
      try {
        await qr.connect();
        if (immediate) await qr.query('BEGIN IMMEDIATE');
        else await qr.startTransaction();
        try {
          const result = await fn(new QueryRunnerQueryable(this.dialect, qr));
          if (immediate) await qr.query('COMMIT');
          else await qr.commitTransaction();
          return result;
        } catch (err) {
          if (immediate) await qr.query('ROLLBACK').catch(() => undefined);
          else if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
          throw err;
        }
      } finally {
        await qr.release();
      }
    });
  }

  /** The live definition of a table, or undefined when it does not exist. */
  async describeTable(name: string): Promise<TableInfo | undefined> {
    // TypeORM's getTable() pastes the name into string literals of its catalog queries (run as multi-statement
    // batches on PostgreSQL and SQL Server): a name that could leave the literal names no table of ours.
    if (unsafeCatalogName(name)) return undefined;
    return this.serialized(async () => {
      const qr = this.dataSource.createQueryRunner();
      try {
        const table = await qr.getTable(name);
        if (!table) return undefined;
        const columns = table.columns.map((c) => ({
          name: c.name,
          dbType: c.type,
          ...columnSpecOf(c, this.dialect.name),
          nullable: c.isNullable,
          isPrimary: c.isPrimary,
        }));
        return {
          name: table.name,
          columns,
          primaryKey: columns.filter((c) => c.isPrimary).map((c) => c.name),
          indexes: table.indices.flatMap((i) => (i.name ? [i.name] : [])),
        };
      } finally {
        await qr.release();
      }
    });
  }

  /**
   * Each column of `table` with its SQL type as the catalogue spells it (TypeORM reports MariaDB's
   * TEXT and LONGTEXT alike), by name; empty where types enforce nothing (SQLite) or no such table.
   */
  async columnTypes(table: string): Promise<Map<string, LiveColumnType>> {
    const out = new Map<string, LiveColumnType>();
    const stmt = this.dialect.columnTypes(table);
    if (!stmt) return out;
    for (const r of await this.query<ColumnTypeRow>(stmt.sql, stmt.params))
      out.set(r.name, liveColumnType(r, this.dialect.name));
    return out;
  }

  /**
   * Names of all tables (`schema.table` outside the current schema), for "did you mean" hints. One plain
   * catalog query: TypeORM's getTables() loads every table's full definition, takes seconds, and fails
   * on PostgreSQL when any table of the server is dropped meanwhile.
   */
  async tableNames(): Promise<string[]> {
    const rows = await this.query<{ name: string }>(TABLE_NAMES_SQL[this.dialect.name]);
    return rows.map((r) => r.name);
  }

  /** Checks the database answers a trivial query. */
  async ping(): Promise<boolean> {
    try {
      await this.query('SELECT 1 AS ok');
      return true;
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    this.closed ??= this.dataSource.isInitialized ? this.dataSource.destroy() : Promise.resolve();
    return this.closed;
  }
}

/** True when a row holds a number that may be a rounded integer: beyond ±(2^53 - 1). */
function hasInexactInteger(rows: readonly unknown[][]): boolean {
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
function exactIntegers(rows: unknown[][]): unknown[][] {
  for (const r of rows) {
    for (let i = 0; i < r.length; i++) {
      const v = r[i];
      if (typeof v === 'bigint') r[i] = v <= MAX_EXACT && v >= -MAX_EXACT ? Number(v) : v.toString();
    }
  }
  return rows;
}
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

async function ensurePostgresSchema(p: ParsedDatabaseUrl): Promise<void> {
  const ds = new DataSource({
    type: 'postgres',
    host: p.host ?? '127.0.0.1',
    port: p.port ?? 5432,
    username: p.user ?? 'postgres',
    ...(p.password ? { password: p.password } : {}),
    database: p.database ?? 'postgres',
  });
  await ds.initialize();
  try {
    await ds.query(`CREATE SCHEMA IF NOT EXISTS "${p.schema!.replace(/"/g, '""')}"`);
  } finally {
    await ds.destroy();
  }
}
