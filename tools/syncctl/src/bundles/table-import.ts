import type { ColumnInfo, Database, Dialect, Queryable, TableInfo } from '@sitesync/db';
import { valueMismatch, type ImportTablePlan } from './bundle-validator';
import type { ImportRow, ImportValue } from './import-data';

/**
 * The rows of one data file added to their table: those whose primary key is not there yet, never
 * an update or a delete. Set-based: per chunk of rows, one query for the keys that exist and one
 * multi-row INSERT of the rest (a 100k-row file on a server is ~200 round trips, not 100k).
 */

/** A data file checked against its table as it is when the import runs. */
export interface TableImport {
  info: TableInfo;
  /** The table's columns by lower-cased name. */
  columns: Map<string, ColumnInfo>;
  /** The primary key's columns. */
  key: ColumnInfo[];
  rows: readonly ImportRow[];
  /** Rows per lookup and per INSERT, within the dialect's parameter and VALUES limits. */
  chunk: number;
}

/** Checks `t` against the live table (an earlier entry may have created or changed it). */
export async function prepareImport(db: Database, t: ImportTablePlan): Promise<TableImport> {
  const info = await db.describeTable(t.table);
  if (!info) throw new Error(`table ${t.table} does not exist`);
  const columns = new Map(info.columns.map((c) => [c.name.toLowerCase(), c]));
  const unknown = t.data.columns.filter((c) => !columns.has(c.toLowerCase()));
  if (unknown.length) throw new Error(`table ${info.name} has no column ${unknown.join(', ')}`);
  if (info.primaryKey.length === 0)
    throw new Error(`table ${info.name} has no primary key: an import cannot tell which rows exist already`);
  for (const [i, row] of t.data.rows.entries()) {
    for (const [c, v] of Object.entries(row)) {
      const why = valueMismatch(v, columns.get(c.toLowerCase())!);
      if (why) throw new Error(`row ${i + 1}, column ${c}: ${why}`);
    }
  }
  const key = info.primaryKey.map((k) => columns.get(k.toLowerCase())!);
  const perRow = Math.max(key.length, t.data.columns.length);
  const chunk = Math.min(db.dialect.maxRowsPerInsert, db.dialect.chunkSize(perRow));
  return { info, columns, key, rows: t.data.rows, chunk };
}

/** Adds the rows whose primary key is not in the table, through `tx`; returns how many. */
export async function addMissingRows(tx: Queryable, p: TableImport): Promise<number> {
  let added = 0;
  for (let i = 0; i < p.rows.length; i += p.chunk) {
    const missing = await missingRows(tx, p, p.rows.slice(i, i + p.chunk));
    for (const group of byColumnSet(missing)) await tx.run(insertStatement(p, group, tx.dialect));
    added += missing.length;
  }
  return added;
}

/** Rows of `t` whose primary key is not in its table now (for a dry run's plan). */
export async function countMissingRows(db: Database, t: ImportTablePlan): Promise<number> {
  const p = await prepareImport(db, t);
  let missing = 0;
  for (let i = 0; i < p.rows.length; i += p.chunk)
    missing += (await missingRows(db, p, p.rows.slice(i, i + p.chunk))).length;
  return missing;
}

/**
 * The rows of `rows` whose key the table does not hold, the first of any two with one key. The
 * database compares (its collation and conversions decide what "exists" means): a row is taken as
 * present only when the database returned its very key; when it returned keys that read otherwise
 * (`abc` for `ABC` under a case-insensitive collation, `1.5000` for `1.5`), the rows left are asked
 * about once more, and row by row if the database still finds some of them.
 */
async function missingRows(q: Queryable, p: TableImport, rows: readonly ImportRow[]): Promise<ImportRow[]> {
  const keyed = rows.map((row) => ({ row, key: boundKey(p, row, q.dialect) }));
  const present = await existingKeys(
    q,
    p,
    keyed.map((k) => k.key),
  );
  let missing = keyed.filter((k) => !present.has(keyText(k.key)));
  if (
    present.size > 0 &&
    missing.length > 0 &&
    (
      await existingKeys(
        q,
        p,
        missing.map((k) => k.key),
      )
    ).size > 0
  ) {
    const confirmed: typeof missing = [];
    for (const k of missing) if (!(await rowExists(q, p, k.key))) confirmed.push(k);
    missing = confirmed;
  }
  const seen = new Set<string>();
  return missing
    .filter((k) => {
      const text = keyText(k.key);
      if (seen.has(text)) return false;
      seen.add(text);
      return true;
    })
    .map((k) => k.row);
}

/** The keys among `keys` that the table holds, as the database returns them (see {@link keyText}). */
async function existingKeys(
  q: Queryable,
  p: TableImport,
  keys: ReadonlyArray<readonly unknown[]>,
): Promise<Set<string>> {
  const d = q.dialect;
  const names = p.key.map((c) => c.name);
  const where = d.keyPredicate(names, keys);
  const found = await q.query<Record<string, unknown>>(
    `SELECT ${names.map((c, i) => `${d.quote(c)} AS k${i}`).join(', ')} FROM ${quotedTable(p.info.name, d)} WHERE ${where.sql}`,
    where.params,
  );
  return new Set(found.map((r) => keyText(names.map((_, i) => r[`k${i}`]))));
}

async function rowExists(q: Queryable, p: TableImport, key: readonly unknown[]): Promise<boolean> {
  const d = q.dialect;
  const found = await q.query(
    d.selectLimit(
      `1 AS x FROM ${quotedTable(p.info.name, d)} WHERE ${p.key.map((c) => `${d.quote(c.name)} = ?`).join(' AND ')}`,
      1,
    ),
    key,
  );
  return found.length > 0;
}

function boundKey(p: TableImport, row: ImportRow, d: Dialect): unknown[] {
  const lower = new Map(Object.entries(row).map(([k, v]) => [k.toLowerCase(), v]));
  return p.key.map((c) => bindImportValue(lower.get(c.name.toLowerCase()) ?? null, c, d));
}

/**
 * A key as text for matching a bound key to one the database returned: equal texts are equal keys
 * in any database (7 and '7' in an integer column; the same string under any collation). Keys
 * that are equal but read otherwise do not match here; {@link missingRows} asks the database again.
 */
function keyText(key: readonly unknown[]): string {
  return JSON.stringify(
    key.map((v) => {
      if (v === null || v === undefined) return null;
      if (v instanceof Date) return v.toISOString();
      if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
      return String(v);
    }),
  );
}

/** Rows grouped by the columns they name (a JSON row may leave a column to its default). */
function byColumnSet(rows: readonly ImportRow[]): ImportRow[][] {
  const groups = new Map<string, ImportRow[]>();
  for (const row of rows) {
    const set = Object.keys(row).join('\u0000');
    groups.set(set, [...(groups.get(set) ?? []), row]);
  }
  return [...groups.values()];
}

/** One multi-row INSERT of rows that name the same columns. */
function insertStatement(p: TableImport, rows: readonly ImportRow[], d: Dialect): { sql: string; params: unknown[] } {
  const names = Object.keys(rows[0]!);
  const cols = names.map((n) => p.columns.get(n.toLowerCase())!);
  const tuple = `(${cols.map(() => '?').join(', ')})`;
  return {
    sql: `INSERT INTO ${quotedTable(p.info.name, d)} (${cols.map((c) => d.quote(c.name)).join(', ')}) VALUES ${rows.map(() => tuple).join(', ')}`,
    params: rows.flatMap((row) => cols.map((c, i) => bindImportValue(row[names[i]!] ?? null, c, d))),
  };
}

/** `schema.table` quoted part by part. */
function quotedTable(name: string, d: Dialect): string {
  return name
    .split('.')
    .map((part) => d.quote(part))
    .join('.');
}

/** A value from a data file made bindable for its column: numbers, booleans and zoned times converted. */
export function bindImportValue(v: ImportValue, col: ColumnInfo, d: Dialect): unknown {
  if (v === null) return null;
  switch (col.type) {
    case 'integer':
    case 'number': {
      if (typeof v === 'boolean') return v ? 1 : 0;
      const n = Number(v);
      // Beyond 2^53 a JS number loses digits: the database parses the text instead.
      return Number.isSafeInteger(n) || col.type === 'number' ? n : String(v).trim();
    }
    case 'boolean':
      return d.bool(typeof v === 'boolean' ? v : /^(true|t|1)$/i.test(String(v).trim()));
    case 'timestamp':
      // A time with a zone is an instant: the driver writes it in the database's terms. SQLite keeps text.
      return d.name !== 'sqlite' && /(Z|[+-]\d\d:?\d\d)$/.test(String(v)) ? new Date(String(v)) : v;
    default:
      return d.bindValue(typeof v === 'string' ? v : String(v), col.type);
  }
}
