import type { ColumnKind, ColumnSpec } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from './key-collation';
import {
  mssqlDateTimeParam,
  mssqlDateToWire,
  mssqlDecimalToWire,
  mssqlInstantToWire,
  mssqlTimestampToWire,
  mssqlTimeToWire,
  mysqlWallClock,
} from './value-forms';
import type { LiveColumnType } from './column-fit';

/** Binary values travel as `base64:<data>` (see toWireValue). */
const BINARY_PREFIX = 'base64:';

export type DialectName = 'sqlite' | 'postgres' | 'mssql' | 'mysql';

/** A statement with its parameters, ready for `Database.query`. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/**
 * The version-guarded upsert of ledger rows: `rows` are [siteId, pipeline, headerKey, version, hash, deleted].
 * A newer version wins; within one version a deletion wins over an upsert (a row deleted while its
 * session was scanning is sent twice: first as an upsert, then as a deletion).
 */
export interface LedgerUpsert {
  table: string;
  rows: ReadonlyArray<readonly [number, string, string, number, string | null, boolean]>;
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
  /**
   * True when `upsertLedger`'s statement returns the rows it wrote (`header_key`, `deleted`): the
   * changes this batch won, without a second query.
   */
  readonly ledgerReturnsWinners: boolean = false;
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

  abstract columnType(spec: ColumnSpec, isKey: boolean): string;
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
    return new Date();
  }

  abstract upsertLedger(u: LedgerUpsert): Statement;

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

/** `(?, ?), (?, ?), ...`: `rows` tuples of `width` placeholders. Merges ask for the same few again and again. */
const valuesLists = new Map<string, string>();

function valuesList(width: number, rows: number): string {
  const key = `${width}x${rows}`;
  let text = valuesLists.get(key);
  if (text === undefined) {
    const tuple = `(${new Array<string>(width).fill('?').join(', ')})`;
    text = new Array<string>(rows).fill(tuple).join(', ');
    if (valuesLists.size >= 64) valuesLists.clear();
    valuesLists.set(key, text);
  }
  return text;
}

/** The rows' values in one list (`Array.prototype.flat` is several times slower on thousands of rows). */
function flatten(rows: ReadonlyArray<readonly unknown[]>): unknown[] {
  const out: unknown[] = [];
  for (const r of rows) for (let i = 0; i < r.length; i++) out.push(r[i]);
  return out;
}

/** Opening quote character code -> the character that closes it (doubled, it stands for itself). */
const QUOTE_CLOSE: Record<number, string> = { 34: '"', 39: "'", 96: '`', 91: ']' };

/**
 * Replaces each `?` placeholder with `<sigil><n>`, numbered from `first`, leaving alone a `?`
 * inside a quoted identifier (`"a?b"`, `[a?b]`, `` `a?b` ``) or a string literal (`'?'`): a
 * column may be named with one. One pass over the characters with string appends: a merge
 * statement carries thousands of placeholders, and a regex with a callback per match cost ~9%
 * of the central's CPU in the initial-load profile.
 */
export function numberPlaceholders(sql: string, sigil: string, first: number): string {
  let out = '';
  let n = first;
  let from = 0;
  const len = sql.length;
  for (let i = 0; i < len;) {
    const c = sql.charCodeAt(i);
    if (c === 63) {
      out += sql.slice(from, i) + sigil + n++;
      from = ++i;
      continue;
    }
    const close = QUOTE_CLOSE[c];
    if (close === undefined) {
      i++;
      continue;
    }
    // Skip to the closing quote; a doubled closing quote is an escaped one inside.
    let j = i + 1;
    for (;;) {
      j = sql.indexOf(close, j);
      if (j < 0) {
        j = len;
        break;
      }
      if (sql[j + 1] !== close) break;
      j += 2;
    }
    i = j + 1;
  }
  return out + sql.slice(from);
}

class SqliteDialect extends Dialect {
  readonly name = 'sqlite';
  override readonly ledgerReturnsWinners = true;
  override distinct(a: string, b: string): string {
    return `${a} IS NOT ${b}`;
  }
  readonly maxParams = 32_000;
  quote(id: string): string {
    return `"${id.replace(/"/g, '""')}"`;
  }
  render(sql: string): string {
    return sql;
  }
  /** BINARY (the default) is exact; NOCASE folds A-Z only; RTRIM ignores trailing spaces. */
  override keyComparison(collation: string | null | undefined): KeyComparison {
    const c = (collation ?? 'BINARY').toUpperCase();
    if (c === 'BINARY') return EXACT_COMPARISON;
    if (c === 'NOCASE') return { ...EXACT_COMPARISON, ignoresCase: true, asciiCaseOnly: true };
    if (c === 'RTRIM') return { ...EXACT_COMPARISON, ignoresTrailingSpaces: true };
    // an application-defined collation: nothing says what it merges, so assume it may merge case
    return { ...EXACT_COMPARISON, ignoresCase: true };
  }
  /** The primary key's columns with a collation other than BINARY, from the key's own index. */
  override columnCollations(table: string): Statement {
    return {
      sql:
        `SELECT x.name AS name, x.coll AS coll, 1 AS is_key FROM pragma_index_list(?) AS l, pragma_index_xinfo(l.name) AS x ` +
        `WHERE l.origin = 'pk' AND x.key = 1 AND x.name IS NOT NULL AND upper(x.coll) <> 'BINARY'`,
      params: [table],
    };
  }
  /** SQLite has no decimal: a REAL keeps 15 digits, so decimals are kept as their text. */
  protected kindType(spec: ColumnSpec): string | undefined {
    return spec.kind === 'decimal' ? 'TEXT' : undefined;
  }
  columnType(spec: ColumnSpec): string {
    const byKind = this.kindType(spec);
    if (byKind) return byKind;
    switch (spec.type) {
      case 'integer':
      case 'boolean':
        return 'INTEGER';
      case 'number':
        return 'REAL';
      case 'binary':
        return 'BLOB';
      default:
        return 'TEXT';
    }
  }
  timestampType(): string {
    return 'datetime';
  }
  booleanType(): string {
    return 'INTEGER';
  }
  textType(): string {
    return 'TEXT';
  }
  bigintType(): string {
    return 'INTEGER';
  }
  override bool(v: boolean): unknown {
    return v ? 1 : 0;
  }
  override now(): unknown {
    return new Date().toISOString();
  }
  upsertLedger(u: LedgerUpsert): Statement {
    return onConflictLedger(this, u);
  }
}

class PostgresDialect extends Dialect {
  readonly name = 'postgres';
  override readonly ledgerReturnsWinners = true;
  override readonly arrayParameters = true;
  readonly maxParams = 65_000;
  quote(id: string): string {
    return `"${id.replace(/"/g, '""')}"`;
  }
  render(sql: string): string {
    return numberPlaceholders(sql, '$', 1);
  }
  override boolLiteral(v: boolean): string {
    return v ? 'TRUE' : 'FALSE';
  }
  /**
   * Exact by default. A `citext` column ignores case. A nondeterministic (ICU) collation takes
   * canonically equivalent texts as one, and its strength may drop case (`ks-level2`) or case and
   * accents (`ks-level1`); `columnCollations` names it with its locale so this can tell.
   */
  override keyComparison(collation: string | null | undefined): KeyComparison {
    if (!collation) return EXACT_COMPARISON;
    if (collation === 'citext') return { ...EXACT_COMPARISON, ignoresCase: true };
    const level1 = /ks-level1|colstrength=primary/i.test(collation);
    const level2 = /ks-level2|colstrength=secondary/i.test(collation);
    return {
      ignoresCase: level1 || level2,
      ignoresAccents: level1,
      ignoresTrailingSpaces: false,
      ignoresNormalization: true,
    };
  }
  /** Columns of `table` that compare inexactly: `citext`, or a nondeterministic collation (with its locale). */
  override columnCollations(table: string): Statement {
    return {
      sql:
        `SELECT a.attname AS name, CASE WHEN t.typname = 'citext' THEN 'citext' ELSE c.collname || ' (nondeterministic, ' || ` +
        `COALESCE(to_jsonb(c) ->> 'colliculocale', to_jsonb(c) ->> 'colllocale', c.collcollate, '') || ')' END AS coll, ` +
        `CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY (i.indkey)) ` +
        `THEN 1 ELSE 0 END AS is_key FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid ` +
        `LEFT JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 ` +
        `AND NOT a.attisdropped AND (t.typname = 'citext' OR c.collisdeterministic = false)`,
      params: [this.quote(table)],
    };
  }
  override unstorableText(v: string): string | undefined {
    return v.includes('\0') ? 'a NUL character, which PostgreSQL text cannot hold' : super.unstorableText(v);
  }
  /** double precision holds NaN, both infinities and -0. */
  override unstorableFloat(): string | undefined {
    return undefined;
  }
  protected kindType(spec: ColumnSpec): string | undefined {
    switch (spec.kind) {
      case 'int64':
        return 'BIGINT';
      case 'decimal':
        // unconstrained: any precision and scale, each value with the scale it was sent with
        return 'NUMERIC';
      case 'float64':
        return 'DOUBLE PRECISION';
      case 'date':
        return 'DATE';
      case 'time':
        return 'TIME';
      case 'timestamp':
        return 'TIMESTAMP';
      case 'timestamptz':
        return 'TIMESTAMPTZ';
      case 'uuid':
        return 'UUID';
      default:
        return undefined;
    }
  }
  columnType(spec: ColumnSpec, isKey: boolean): string {
    const byKind = this.kindType(spec);
    if (byKind) return byKind;
    switch (spec.type) {
      case 'integer':
        return 'BIGINT';
      case 'number':
        return 'NUMERIC';
      case 'boolean':
        return 'BOOLEAN';
      case 'timestamp':
        return 'TIMESTAMPTZ';
      case 'binary':
        return 'BYTEA';
      default:
        return isKey ? 'VARCHAR(400)' : 'TEXT';
    }
  }
  override columnTypes(table: string): Statement {
    return {
      sql:
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable, ` +
        `COALESCE(a.attnum = ANY(i.indkey), false) AS is_key, ` +
        `CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS coll, a.atthasdef AS dflt ` +
        `FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_collation co ON co.oid = a.attcollation ` +
        `LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary ` +
        `WHERE a.attrelid = to_regclass(quote_ident(?)) AND a.attnum > 0 AND NOT a.attisdropped`,
      params: [table],
    };
  }
  /** One ALTER TABLE (one rewrite of the table); NOT NULL and defaults stay as they are. */
  override widenColumns(table: string, changes: ReadonlyArray<{ live: LiveColumnType; type: string }>): string[] {
    if (!changes.length) return [];
    const alters = changes.map(
      (c) =>
        `ALTER COLUMN ${this.quote(c.live.name)} TYPE ${c.type}${c.live.collation ? ` COLLATE ${this.quote(c.live.collation)}` : ''}`,
    );
    return [`ALTER TABLE ${this.quote(table)} ${alters.join(', ')}`];
  }
  timestampType(): string {
    return 'timestamptz';
  }
  booleanType(): string {
    return 'boolean';
  }
  textType(length?: number): string {
    return length ? `varchar(${length})` : 'text';
  }
  bigintType(): string {
    return 'bigint';
  }
  /** The rows of one site and pipeline in one statement, whatever their number (see `writeMany`). */
  upsertLedger(u: LedgerUpsert): Statement {
    const first = u.rows[0];
    if (!first || u.rows.some((r) => r[0] !== first[0] || r[1] !== first[1])) return onConflictLedger(this, u);
    const cols = LEDGER_COLUMNS.map((c) => this.quote(c)).join(', ');
    const json = jsonRows(u.rows.map((r) => [r[2], r[3], r[4], r[5]]));
    const rows =
      json === undefined
        ? 'unnest(?::text[], ?::bigint[], ?::text[], ?::boolean[]) AS u(k, v, h, d)'
        : `(SELECT r->>0 AS k, (r->>1)::bigint AS v, r->>2 AS h, (r->>3)::boolean AS d FROM jsonb_array_elements(?::jsonb) AS r) AS u`;
    return {
      sql:
        `INSERT INTO ${this.quote(u.table)} (${cols}) ` +
        `SELECT ?::integer, ?::text, k, v, h, d, ?::timestamptz FROM ${rows} ` +
        ledgerConflict(this, u.table),
      params: [
        first[0],
        first[1],
        this.now(),
        ...(json === undefined
          ? [u.rows.map((r) => r[2]), u.rows.map((r) => r[3]), u.rows.map((r) => r[4]), u.rows.map((r) => r[5])]
          : [json]),
      ],
    };
  }

  /**
   * Both key sets as arrays, in one statement. One-column keys (the common case): `= ANY` and
   * `<> ALL` (hashed by the server), which the planner runs as one index scan of the owners'
   * lines; wider keys: an anti-join it can hash.
   */
  override deleteUnlisted(table: string, scope: readonly [string, unknown], owner: KeySet, keep: KeySet): Statement {
    const q = (c: string) => this.quote(c);
    if (owner.columns.length === 1 && keep.columns.length === 1) {
      return {
        sql:
          `DELETE FROM ${q(table)} WHERE ${q(scope[0])} = ? AND ${q(owner.columns[0]!)} = ANY(?::${arrayType(owner.sqlTypes[0]!)}) ` +
          `AND ${q(keep.columns[0]!)} <> ALL(?::${arrayType(keep.sqlTypes[0]!)})`,
        // A NULL key matches no stored line (as in NOT EXISTS), but would make `<> ALL` NULL for all.
        params: [scope[1], owner.keys.map((k) => k[0]), keep.keys.map((k) => k[0]).filter((v) => v !== null)],
      };
    }
    const arrays = (k: KeySet) => k.sqlTypes.map((t) => `?::${arrayType(t)}`).join(', ');
    const values = (k: KeySet) => k.columns.map((_, i) => k.keys.map((r) => r[i]));
    const ownCols = owner.columns.map((c) => `d.${q(c)}`).join(', ');
    const keepAlias = keep.columns.map((_, i) => `k${i}`);
    return {
      sql:
        `DELETE FROM ${q(table)} AS d WHERE d.${q(scope[0])} = ? ` +
        `AND (${ownCols}) IN (SELECT * FROM unnest(${arrays(owner)})) ` +
        `AND NOT EXISTS (SELECT 1 FROM unnest(${arrays(keep)}) AS k(${keepAlias.join(', ')}) ` +
        `WHERE ${keep.columns.map((c, i) => `k.${keepAlias[i]} = d.${q(c)}`).join(' AND ')})`,
      params: [scope[1], ...values(owner), ...values(keep)],
    };
  }

  override writeManyChunk(): number {
    return 10_000;
  }

  /**
   * One primary-key lookup per key (a lateral subquery with `LIMIT 1`, which the planner cannot
   * flatten into a join): with `c = ANY(keys)` it scans the whole table once it holds a few tens of
   * thousands of rows (it prices 500 index probes above one sequential scan), so each page of a
   * full scan read the whole side table: 14-19 ms per page of 500 keys at 100k rows and growing,
   * against 2-3 ms this way, whatever the table's size or statistics.
   */
  override selectByKeys(
    table: string,
    columns: readonly string[],
    scope: readonly [string, unknown],
    key: { column: string; sqlType: string; values: readonly unknown[] },
  ): Statement {
    const q = (c: string) => this.quote(c);
    return {
      sql:
        `SELECT ${columns.map((c) => `s.${q(c)}`).join(', ')} FROM unnest(?::${arrayType(key.sqlType)}) AS k(key) ` +
        `CROSS JOIN LATERAL (SELECT ${columns.map(q).join(', ')} FROM ${q(table)} ` +
        `WHERE ${q(scope[0])} = ? AND ${q(key.column)} = k.key LIMIT 1) AS s`,
      params: [key.values, scope[1]],
    };
  }

  /** Only the owner (or a member of its role) may analyze a table: others get a warning, not an error. */
  override refreshStatistics(table: string, columns: readonly string[] = []): { refresh: string; state: Statement } {
    const list = columns.length ? ` (${[...new Set(columns)].map((c) => this.quote(c)).join(', ')})` : '';
    return {
      refresh: `ANALYZE ${this.quote(table)}${list}`,
      state: {
        sql: `SELECT reltuples AS n, pg_has_role(relowner, 'USAGE') AS owned FROM pg_class WHERE oid = to_regclass(?)`,
        params: [this.quote(table)],
      },
    };
  }

  /**
   * One column: `c = ANY(?)` with the keys as one array parameter (PostgreSQL infers the array's
   * type from the column). A statement text that is the same for any number of keys, parsed and
   * planned far faster than an `IN` list of hundreds of placeholders (the site's scan reads every
   * page's details and row states this way).
   */
  override keyPredicate(columns: readonly string[], keys: ReadonlyArray<readonly unknown[]>, alias = ''): Statement {
    if (columns.length !== 1) return super.keyPredicate(columns, keys, alias);
    const col = (alias ? `${alias}.` : '') + this.quote(columns[0]!);
    return { sql: `${col} = ANY(?)`, params: [keys.map((k) => k[0])] };
  }

  /**
   * The rows as one `jsonb` parameter, `INSERT ... SELECT (r->>0)::type, ... FROM
   * jsonb_array_elements(?)`: `JSON.stringify` of the rows costs the client a quarter of what pg's
   * own array literals (one per column, for `unnest`) cost, for the same server work; the
   * statement stays a few hundred characters whatever the row count, instead of tens of
   * thousands of `$n` to build, send and parse (the central's initial-load merge). Rows JSON
   * cannot carry faithfully go as one array per column instead (see {@link jsonRows}).
   */
  override writeMany(
    table: string,
    columns: readonly string[],
    sqlTypes: readonly string[],
    rows: ReadonlyArray<readonly unknown[]>,
    upsertKey?: readonly string[],
    onlyIfChanged = true,
  ): Statement {
    const q = (c: string) => this.quote(c);
    const list = columns.map(q).join(', ');
    const json = jsonRows(
      rows,
      sqlTypes.map((t) => TEXT_TYPE.test(t)),
    );
    const ins =
      json === undefined
        ? `INSERT INTO ${q(table)} (${list}) SELECT * FROM unnest(${sqlTypes.map((t) => `?::${arrayType(t)}`).join(', ')}) ` +
          `AS u(${list})`
        : // cast to the type without its length: an explicit cast to varchar(n) would truncate silently,
          // where the insert itself refuses an over-long value, as with the arrays
          `INSERT INTO ${q(table)} (${list}) SELECT ${sqlTypes.map((t, i) => `(r->>${i})::${baseType(t)}`).join(', ')} ` +
          `FROM jsonb_array_elements(?::jsonb) AS r`;
    return {
      sql: upsertKey ? `${ins} ${this.onConflict(table, upsertKey, columns, onlyIfChanged)}` : ins,
      params: json === undefined ? columns.map((_, i) => rows.map((r) => r[i])) : [json],
    };
  }
}

/** `DECIMAL(p, s)` of the site's precision and scale when this database allows them, else undefined. */
function decimalWithin(spec: ColumnSpec, maxPrecision: number, maxScale: number): string | undefined {
  const { precision, scale = 0 } = spec;
  return precision !== undefined && precision <= maxPrecision && scale <= maxScale && scale <= precision
    ? `DECIMAL(${precision}, ${scale})`
    : undefined;
}

/** A lone surrogate as `JSON.stringify` escapes it (a pair is written as is). */
const LONE_SURROGATE = /\\ud[89a-f][0-9a-f]{2}/i;

/**
 * `rows` as one JSON array of arrays, each value as the text PostgreSQL reads for its column
 * through `->>` (a Date as ISO-8601, a Buffer as `\x` hex, a bigint as decimal, a number bound to
 * a text column (`textColumns`) as its JavaScript text): the same values pg would send. Undefined where JSON cannot carry a value faithfully, so the caller binds arrays:
 * a non-finite number (JSON has none), a lone surrogate or a NUL (jsonb refuses both, where text
 * parameters take U+FFFD or fail with PostgreSQL's own message), another kind of object.
 */
function jsonRows(rows: ReadonlyArray<readonly unknown[]>, textColumns: readonly boolean[] = []): string | undefined {
  let plain = true;
  for (const row of rows) {
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      if (
        typeof v === 'number'
          ? !Number.isFinite(v) || textColumns[i] === true
          : typeof v === 'object'
            ? v !== null
            : typeof v === 'bigint'
      ) {
        plain = false;
        break;
      }
    }
    if (!plain) break;
  }
  let values = rows;
  if (!plain) {
    const converted: unknown[][] = [];
    for (const row of rows) {
      const out: unknown[] = [];
      for (let i = 0; i < row.length; i++) {
        const v = row[i];
        if (typeof v === 'number' && !Number.isFinite(v)) return undefined;
        // jsonb keeps numbers as numeric: `1e21` would come back as 1000000000000000000000
        if (typeof v === 'number' && textColumns[i] === true) out.push(String(v));
        else if (typeof v === 'bigint') out.push(v.toString());
        else if (v instanceof Date) out.push(v.toISOString());
        else if (Buffer.isBuffer(v)) out.push(`\\x${v.toString('hex')}`);
        else if (typeof v === 'object' && v !== null) return undefined;
        else out.push(v);
      }
      converted.push(out);
    }
    values = converted;
  }
  const text = JSON.stringify(values);
  return LONE_SURROGATE.test(text) || text.includes('\\u0000') ? undefined : text;
}

/** `VARCHAR(400)` -> `varchar`: a column type without its length. */
function baseType(sqlType: string): string {
  return sqlType.replace(/\(.*\)$/, '').toLowerCase();
}

/** `TEXT` -> `text[]`, `VARCHAR(400)` -> `varchar[]`: the array type to cast a column's parameter to. */
function arrayType(sqlType: string): string {
  return `${baseType(sqlType)}[]`;
}

/** Column types whose values PostgreSQL keeps as the text it was sent. */
const TEXT_TYPE = /^(text|varchar|character varying|char|character)\b/i;

const LEDGER_COLUMNS = ['id_efector', 'pipeline', 'header_key', 'version', 'row_hash', 'deleted', 'updated_at'];

/**
 * SQLite and PostgreSQL: `ON CONFLICT DO UPDATE ... WHERE older`, returning the rows written
 * (inserted, or updated because this version is newer): exactly the changes the batch won.
 */
function ledgerConflict(d: Dialect, table: string): string {
  const t = d.quote(table);
  return (
    `ON CONFLICT (id_efector, pipeline, header_key) DO UPDATE SET ` +
    `version = excluded.version, row_hash = excluded.row_hash, deleted = excluded.deleted, updated_at = excluded.updated_at ` +
    `WHERE ${t}.version < excluded.version OR (${t}.version = excluded.version AND excluded.deleted = ${d.boolLiteral(true)} AND ${t}.deleted = ${d.boolLiteral(false)}) ` +
    `RETURNING header_key, deleted`
  );
}

function onConflictLedger(d: Dialect, u: LedgerUpsert): Statement {
  const now = d.now(); // one time for the statement's rows, not a Date per row
  const ins = d.insertRows(
    u.table,
    LEDGER_COLUMNS,
    u.rows.map((r) => [r[0], r[1], r[2], r[3], r[4], d.bool(r[5]), now]),
  );
  return { sql: `${ins.sql} ${ledgerConflict(d, u.table)}`, params: ins.params };
}

class MssqlDialect extends Dialect {
  readonly name = 'mssql';
  readonly maxParams = 2_000;
  quote(id: string): string {
    return `[${id.replace(/]/g, ']]')}]`;
  }
  render(sql: string): string {
    return numberPlaceholders(sql, '@', 0);
  }
  override selectLimit(body: string, limit: number): string {
    return `SELECT TOP (${Math.trunc(limit)}) ${body}`;
  }
  /** nvarchar is UTF-16: it holds any JavaScript string, a lone surrogate included (tedious writes UCS-2). */
  override readonly holdsAnyText = true;
  /**
   * float (binary64) has no NaN or infinities. A negative zero is refused too, conservatively:
   * nothing found documents that a float column keeps the sign of zero through the driver (it
   * was not tried against a server here), and MariaDB's DOUBLE does not.
   */
  override unstorableFloat(v: string): string | undefined {
    return v === '-0'
      ? 'a negative zero, which a SQL Server float is not known to keep'
      : `${v}, which a SQL Server float cannot hold`;
  }
  /**
   * tedious reads decimals and money as JavaScript numbers (15-17 digits) and every date and time
   * as a `Date` (milliseconds, and a TIME as 1970-01-01): those columns are read as SQL Server's
   * own text instead, aliased to their names, and that text is turned into the wire forms the
   * other dialects send (see value-forms.ts). `money` needs style 2 for its four decimals, so a
   * decimal kind is read as text only when the catalogue type is known.
   */
  override columnReader(column: string, stored?: StoredColumn): ColumnReader {
    const q = this.quote(column);
    const type = stored?.dbType?.toLowerCase();
    const as = (expr: string, toWire: (t: string) => string): ColumnReader => ({ sql: `${expr} AS ${q}`, toWire });
    switch (type) {
      case 'decimal':
      case 'numeric':
        return as(`CAST(${q} AS VARCHAR(50))`, mssqlDecimalToWire);
      case 'money':
      case 'smallmoney':
        return as(`CONVERT(VARCHAR(30), ${q}, 2)`, mssqlDecimalToWire);
    }
    if (type === 'timestamp' || type === 'rowversion') return { sql: q };
    switch (stored?.kind) {
      case 'date':
        return as(`CONVERT(VARCHAR(10), ${q}, 23)`, mssqlDateToWire);
      case 'time':
        return as(`CAST(${q} AS VARCHAR(16))`, mssqlTimeToWire);
      case 'timestamp':
        return as(`CONVERT(VARCHAR(27), ${q}, 121)`, mssqlTimestampToWire);
      case 'timestamptz':
        return as(`CONVERT(VARCHAR(34), ${q}, 121)`, mssqlInstantToWire);
      default:
        return { sql: q };
    }
  }
  override unstorableText(): string | undefined {
    return undefined;
  }
  protected kindType(spec: ColumnSpec, isKey: boolean): string | undefined {
    switch (spec.kind) {
      case 'int64':
        return 'BIGINT';
      case 'decimal':
        return decimalWithin(spec, 38, 38) ?? 'DECIMAL(38, 10)';
      case 'float64':
        return 'FLOAT(53)';
      case 'date':
        return 'DATE';
      case 'time':
        return 'TIME(7)';
      case 'timestamp':
        return 'DATETIME2(7)';
      case 'timestamptz':
        return 'DATETIMEOFFSET(7)';
      case 'uuid':
        return isKey ? undefined : 'UNIQUEIDENTIFIER';
      default:
        return undefined;
    }
  }
  columnType(spec: ColumnSpec, isKey: boolean): string {
    const byKind = this.kindType(spec, isKey);
    if (byKind) return byKind;
    switch (spec.type) {
      case 'integer':
        return 'BIGINT';
      case 'number':
        return 'DECIMAL(38, 10)';
      case 'boolean':
        return 'BIT';
      case 'timestamp':
        return 'DATETIME2(3)';
      case 'binary':
        return 'VARBINARY(MAX)';
      default:
        return isKey ? `NVARCHAR(400) COLLATE ${this.keyCollation}` : 'NVARCHAR(MAX)';
    }
  }
  /**
   * Binary, so case and accents count. SQL Server still pads trailing spaces under every collation
   * (ANSI comparison): keys that differ only by them are refused by the merge (see keyComparison).
   * `_BIN2` rather than `_BIN2_UTF8`: the key columns are NVARCHAR, and it exists before 2019.
   */
  override readonly keyCollation = 'Latin1_General_100_BIN2';
  override keyComparison(collation: string | null | undefined): KeyComparison {
    if (!collation) return EXACT_COMPARISON;
    return {
      ignoresCase: /_CI(_|$)/i.test(collation),
      ignoresAccents: /_AI(_|$)/i.test(collation),
      ignoresTrailingSpaces: true,
    };
  }
  override columnCollations(table: string): Statement {
    return {
      sql:
        `SELECT c.name, c.collation_name AS coll, CASE WHEN EXISTS (SELECT 1 FROM sys.indexes i JOIN sys.index_columns ic ` +
        `ON ic.object_id = i.object_id AND ic.index_id = i.index_id WHERE i.object_id = c.object_id AND i.is_primary_key = 1 ` +
        `AND ic.column_id = c.column_id) THEN 1 ELSE 0 END AS is_key FROM sys.columns c ` +
        `WHERE c.object_id = OBJECT_ID(?) AND c.collation_name IS NOT NULL`,
      params: [table],
    };
  }
  /** A primary key column cannot be altered: the key is dropped, the column altered, the key added back by its name. */
  override exactKeyColumn(table: string, column: string, type: string): string[] {
    const t = `N'${table.replace(/'/g, "''")}'`;
    const qt = this.quote(table).replace(/'/g, "''");
    return [
      `DECLARE @pk sysname = (SELECT name FROM sys.key_constraints WHERE parent_object_id = OBJECT_ID(${t}) AND type = 'PK'); ` +
        `DECLARE @cols nvarchar(max) = (SELECT STRING_AGG(QUOTENAME(c.name), N', ') WITHIN GROUP (ORDER BY ic.key_ordinal) ` +
        `FROM sys.indexes i JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id ` +
        `JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id ` +
        `WHERE i.object_id = OBJECT_ID(${t}) AND i.is_primary_key = 1); ` +
        `IF @pk IS NOT NULL EXEC(N'ALTER TABLE ${qt} DROP CONSTRAINT ' + QUOTENAME(@pk)); ` +
        `ALTER TABLE ${this.quote(table)} ALTER COLUMN ${this.quote(column)} ${type} COLLATE ${this.keyCollation} NOT NULL; ` +
        `IF @pk IS NOT NULL EXEC(N'ALTER TABLE ${qt} ADD CONSTRAINT ' + QUOTENAME(@pk) + N' PRIMARY KEY (' + @cols + N')');`,
    ];
  }
  override columnTypes(table: string): Statement {
    return {
      sql:
        `SELECT c.name, TYPE_NAME(c.system_type_id) AS type, c.max_length AS len, c.precision AS prec, c.scale AS scale, ` +
        `c.is_nullable AS nullable, CASE WHEN EXISTS (SELECT 1 FROM sys.indexes i JOIN sys.index_columns ic ` +
        `ON ic.object_id = i.object_id AND ic.index_id = i.index_id WHERE i.object_id = c.object_id AND i.is_primary_key = 1 ` +
        `AND ic.column_id = c.column_id) THEN 1 ELSE 0 END AS is_key, c.collation_name AS coll, ` +
        `CASE WHEN c.default_object_id <> 0 THEN 1 ELSE 0 END AS dflt FROM sys.columns c WHERE c.object_id = OBJECT_ID(?)`,
      params: [table],
    };
  }
  /** One ALTER COLUMN each (SQL Server takes one per statement), restating NULL / NOT NULL and the collation. */
  override widenColumns(table: string, changes: ReadonlyArray<{ live: LiveColumnType; type: string }>): string[] {
    return changes.map(
      (c) =>
        `ALTER TABLE ${this.quote(table)} ALTER COLUMN ${this.quote(c.live.name)} ${c.type}` +
        `${c.live.collation && !/\bCOLLATE\b/i.test(c.type) ? ` COLLATE ${c.live.collation}` : ''}${c.live.nullable ? ' NULL' : ' NOT NULL'}`,
    );
  }
  timestampType(): string {
    return 'datetime2';
  }
  booleanType(): string {
    return 'bit';
  }
  textType(length?: number): string {
    return length ? `nvarchar(${length})` : 'nvarchar(max)';
  }
  bigintType(): string {
    return 'bigint';
  }
  override upsert(
    table: string,
    keyColumns: readonly string[],
    columns: readonly string[],
    rows: ReadonlyArray<readonly unknown[]>,
    opts: { onlyIfChanged?: boolean } = {},
  ): Statement {
    const q = (c: string) => this.quote(c);
    const others = columns.filter((c) => !keyColumns.includes(c));
    const set = others.map((c) => `t.${q(c)} = s.${q(c)}`);
    // EXCEPT compares NULLs as equal: the row is updated only when a value really differs.
    const changed = opts.onlyIfChanged
      ? ` AND EXISTS (SELECT ${others.map((c) => `s.${q(c)}`).join(', ')} EXCEPT SELECT ${others.map((c) => `t.${q(c)}`).join(', ')})`
      : '';
    return {
      sql:
        `MERGE ${q(table)} WITH (HOLDLOCK) AS t USING (VALUES ${valuesList(columns.length, rows.length)}) ` +
        `AS s (${columns.map(q).join(', ')}) ON ${keyColumns.map((c) => `t.${q(c)} = s.${q(c)}`).join(' AND ')} ` +
        (set.length ? `WHEN MATCHED${changed} THEN UPDATE SET ${set.join(', ')} ` : '') +
        `WHEN NOT MATCHED THEN INSERT (${columns.map(q).join(', ')}) VALUES (${columns.map((c) => `s.${q(c)}`).join(', ')});`,
      params: flatten(rows),
    };
  }

  override createTableIfMissing(
    table: string,
    columns: ReadonlyArray<{ name: string; type: string; nullable: boolean }>,
    primaryKey: readonly string[],
  ): string {
    const literal = `N'${table.replace(/'/g, "''")}'`;
    return `IF OBJECT_ID(${literal}, N'U') IS NULL ${super.createTableIfMissing(table, columns, primaryKey).replace('CREATE TABLE IF NOT EXISTS', 'CREATE TABLE')}`;
  }

  override createIndexIfMissing(table: string, name: string, columns: readonly string[]): string {
    const t = `N'${table.replace(/'/g, "''")}'`;
    const n = `N'${name.replace(/'/g, "''")}'`;
    return `IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = ${n} AND object_id = OBJECT_ID(${t})) CREATE INDEX ${this.quote(name)} ON ${this.quote(table)} (${columns.map((c) => this.quote(c)).join(', ')})`;
  }

  /**
   * A date or time as ISO 8601 text (see `mssqlDateTimeParam`), never a `Date`, which the driver
   * sends as a DATETIME (1/300 s, milliseconds only); SQL Server converts the text to the column's
   * type. `kind`: the column's, where known; a text column keeps the wire text as it is. Only a
   * form that text cannot carry (an offset other than Z) goes through a `Date`.
   */
  override bindValue(v: unknown, type: ColumnSpec['type'], kind?: ColumnKind): unknown {
    if (typeof v === 'string') {
      if (kind === 'date' || kind === 'timestamp' || kind === 'timestamptz')
        return mssqlDateTimeParam(v, kind) ?? new Date(v);
      if (kind === undefined && type === 'timestamp') return mssqlDateTimeParam(v, undefined) ?? new Date(v);
    }
    return super.bindValue(v, type);
  }

  override insertIgnore(table: string, columns: readonly string[], row: readonly unknown[]): Statement {
    const q = (c: string) => this.quote(c);
    return {
      sql:
        `INSERT INTO ${q(table)} (${columns.map(q).join(', ')}) SELECT ${columns.map(() => '?').join(', ')} ` +
        `WHERE NOT EXISTS (SELECT 1 FROM ${q(table)} WITH (UPDLOCK, HOLDLOCK) WHERE ${q(columns[0]!)} = ?)`,
      params: [...row, row[0]],
    };
  }

  /** MERGE WITH (HOLDLOCK): without it concurrent MERGEs on one key deadlock or hit duplicate keys. */
  upsertLedger(u: LedgerUpsert): Statement {
    const cols = LEDGER_COLUMNS;
    const tuple = `(${cols.map(() => '?').join(', ')})`;
    const now = this.now();
    return {
      sql:
        `MERGE ${this.quote(u.table)} WITH (HOLDLOCK) AS t USING (VALUES ${u.rows.map(() => tuple).join(', ')}) ` +
        `AS s (${cols.join(', ')}) ON t.id_efector = s.id_efector AND t.pipeline = s.pipeline AND t.header_key = s.header_key ` +
        `WHEN MATCHED AND (t.version < s.version OR (t.version = s.version AND s.deleted = 1 AND t.deleted = 0)) THEN UPDATE SET version = s.version, row_hash = s.row_hash, deleted = s.deleted, updated_at = s.updated_at ` +
        `WHEN NOT MATCHED THEN INSERT (${cols.join(', ')}) VALUES (${cols.map((c) => `s.${c}`).join(', ')});`,
      params: u.rows.flatMap((r) => [r[0], r[1], r[2], r[3], r[4], r[5], now]),
    };
  }
}

/** MySQL/MariaDB. `CREATE INDEX IF NOT EXISTS` (the target tables' index) needs MariaDB; MySQL 8 lacks it. */
class MysqlDialect extends Dialect {
  readonly name = 'mysql';
  /** DOUBLE has no NaN or infinities, and stores -0 as 0. */
  override unstorableFloat(v: string): string | undefined {
    return v === '-0'
      ? 'a negative zero, which MariaDB/MySQL stores as 0'
      : `${v}, which a MariaDB/MySQL DOUBLE cannot hold`;
  }
  readonly maxParams = 65_000;
  quote(id: string): string {
    return `\`${id.replace(/`/g, '``')}\``;
  }
  render(sql: string): string {
    return sql;
  }
  protected kindType(spec: ColumnSpec, isKey: boolean): string | undefined {
    switch (spec.kind) {
      case 'int64':
        return 'BIGINT';
      case 'decimal':
        return decimalWithin(spec, 65, 30) ?? 'DECIMAL(65, 30)';
      case 'float64':
        return 'DOUBLE';
      case 'date':
        return 'DATE';
      case 'time':
        return 'TIME(6)';
      // DATETIME, not TIMESTAMP: TIMESTAMP ends in 2038 and converts through the session's zone
      case 'timestamp':
      case 'timestamptz':
        return 'DATETIME(6)';
      case 'uuid':
        return isKey ? undefined : 'CHAR(36)';
      default:
        return undefined;
    }
  }
  columnType(spec: ColumnSpec, isKey: boolean): string {
    const byKind = this.kindType(spec, isKey);
    if (byKind) return byKind;
    switch (spec.type) {
      case 'integer':
        return 'BIGINT';
      case 'number':
        return 'DECIMAL(38, 10)';
      case 'boolean':
        return 'TINYINT(1)';
      case 'timestamp':
        return 'DATETIME(3)';
      case 'binary':
        // a key column needs a length on MariaDB/MySQL (a BLOB cannot be one)
        return isKey ? 'VARBINARY(255)' : 'LONGBLOB';
      default:
        // LONGTEXT: TEXT holds 64 KB, and the site's text may be longer
        return isKey ? `VARCHAR(255) CHARACTER SET utf8mb4 COLLATE ${this.keyCollation}` : 'LONGTEXT';
    }
  }
  /**
   * Binary and NO PAD: `utf8mb4_bin` still pads trailing spaces ('abc' = 'abc '). MariaDB's name;
   * MySQL 8 calls it `utf8mb4_0900_bin` (like `CREATE INDEX IF NOT EXISTS`, this is MariaDB's form).
   */
  override readonly keyCollation = 'utf8mb4_nopad_bin';
  override keyComparison(collation: string | null | undefined): KeyComparison {
    if (!collation) return EXACT_COMPARISON;
    const c = collation.toLowerCase();
    const ignoresCase = /_ci$/.test(c);
    return {
      ignoresCase,
      // `_ci` collations ignore accents too unless they say `_as_` (MySQL 8, MariaDB 11 UCA 14).
      ignoresAccents: ignoresCase && !c.includes('_as_'),
      // Every collation pads but MariaDB's `nopad` ones and MySQL 8's `0900` ones.
      ignoresTrailingSpaces: c !== 'binary' && !c.includes('nopad') && !c.includes('_0900_'),
    };
  }
  override columnCollations(table: string): Statement {
    return {
      sql:
        `SELECT COLUMN_NAME AS name, COLLATION_NAME AS coll, (COLUMN_KEY = 'PRI') AS is_key FROM information_schema.COLUMNS ` +
        `WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLLATION_NAME IS NOT NULL`,
      params: [table],
    };
  }
  override exactKeyColumn(table: string, column: string, type: string): string[] {
    return [
      `ALTER TABLE ${this.quote(table)} MODIFY ${this.quote(column)} ${type} CHARACTER SET utf8mb4 COLLATE ${this.keyCollation} NOT NULL`,
    ];
  }
  override columnTypes(table: string): Statement {
    return {
      sql:
        `SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type, IS_NULLABLE AS nullable, (COLUMN_KEY = 'PRI') AS is_key, ` +
        `COLLATION_NAME AS coll, CHARACTER_SET_NAME AS charset, COLUMN_DEFAULT AS dflt FROM information_schema.COLUMNS ` +
        `WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
      params: [table],
    };
  }
  /**
   * One ALTER TABLE (one copy of the table), restating NULL / NOT NULL and a text column's
   * character set and collation: MODIFY would otherwise give it the table's defaults.
   */
  override widenColumns(table: string, changes: ReadonlyArray<{ live: LiveColumnType; type: string }>): string[] {
    if (!changes.length) return [];
    const mods = changes.map((c) => {
      const text = c.live.charset && c.live.charset !== 'binary' && !/\bCOLLATE\b/i.test(c.type);
      return (
        `MODIFY ${this.quote(c.live.name)} ${c.type}` +
        `${text ? ` CHARACTER SET ${c.live.charset}${c.live.collation ? ` COLLATE ${c.live.collation}` : ''}` : ''}` +
        `${c.live.nullable ? ' NULL' : ' NOT NULL'}`
      );
    });
    return [`ALTER TABLE ${this.quote(table)} ${mods.join(', ')}`];
  }
  timestampType(): string {
    return 'datetime(3)';
  }
  booleanType(): string {
    return 'tinyint';
  }
  textType(length?: number): string {
    return length ? `varchar(${Math.min(length, 255)})` : 'text';
  }
  bigintType(): string {
    return 'bigint';
  }
  override bool(v: boolean): unknown {
    return v ? 1 : 0;
  }
  /** `onlyIfChanged` needs nothing here: InnoDB does not write a row whose values stay the same. */
  override upsert(
    table: string,
    keyColumns: readonly string[],
    columns: readonly string[],
    rows: ReadonlyArray<readonly unknown[]>,
  ): Statement {
    const ins = this.insertRows(table, columns, rows);
    const others = columns.filter((c) => !keyColumns.includes(c));
    // No other column: a no-op assignment keeps the duplicate from failing.
    const set = (others.length ? others : keyColumns.slice(0, 1))
      .map((c) => `${this.quote(c)} = VALUES(${this.quote(c)})`)
      .join(', ');
    return { sql: `${ins.sql} ON DUPLICATE KEY UPDATE ${set}`, params: ins.params };
  }

  /**
   * A wall clock as its text (a `Date` would keep milliseconds only, and read a text without zone
   * in the process's time zone); only a value with an offset goes through a `Date`, to UTC.
   */
  override bindValue(v: unknown, type: ColumnSpec['type']): unknown {
    if (type === 'timestamp' && typeof v === 'string') return mysqlWallClock(v) ?? new Date(v);
    return super.bindValue(v, type);
  }

  override insertIgnore(table: string, columns: readonly string[], row: readonly unknown[]): Statement {
    const ins = this.insertRows(table, columns, [row]);
    return { sql: ins.sql.replace(/^INSERT INTO/, 'INSERT IGNORE INTO'), params: ins.params };
  }

  /** ON DUPLICATE KEY UPDATE evaluates left to right, so `version` is assigned last. */
  upsertLedger(u: LedgerUpsert): Statement {
    const now = this.now();
    const ins = this.insertRows(
      u.table,
      LEDGER_COLUMNS,
      u.rows.map((r) => [r[0], r[1], r[2], r[3], r[4], this.bool(r[5]), now]),
    );
    const newer = '(version < VALUES(version) OR (version = VALUES(version) AND VALUES(deleted) = 1 AND deleted = 0))';
    return {
      sql:
        `${ins.sql} ON DUPLICATE KEY UPDATE row_hash = IF(${newer}, VALUES(row_hash), row_hash), ` +
        `deleted = IF(${newer}, VALUES(deleted), deleted), updated_at = IF(${newer}, VALUES(updated_at), updated_at), ` +
        `version = IF(${newer}, VALUES(version), version)`,
      params: ins.params,
    };
  }
}

const DIALECTS: Record<DialectName, () => Dialect> = {
  sqlite: () => new SqliteDialect(),
  postgres: () => new PostgresDialect(),
  mssql: () => new MssqlDialect(),
  mysql: () => new MysqlDialect(),
};

export function dialectFor(name: DialectName): Dialect {
  return DIALECTS[name]();
}
