import 'reflect-metadata';
import { DataSource, type QueryRunner } from 'typeorm';
import { ConfigError, TransientError, isTransientError, type ColumnSpec } from '@sitesync/protocol';
import { dialectFor, type Dialect, type Statement } from './dialects';
import { parseDatabaseUrl, urlWithoutPassword, type ParsedDatabaseUrl } from './url';
import { columnSpecOf } from './schema-types';
import { liveColumnType, type ColumnTypeRow, type LiveColumnType } from './column-fit';
import {
  dataSourceOptions,
  ensurePostgresSchema,
  exactIntegers,
  hasInexactInteger,
  mysqlRowTypeCast,
  type DriverHandles,
  type OpenOptions,
  type SqliteConnection,
  type SqliteStatement,
} from './database-options';

export type { DatabaseRole, OpenOptions } from './database-options';

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
 * Makes MariaDB's one pooled session read-only (see `OpenOptions.readOnly`), and any session the
 * pool opens later to replace it: writes then fail with "Cannot execute statement in a READ ONLY
 * transaction".
 */
async function readOnlyMysqlSession(ds: DataSource): Promise<void> {
  const statement = 'SET SESSION TRANSACTION READ ONLY';
  const pool = (ds.driver as unknown as { pool?: MysqlPool }).pool;
  pool?.on('connection', (conn) => conn.query(statement));
  await ds.query(statement);
}

interface MysqlPool {
  on(event: 'connection', listener: (conn: { query(sql: string): unknown }) => void): void;
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
    /** Opened with `readOnly` (see OpenOptions): `migrate` refuses. */
    readonly readOnly: boolean,
  ) {
    this.lock = dialect.name === 'sqlite' ? new Mutex() : undefined;
  }

  /** Opens the database named by `url` and (by default) brings its sitesync tables up to date. */
  static async open(url: string, opts: OpenOptions): Promise<Database> {
    const parsed = parseDatabaseUrl(url);
    const ds = new DataSource(dataSourceOptions(parsed, opts));
    try {
      if (parsed.dialect === 'postgres' && parsed.schema && !opts.readOnly) await ensurePostgresSchema(parsed);
      await ds.initialize();
      if (opts.readOnly && parsed.dialect === 'mysql') await readOnlyMysqlSession(ds);
    } catch (cause) {
      // Unreachable may pass (retry); refused (password, no such database, unwritable file) will not (stop).
      const message =
        `cannot open the ${opts.role} database at ${urlWithoutPassword(url)}: ${(cause as Error).message}` +
        ` — check ${opts.urlSource ?? 'db.url'}`;
      throw isTransientError(cause)
        ? new TransientError(message, 'DB_UNREACHABLE', { cause })
        : new ConfigError(message, 'db.url', { cause, code: 'DB_REFUSED' });
    }
    const db = new Database(ds, dialectFor(parsed.dialect), parsed, opts.readOnly === true);
    if (opts.migrate !== false && !opts.readOnly) {
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
    if (this.readOnly) throw new Error('the database was opened read-only: its sitesync tables cannot be migrated');
    return this.serialized(async () => {
      const done = await this.dataSource.runMigrations({ transaction: 'each' });
      return done.map((m) => m.name);
    });
  }

  /**
   * The migrations `migrate` would run, by name, read without writing anything (TypeORM's own
   * `showMigrations` creates its migrations table when it is missing).
   */
  async pendingMigrations(): Promise<string[]> {
    const all = this.dataSource.migrations.map((m) => m.name ?? m.constructor.name);
    const table = this.dataSource.options.migrationsTableName ?? 'migrations';
    if (!(await this.tableNames()).some((n) => n.toLowerCase() === table.toLowerCase())) return all;
    const done = await this.query<{ name: string }>(`SELECT name FROM ${this.dialect.quote(table)}`);
    const ran = new Set(done.map((r) => r.name));
    return all.filter((n) => !ran.has(n));
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
