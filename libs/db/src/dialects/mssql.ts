import type { ColumnKind, ColumnSpec, ColumnType } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from '../key-collation';
import {
  mssqlDateTimeParam,
  mssqlDateToWire,
  mssqlDecimalToWire,
  mssqlInstantToWire,
  mssqlTimestampToWire,
  mssqlTimeToWire,
} from '../value-forms';
import type { LiveColumnType } from '../column-fit';
import { Dialect, type ColumnReader, type Statement, type StoredColumn } from './dialect';
import { decimalWithin, flatten, kindTypeOf, numberPlaceholders, valuesList } from './sql-text';

/** SQL Server (tedious): `@n` parameters, at most 2,100 a statement; MERGE for upserts. */
export class MssqlDialect extends Dialect {
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
    return kindTypeOf(spec, {
      int64: 'BIGINT',
      decimal: decimalWithin(spec, 38, 38) ?? 'DECIMAL(38, 10)',
      float64: 'FLOAT(53)',
      date: 'DATE',
      time: 'TIME(7)',
      timestamp: 'DATETIME2(7)',
      timestamptz: 'DATETIMEOFFSET(7)',
      uuid: isKey ? undefined : 'UNIQUEIDENTIFIER',
    });
  }
  protected coarseTypes(isKey: boolean): Record<ColumnType, string> {
    return {
      integer: 'BIGINT',
      number: 'DECIMAL(38, 10)',
      boolean: 'BIT',
      timestamp: 'DATETIME2(3)',
      binary: 'VARBINARY(MAX)',
      text: isKey ? `NVARCHAR(400) COLLATE ${this.keyCollation}` : 'NVARCHAR(MAX)',
    };
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
}
