import type { ColumnSpec, ColumnType } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from '../key-collation';
import { Dialect, type Statement } from './dialect';

/** SQLite (better-sqlite3): no boolean, decimal or timestamp types; booleans as 0/1, times as ISO text. */
export class SqliteDialect extends Dialect {
  readonly name = 'sqlite';
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
  protected coarseTypes(): Record<ColumnType, string> {
    return { integer: 'INTEGER', boolean: 'INTEGER', number: 'REAL', binary: 'BLOB', text: 'TEXT', timestamp: 'TEXT' };
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
  /** ISO text, which compares in time order. */
  override time(t: Date): unknown {
    return t.toISOString();
  }
}
