import { encodeKey, toWireValues, type ColumnSpec, type WireValue, type WireValues } from '@sitesync/protocol';
import type { Database } from './database';
import type { Dialect } from './dialects';

/**
 * Where one pipeline's headers and their details live, and which rows count. `specs` (the
 * columns' wire types, in `columns` order) bind key values as the columns hold them: a binary key
 * travels as `base64:` text and must be compared as bytes. `dbTypes` (the catalogue's type names,
 * in `columns` order), with the specs' kinds, tell the dialect how to read each column exactly
 * (see `Dialect.columnReader`); without them SQL Server reads decimals through its driver.
 */
export interface HeaderSource {
  header: {
    table: string;
    key: readonly string[];
    columns: readonly string[];
    specs: readonly ColumnSpec[];
    dbTypes?: readonly string[];
  };
  /** `joinColumns`: the detail columns that hold the header key, in header-key order. */
  detail: {
    table: string;
    joinColumns: readonly string[];
    columns: readonly string[];
    specs: readonly ColumnSpec[];
    dbTypes?: readonly string[];
  } | null;
  /** A condition on the header table (the hashing file's `filter`), as SQL text. */
  headerFilter?: string;
  /** A condition on both tables with parameters (e.g. the central's `id_efector = ?`). */
  scope?: { sql: string; params: unknown[] };
}

/** A header and its detail lines, each row as its values in the source's column order. */
export interface HeaderWithDetails {
  key: WireValue[];
  /** `encodeKey(key)` */
  headerKey: string;
  header: WireValues;
  details: WireValues[];
}

/** How one side's columns are read: the select list, and the rows read turned into wire values. */
interface RowReader {
  selectList: string;
  toWire(rows: unknown[][]): WireValues[];
}

const readers = new WeakMap<object, { dialect: Dialect; reader: RowReader }>();

/**
 * The select list of `entity`'s columns (each as the dialect reads it exactly) and the conversion of
 * the rows read, once per entity. Where no column needs a conversion (every column on SQLite and
 * PostgreSQL) the list is the quoted columns and each row goes through `toWireValues` alone.
 */
function rowReader(
  d: Dialect,
  entity: { columns: readonly string[]; specs: readonly ColumnSpec[]; dbTypes?: readonly string[] },
): RowReader {
  const known = readers.get(entity);
  if (known?.dialect === d) return known.reader;
  const columns = entity.columns.map((c, i) =>
    d.columnReader(c, { kind: entity.specs.find((s) => s.name === c)?.kind, dbType: entity.dbTypes?.[i] }),
  );
  const selectList = columns.map((c) => c.sql).join(', ');
  const converted = columns.flatMap((c, i) => (c.toWire ? [[i, c.toWire] as const] : []));
  const reader: RowReader = {
    selectList,
    toWire:
      converted.length === 0
        ? (rows) => rows.map(toWireValues)
        : (rows) =>
            rows.map((r) => {
              for (const [i, toWire] of converted) {
                const v = r[i];
                if (typeof v === 'string') r[i] = toWire(v);
              }
              return toWireValues(r);
            }),
  };
  readers.set(entity, { dialect: d, reader });
  return reader;
}

/** Where each of `names` sits in `columns` (the key columns are always read). */
function positions(names: readonly string[], columns: readonly string[], table: string): number[] {
  return names.map((n) => {
    const i = columns.indexOf(n);
    if (i < 0) throw new Error(`table ${table}: column ${n} is not among the columns read`);
    return i;
  });
}

/**
 * Reads a header table in key order, a page at a time (keyset pagination, so memory stays bounded
 * whatever the table size), each header with its complete detail set. Used by the site's change
 * scanner and by `syncctl verify` on both sides.
 */
export async function* readHeaderPages(
  db: Database,
  src: HeaderSource,
  pageSize: number,
): AsyncGenerator<HeaderWithDetails[]> {
  const h = src.header;
  const keyAt = positions(h.key, h.columns, h.table);
  const bind = db.dialect.keyBinder(h.specs, h.key);
  let after: unknown[] | undefined;
  for (;;) {
    const page = await readPage(db, src, pageSize, after);
    if (page.length === 0) return;
    const keys = page.map((r) => keyAt.map((i) => r[i]!));
    after = bind(keys[keys.length - 1]!);
    yield await withDetails(db, src, page, keys);
    if (page.length < pageSize) return;
  }
}

/**
 * Keys of the first chunk {@link readHeadersByKeys} reads: about one first batch of a session (~80
 * headers of 5 details make its 500 rows), so that batch is read, hashed and on its way while the
 * following, doubling chunks are read.
 */
export const FIRST_KEY_CHUNK = 100;

/**
 * The headers of `keys` (those that exist and match the filter), with their details, in chunks
 * sized for the dialect's parameter limit: {@link FIRST_KEY_CHUNK} keys first, then twice as many
 * each time. A key with no header is simply not returned.
 */
export async function* readHeadersByKeys(
  db: Database,
  src: HeaderSource,
  keys: readonly WireValue[][],
): AsyncGenerator<HeaderWithDetails[]> {
  const d = db.dialect;
  const h = src.header;
  const keyAt = positions(h.key, h.columns, h.table);
  const bind = d.keyBinder(h.specs, h.key);
  const chunk = d.chunkSize(h.key.length, 10 + (src.scope?.params.length ?? 0));
  let size = Math.min(chunk, FIRST_KEY_CHUNK);
  for (let i = 0; i < keys.length; i += size, size = Math.min(chunk, size * 2)) {
    const pred = d.keyPredicate([...h.key], keys.slice(i, i + size).map(bind));
    const where = [pred.sql];
    if (src.headerFilter) where.push(`(${src.headerFilter})`);
    if (src.scope) where.push(src.scope.sql);
    const reader = rowReader(d, h);
    const rows = await db.queryArrays(
      `SELECT ${reader.selectList} FROM ${d.quote(h.table)} WHERE ${where.join(' AND ')}`,
      [...pred.params, ...(src.scope?.params ?? [])],
      h.columns,
    );
    if (rows.length === 0) continue;
    const page = reader.toWire(rows);
    yield await withDetails(
      db,
      src,
      page,
      page.map((r) => keyAt.map((j) => r[j]!)),
    );
  }
}

/** The headers of a page (`keys`: each one's key values) with their detail sets. */
async function withDetails(
  db: Database,
  src: HeaderSource,
  page: WireValues[],
  keys: WireValue[][],
): Promise<HeaderWithDetails[]> {
  const details = await readDetails(db, src, keys);
  return page.map((header, i) => {
    const key = keys[i]!;
    return { key, headerKey: encodeKey(key), header, details: details.get(groupKey(key)) ?? [] };
  });
}

async function readPage(
  db: Database,
  src: HeaderSource,
  pageSize: number,
  /** The last key of the page before, bound for its columns. */
  after: unknown[] | undefined,
): Promise<WireValues[]> {
  const d = db.dialect;
  const h = src.header;
  const where: string[] = [];
  const params: unknown[] = [];
  if (src.headerFilter) where.push(`(${src.headerFilter})`);
  if (src.scope) {
    where.push(src.scope.sql);
    params.push(...src.scope.params);
  }
  if (after) {
    const a = d.afterKey([...h.key], after);
    where.push(a.sql);
    params.push(...a.params);
  }
  const reader = rowReader(d, h);
  const body =
    `${reader.selectList} FROM ${d.quote(h.table)}` +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    ` ORDER BY ${h.key.map((c) => d.quote(c)).join(', ')}`;
  const rows = await db.queryArrays(d.selectLimit(body, pageSize), params, h.columns);
  return reader.toWire(rows);
}

/**
 * What the details of a page are grouped by: a header's key as `encodeKey` would compare it
 * (numbers as their decimal text, so an int header key finds bigint-as-text join values), without
 * an array and a JSON text per detail line where the key is one column.
 */
type GroupKey = string | boolean | null;

function groupKey1(v: WireValue): GroupKey {
  return typeof v === 'number' ? String(v) : v;
}

function groupKey(key: readonly WireValue[]): GroupKey {
  return key.length === 1 ? groupKey1(key[0]!) : encodeKey(key);
}

async function readDetails(db: Database, src: HeaderSource, keys: WireValue[][]): Promise<Map<GroupKey, WireValues[]>> {
  const out = new Map<GroupKey, WireValues[]>();
  const det = src.detail;
  if (!det || keys.length === 0) return out;
  const d = db.dialect;
  const joinAt = positions(det.joinColumns, det.columns, det.table);
  const bind = d.keyBinder(det.specs, det.joinColumns);
  const chunk = d.chunkSize(det.joinColumns.length, 10 + (src.scope?.params.length ?? 0));
  const reader = rowReader(d, det);
  for (let i = 0; i < keys.length; i += chunk) {
    const pred = d.keyPredicate([...det.joinColumns], keys.slice(i, i + chunk).map(bind));
    const rows = await db.queryArrays(
      `SELECT ${reader.selectList} FROM ${d.quote(det.table)} WHERE ${pred.sql}` +
        (src.scope ? ` AND ${src.scope.sql}` : ''),
      [...pred.params, ...(src.scope?.params ?? [])],
      det.columns,
    );
    for (const wire of reader.toWire(rows)) {
      const k = joinAt.length === 1 ? groupKey1(wire[joinAt[0]!]!) : groupKey(joinAt.map((j) => wire[j]!));
      let list = out.get(k);
      if (!list) out.set(k, (list = []));
      list.push(wire);
    }
  }
  return out;
}
