import type { ColumnSpec, ColumnType } from '@sitesync/protocol';
import { EXACT_COMPARISON, type KeyComparison } from '../key-collation';
import type { LiveColumnType } from '../column-fit';
import { Dialect, type KeySet, type Statement } from './dialect';
import { kindTypeOf, numberPlaceholders } from './sql-text';

/** PostgreSQL (pg): key sets and bulk writes travel as array or JSON parameters. */
export class PostgresDialect extends Dialect {
  readonly name = 'postgres';
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
    return kindTypeOf(spec, {
      int64: 'BIGINT',
      // unconstrained: any precision and scale, each value with the scale it was sent with
      decimal: 'NUMERIC',
      float64: 'DOUBLE PRECISION',
      date: 'DATE',
      time: 'TIME',
      timestamp: 'TIMESTAMP',
      timestamptz: 'TIMESTAMPTZ',
      uuid: 'UUID',
    });
  }
  protected coarseTypes(isKey: boolean): Record<ColumnType, string> {
    return {
      integer: 'BIGINT',
      number: 'NUMERIC',
      boolean: 'BOOLEAN',
      timestamp: 'TIMESTAMPTZ',
      binary: 'BYTEA',
      text: isKey ? 'VARCHAR(400)' : 'TEXT',
    };
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

/** A lone surrogate as `JSON.stringify` escapes it (a pair is written as is). */
const LONE_SURROGATE = /\\ud[89a-f][0-9a-f]{2}/i;

/**
 * `rows` as one JSON array of arrays, each value as the text PostgreSQL reads for its column
 * through `->>` (a Date as ISO-8601, a Buffer as `\x` hex, a bigint as decimal, a number bound to
 * a text column (`textColumns`) as its JavaScript text): the same values pg would send. Undefined where JSON cannot carry a value faithfully, so the caller binds arrays:
 * a non-finite number (JSON has none), a lone surrogate or a NUL (jsonb refuses both, where text
 * parameters take U+FFFD or fail with PostgreSQL's own message), another kind of object.
 */
export function jsonRows(
  rows: ReadonlyArray<readonly unknown[]>,
  textColumns: readonly boolean[] = [],
): string | undefined {
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
