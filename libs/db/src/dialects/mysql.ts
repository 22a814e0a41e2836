import type { ColumnSpec, ColumnType } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from '../key-collation';
import { mysqlWallClock } from '../value-forms';
import type { LiveColumnType } from '../column-fit';
import { Dialect, type Statement } from './dialect';
import { decimalWithin, kindTypeOf } from './sql-text';

/** MySQL/MariaDB. `CREATE INDEX IF NOT EXISTS` (the target tables' index) needs MariaDB; MySQL 8 lacks it. */
export class MysqlDialect extends Dialect {
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
    return kindTypeOf(spec, {
      int64: 'BIGINT',
      decimal: decimalWithin(spec, 65, 30) ?? 'DECIMAL(65, 30)',
      float64: 'DOUBLE',
      date: 'DATE',
      time: 'TIME(6)',
      // DATETIME, not TIMESTAMP: TIMESTAMP ends in 2038 and converts through the session's zone
      timestamp: 'DATETIME(6)',
      timestamptz: 'DATETIME(6)',
      uuid: isKey ? undefined : 'CHAR(36)',
    });
  }
  protected coarseTypes(isKey: boolean): Record<ColumnType, string> {
    return {
      integer: 'BIGINT',
      number: 'DECIMAL(38, 10)',
      boolean: 'TINYINT(1)',
      timestamp: 'DATETIME(3)',
      // a key column needs a length on MariaDB/MySQL (a BLOB cannot be one)
      binary: isKey ? 'VARBINARY(255)' : 'LONGBLOB',
      // LONGTEXT: TEXT holds 64 KB, and the site's text may be longer
      text: isKey ? `VARCHAR(255) CHARACTER SET utf8mb4 COLLATE ${this.keyCollation}` : 'LONGTEXT',
    };
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
}
