import { arrayToWireRow, encodeKey, type WireRow, type WireValue } from '@sitesync/protocol';
import type { Database } from './database';

/** Where one pipeline's headers and their details live, and which rows count. */
export interface HeaderSource {
  header: { table: string; key: readonly string[]; columns: readonly string[] };
  /** `joinColumns`: the detail columns that hold the header key, in header-key order. */
  detail: { table: string; joinColumns: readonly string[]; columns: readonly string[] } | null;
  /** A condition on the header table (the hashing file's `filter`), as SQL text. */
  headerFilter?: string;
  /** A condition on both tables with parameters (e.g. the central's `id_efector = ?`). */
  scope?: { sql: string; params: unknown[] };
}

export interface HeaderWithDetails {
  key: WireValue[];
  /** `encodeKey(key)` */
  headerKey: string;
  header: WireRow;
  details: WireRow[];
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
  let after: WireValue[] | undefined;
  for (;;) {
    const page = await readPage(db, src, pageSize, after);
    if (page.length === 0) return;
    const keys = page.map((r) => src.header.key.map((k) => r[k]!));
    after = keys[keys.length - 1];
    const details = await readDetails(db, src, keys);
    yield page.map((header, i) => {
      const headerKey = encodeKey(keys[i]!);
      return { key: keys[i]!, headerKey, header, details: details.get(headerKey) ?? [] };
    });
    if (page.length < pageSize) return;
  }
}

/**
 * The headers of `keys` (those that exist and match the filter), with their details, in chunks
 * sized for the dialect's parameter limit. A key with no header is simply not returned.
 */
export async function* readHeadersByKeys(
  db: Database,
  src: HeaderSource,
  keys: readonly WireValue[][],
): AsyncGenerator<HeaderWithDetails[]> {
  const d = db.dialect;
  const h = src.header;
  const chunk = d.chunkSize(h.key.length, 10 + (src.scope?.params.length ?? 0));
  for (let i = 0; i < keys.length; i += chunk) {
    const pred = d.keyPredicate([...h.key], keys.slice(i, i + chunk));
    const where = [pred.sql];
    if (src.headerFilter) where.push(`(${src.headerFilter})`);
    if (src.scope) where.push(src.scope.sql);
    const rows = await db.queryArrays(
      `SELECT ${h.columns.map((c) => d.quote(c)).join(', ')} FROM ${d.quote(h.table)} WHERE ${where.join(' AND ')}`,
      [...pred.params, ...(src.scope?.params ?? [])],
      h.columns,
    );
    const page = rows.map((r) => arrayToWireRow(r, h.columns));
    if (page.length === 0) continue;
    const found = page.map((r) => h.key.map((k) => r[k]!));
    const details = await readDetails(db, src, found);
    yield page.map((header, j) => {
      const headerKey = encodeKey(found[j]!);
      return { key: found[j]!, headerKey, header, details: details.get(headerKey) ?? [] };
    });
  }
}

async function readPage(
  db: Database,
  src: HeaderSource,
  pageSize: number,
  after: WireValue[] | undefined,
): Promise<WireRow[]> {
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
  const body =
    `${h.columns.map((c) => d.quote(c)).join(', ')} FROM ${d.quote(h.table)}` +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    ` ORDER BY ${h.key.map((c) => d.quote(c)).join(', ')}`;
  const rows = await db.queryArrays(d.selectLimit(body, pageSize), params, h.columns);
  return rows.map((r) => arrayToWireRow(r, h.columns));
}

async function readDetails(db: Database, src: HeaderSource, keys: WireValue[][]): Promise<Map<string, WireRow[]>> {
  const out = new Map<string, WireRow[]>();
  const det = src.detail;
  if (!det || keys.length === 0) return out;
  const d = db.dialect;
  const chunk = d.chunkSize(det.joinColumns.length, 10 + (src.scope?.params.length ?? 0));
  for (let i = 0; i < keys.length; i += chunk) {
    const pred = d.keyPredicate([...det.joinColumns], keys.slice(i, i + chunk));
    const rows = await db.queryArrays(
      `SELECT ${det.columns.map((c) => d.quote(c)).join(', ')} FROM ${d.quote(det.table)} WHERE ${pred.sql}` +
        (src.scope ? ` AND ${src.scope.sql}` : ''),
      [...pred.params, ...(src.scope?.params ?? [])],
      det.columns,
    );
    for (const r of rows) {
      const wire = arrayToWireRow(r, det.columns);
      const k = encodeKey(det.joinColumns.map((c) => wire[c]!));
      let list = out.get(k);
      if (!list) out.set(k, (list = []));
      list.push(wire);
    }
  }
  return out;
}
