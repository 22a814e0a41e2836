import type { ColumnKind, ColumnSpec, ColumnType } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from '../key-collation';
import type { LiveColumnType } from '../column-fit';
import { flatten, valuesList } from './sql-text';

/** Binary values travel as `base64:<data>` (see toWireValue). */
const BINARY_PREFIX = 'base64:';

export type DialectName = 'sqlite' | 'postgres' | 'mssql' | 'mysql';

/** A statement with its parameters, ready for `Database.query`. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/** A column as the database holds it: its kind and its type as the catalogue names it (`money`, `datetime2`). */
export interface StoredColumn {
  kind?: ColumnKind | undefined;
  dbType?: string | undefined;
}

/**
 * How one column is read exactly: its select expression (the quoted column, or an expression
 * aliased to the column's name), and the conversion of the value the driver gives for it into its
 * wire form (none: `toWireValue` alone).
 */
export interface ColumnReader {
  sql: string;
  toWire?: (driverValue: string) => string;
}

/** Keys over some columns, with the columns' SQL types (for dialects that bind a column as one array). */
export interface KeySet {
  columns: readonly string[];
  sqlTypes: readonly string[];
  keys: ReadonlyArray<readonly unknown[]>;
}

/**
 * Everything that differs between SQL dialects. SQL elsewhere is written with `?` placeholders and
 * identifiers passed through {@link Dialect.quote}; the dialect renders placeholders.
 */
export abstract class Dialect {
  abstract readonly name: DialectName;
  /** Most bound parameters one statement may carry (SQL Server: 2,100). */
  abstract readonly maxParams: number;
  /** Most rows in one multi-row VALUES list. */
  readonly maxRowsPerInsert: number = 1000;
  /** True when key sets travel as array parameters, so one statement takes any number of keys. */
  readonly arrayParameters: boolean = false;

  /** Quotes an identifier (already checked against the live schema, or one of our own names). */
  abstract quote(identifier: string): string;

  /** Renders `?` placeholders into this dialect's form; a `?` inside quotes is not one. */
  abstract render(sql: string): string;

  /**
   * How to read `column` so that its value arrives exactly (see {@link ColumnReader}). Here, and on
   * every dialect whose driver already reads each kind exactly, the column itself.
   */
  columnReader(column: string, _stored?: StoredColumn): ColumnReader {
    return { sql: this.quote(column) };
  }

  /** SELECT with a row limit. `body` starts after SELECT. */
  selectLimit(body: string, limit: number): string {
    return `SELECT ${body} LIMIT ${Math.trunc(limit)}`;
  }

  /**
   * The type of a column the central creates for the site's column `spec`: by its full kind when
   * the site sent one (`kindType`), else by its coarse type (`coarseTypes`, as an earlier release
   * did). `isKey`: part of the primary key or the detail index (text keys need a bounded, exact type).
   */
  columnType(spec: ColumnSpec, isKey: boolean): string {
    return this.kindType(spec, isKey) ?? this.coarseTypes(isKey)[spec.type];
  }
  /** The column type for each coarse wire type (a spec without a kind, and every text column). */
  protected abstract coarseTypes(isKey: boolean): Record<ColumnType, string>;
  /**
   * The column type for a column the site described in full (`spec.kind`, see ColumnSpec): the
   * same type, widened where this database has no exact equivalent, never narrowed. Undefined for
   * text (and a key of text kind), which `columnType` decides, and for a spec without a kind.
   */
  protected abstract kindType(spec: ColumnSpec, isKey: boolean): string | undefined;
  abstract timestampType(): string;
  abstract booleanType(): string;
  abstract textType(length?: number): string;
  abstract bigintType(): string;

  /**
   * The collation of the text key columns the central creates (target tables, the ledger's key):
   * binary, so keys compare exactly. Undefined where the server compares text exactly by default.
   */
  readonly keyCollation: string | undefined = undefined;
  /** How a text column of `collation` (as the catalogue names it) compares; exact by default. */
  keyComparison(_collation: string | null | undefined): KeyComparison {
    return EXACT_COMPARISON;
  }
  /**
   * The collation of each text column of `table` (rows `name`, `coll`, and `is_key` 1 for a column
   * of its primary key), or undefined where every
   * column compares exactly (PostgreSQL's and SQLite's default collations).
   */
  columnCollations(_table: string): Statement | undefined {
    return undefined;
  }
  /**
   * The type of each column of `table` as the catalogue spells it (rows of `ColumnTypeRow`), or
   * undefined where types enforce nothing (SQLite). One cheap catalogue query.
   */
  columnTypes(_table: string): Statement | undefined {
    return undefined;
  }
  /**
   * Statements that change existing columns to wider types of the same family, keeping each
   * one's nullability and collation (and character set); empty when `changes` is.
   */
  widenColumns(_table: string, _changes: ReadonlyArray<{ live: LiveColumnType; type: string }>): string[] {
    return [];
  }
  /**
   * Statements giving an existing text key column (part of the primary key) the key collation;
   * empty where the dialect needs none. `type`: the column's type, e.g. `varchar(255)`.
   */
  exactKeyColumn(_table: string, _column: string, _type: string): string[] {
    return [];
  }
  /** Converts a boolean for binding (SQLite has no boolean). */
  bool(v: boolean): unknown {
    return v;
  }
  /** A boolean as an SQL literal (parameters in CASE branches get no type on PostgreSQL). */
  boolLiteral(v: boolean): string {
    return v ? '1' : '0';
  }
  /** The current time as a bindable value. */
  now(): unknown {
    return this.time(new Date());
  }
  /** A time as a bindable value, as `now` stores one (so stored times compare with it). */
  time(t: Date): unknown {
    return t;
  }

  /** CREATE TABLE that does nothing when the table exists. Names must already be validated. */
  createTableIfMissing(
    table: string,
    columns: ReadonlyArray<{ name: string; type: string; nullable: boolean }>,
    primaryKey: readonly string[],
  ): string {
    const defs = columns.map((c) => `${this.quote(c.name)} ${c.type}${c.nullable ? '' : ' NOT NULL'}`);
    // No primary key: a heap (the change-tracking queue, where the same key may appear many times).
    if (primaryKey.length) defs.push(`PRIMARY KEY (${primaryKey.map((c) => this.quote(c)).join(', ')})`);
    return `CREATE TABLE IF NOT EXISTS ${this.quote(table)} (${defs.join(', ')})`;
  }

  /** CREATE INDEX that does nothing when an index of that name exists. Names must already be validated. */
  createIndexIfMissing(table: string, name: string, columns: readonly string[]): string {
    return `CREATE INDEX IF NOT EXISTS ${this.quote(name)} ON ${this.quote(table)} (${columns.map((c) => this.quote(c)).join(', ')})`;
  }

  /** True when every JavaScript string fits its text columns as it is (`unstorableText` never answers). */
  readonly holdsAnyText: boolean = false;
  /**
   * Why this database cannot store `v` in a text column exactly, or undefined when it can. A lone
   * UTF-16 surrogate has no UTF-8 form: the drivers of UTF-8 databases would write U+FFFD instead.
   */
  unstorableText(v: string): string | undefined {
    return isWellFormed(v) ? undefined : 'a lone UTF-16 surrogate, which UTF-8 text cannot hold';
  }

  /**
   * Why this database cannot store a double that travels by name (`'NaN'`, `'Infinity'`,
   * `'-Infinity'`, `'-0'`: see `FLOAT_NAMES`) exactly, or undefined when it can. SQLite keeps the
   * infinities but makes NaN a NULL and -0 a 0.
   */
  unstorableFloat(v: string): string | undefined {
    if (v === 'NaN') return 'NaN, which SQLite stores as NULL';
    if (v === '-0') return 'a negative zero, which SQLite stores as 0';
    return undefined;
  }

  /**
   * A wire value made bindable for a column of `type`; `kind`: the kind of the column it is bound
   * for, where the caller knows it (the central's live column), for dialects that bind by it.
   */
  bindValue(v: unknown, type: ColumnSpec['type'], _kind?: ColumnKind): unknown {
    if (type === 'number' && (v === 'Infinity' || v === '-Infinity')) return Number(v);
    if (type === 'binary' && typeof v === 'string' && v.startsWith(BINARY_PREFIX)) {
      return Buffer.from(v.slice(BINARY_PREFIX.length), 'base64');
    }
    if (typeof v === 'boolean') return this.bool(v);
    if (type === 'boolean' && typeof v === 'number') return this.bool(v !== 0);
    return v;
  }

  /**
   * Binds key values (wire values of the `names` columns, in that order) as those columns of
   * `specs` hold them, for comparing keys in SQL: a binary key travels as `base64:` text.
   */
  keyBinder(specs: readonly ColumnSpec[], names: readonly string[]): (key: readonly unknown[]) => unknown[] {
    const keySpecs = names.map((n) => {
      const spec = specs.find((s) => s.name === n);
      if (!spec) throw new Error(`key column ${n} is not among the columns ${specs.map((s) => s.name).join(', ')}`);
      return spec;
    });
    return (key) => key.map((v, i) => this.bindValue(v, keySpecs[i]!.type, keySpecs[i]!.kind));
  }

  /** Multi-row INSERT. */
  insertRows(table: string, columns: readonly string[], rows: ReadonlyArray<readonly unknown[]>): Statement {
    return {
      sql: `INSERT INTO ${this.quote(table)} (${columns.map((c) => this.quote(c)).join(', ')}) VALUES ${valuesList(columns.length, rows.length)}`,
      params: flatten(rows),
    };
  }

  /**
   * Multi-row insert that updates the rows whose key exists. `onlyIfChanged`: leave a row alone
   * (no write, no dirty page) when none of its other columns would change.
   */
  upsert(
    table: string,
    keyColumns: readonly string[],
    columns: readonly string[],
    rows: ReadonlyArray<readonly unknown[]>,
    opts: { onlyIfChanged?: boolean } = {},
  ): Statement {
    const ins = this.insertRows(table, columns, rows);
    return { sql: `${ins.sql} ${this.onConflict(table, keyColumns, columns, opts.onlyIfChanged)}`, params: ins.params };
  }

  /** The `ON CONFLICT (key) DO UPDATE SET ... [WHERE a value differs]` tail of an upsert (SQLite, PostgreSQL). */
  protected onConflict(
    table: string,
    keyColumns: readonly string[],
    columns: readonly string[],
    onlyIfChanged = false,
  ): string {
    const q = (c: string) => this.quote(c);
    const others = columns.filter((c) => !keyColumns.includes(c));
    const conflict = `ON CONFLICT (${keyColumns.map(q).join(', ')})`;
    if (others.length === 0) return `${conflict} DO NOTHING`;
    const set = others.map((c) => `${q(c)} = excluded.${q(c)}`).join(', ');
    const changed = onlyIfChanged
      ? ` WHERE ${others.map((c) => this.distinct(`${q(table)}.${q(c)}`, `excluded.${q(c)}`)).join(' OR ')}`
      : '';
    return `${conflict} DO UPDATE SET ${set}${changed}`;
  }

  /**
   * Rows per statement for `writeMany` with `columns` columns (the dialect's parameter limit, or
   * what its bulk form handles well).
   */
  writeManyChunk(columns: number): number {
    return Math.min(this.maxRowsPerInsert, this.chunkSize(columns, 0, 100_000));
  }

  /**
   * Many rows inserted, or upserted by `upsertKey` (see `upsert`), in one statement. `sqlTypes`
   * (one per column) let a dialect bind a column as one typed array (PostgreSQL: `unnest`); the
   * others build a multi-row VALUES list. `onlyIfChanged` as for `upsert` (default: yes).
   */
  writeMany(
    table: string,
    columns: readonly string[],
    _sqlTypes: readonly string[],
    rows: ReadonlyArray<readonly unknown[]>,
    upsertKey?: readonly string[],
    onlyIfChanged = true,
  ): Statement {
    return upsertKey
      ? this.upsert(table, upsertKey, columns, rows, { onlyIfChanged })
      : this.insertRows(table, columns, rows);
  }

  /**
   * DELETE of the rows of `scope` whose `owner` columns hold one of its keys and whose `keep`
   * columns hold none of its keys: "the lines these headers no longer have". Here every key is a
   * parameter, so callers keep both sets within `chunkSize` unless `arrayParameters`.
   */
  deleteUnlisted(table: string, scope: readonly [string, unknown], owner: KeySet, keep: KeySet): Statement {
    const own = this.keyPredicate(owner.columns, owner.keys);
    const kept = keep.keys.length ? this.keyPredicate(keep.columns, keep.keys) : undefined;
    return {
      sql:
        `DELETE FROM ${this.quote(table)} WHERE ${this.quote(scope[0])} = ? AND ${own.sql}` +
        (kept ? ` AND NOT (${kept.sql})` : ''),
      params: [scope[1], ...own.params, ...(kept?.params ?? [])],
    };
  }

  /** Null-safe "differs": true when exactly one is NULL or both are set and unequal. */
  distinct(a: string, b: string): string {
    return `${a} IS DISTINCT FROM ${b}`;
  }

  /** INSERT of one row that does nothing (0 affected) when its primary key exists, even under concurrency. */
  insertIgnore(table: string, columns: readonly string[], row: readonly unknown[]): Statement {
    const ins = this.insertRows(table, columns, [row]);
    return { sql: `${ins.sql} ON CONFLICT DO NOTHING`, params: ins.params };
  }

  /** `(c1 = ? AND c2 = ?) OR ...` or `c IN (?, ...)` over a set of keys. */
  keyPredicate(columns: readonly string[], keys: ReadonlyArray<readonly unknown[]>, alias = ''): Statement {
    const q = (c: string) => (alias ? `${alias}.${this.quote(c)}` : this.quote(c));
    if (columns.length === 1) {
      return { sql: `${q(columns[0]!)} IN (${keys.map(() => '?').join(', ')})`, params: keys.map((k) => k[0]) };
    }
    const one = `(${columns.map((c) => `${q(c)} = ?`).join(' AND ')})`;
    return { sql: `(${keys.map(() => one).join(' OR ')})`, params: flatten(keys) };
  }

  /**
   * The rows of `table` whose `scope` column holds its value and whose key column holds one of
   * `key.values`, where (scope, key) is the table's primary key (at most one row per key): `columns`
   * of each. `key.sqlType`: the key column's type (for dialects that bind the keys as one array).
   * Here a key predicate; see PostgreSQL's form.
   */
  selectByKeys(
    table: string,
    columns: readonly string[],
    scope: readonly [string, unknown],
    key: { column: string; sqlType: string; values: readonly unknown[] },
  ): Statement {
    const pred = this.keyPredicate(
      [key.column],
      key.values.map((k) => [k]),
    );
    return {
      sql: `SELECT ${columns.map((c) => this.quote(c)).join(', ')} FROM ${this.quote(table)} WHERE ${this.quote(scope[0])} = ? AND ${pred.sql}`,
      params: [scope[1], ...pred.params],
    };
  }

  /** Keyset pagination: rows strictly after `after` in (c1, c2, ...) order. */
  afterKey(columns: readonly string[], after: readonly unknown[]): Statement {
    const parts: string[] = [];
    const params: unknown[] = [];
    for (let i = 0; i < columns.length; i++) {
      const eq = columns.slice(0, i).map((c) => `${this.quote(c)} = ?`);
      parts.push(`(${[...eq, `${this.quote(columns[i]!)} > ?`].join(' AND ')})`);
      params.push(...after.slice(0, i), after[i]);
    }
    return { sql: `(${parts.join(' OR ')})`, params };
  }

  /**
   * The statement that refreshes a table's planner statistics, where the server does not keep them
   * current by itself while a table grows fast (PostgreSQL: autovacuum looks once a minute, and a
   * table created during a first load is planned as if empty meanwhile). `state` returns the rows
   * the server estimates (`n`) and whether this user may refresh them (`owned`). `columns`: the
   * ones to refresh (all when empty). Undefined elsewhere.
   */
  refreshStatistics(
    _table: string,
    _columns: readonly string[] = [],
  ): { refresh: string; state: Statement } | undefined {
    return undefined;
  }

  /** Keys per statement so that `paramsPerKey * n + reserve` stays under the dialect's limit. */
  chunkSize(paramsPerKey: number, reserve = 10, cap = 1000): number {
    return Math.max(1, Math.min(cap, Math.floor((this.maxParams - reserve) / Math.max(1, paramsPerKey))));
  }
}

/** `String.prototype.isWellFormed` (ES2024, in Node 20): no lone surrogate. */
const isWellFormed = (v: string): boolean => (v as unknown as { isWellFormed(): boolean }).isWellFormed();
