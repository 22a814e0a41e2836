import type { Database } from '@sitesync/db';
import { toWireValue } from '@sitesync/protocol';
import { ORDERS_TABLE, ORDER_COLUMNS, RESULTS_TABLE, RESULT_COLUMNS } from '@sitesync/labdata';

/** The synced columns: every column but `internal_note`, which is outside the hashed attributes. */
export const ORDER_ATTRS = ORDER_COLUMNS.filter((c) => c !== 'internal_note');
const RESULT_ATTRS = [...RESULT_COLUMNS];

/** Canonical text of a row: driver differences (bigint as string, Date) do not count as differences. */
function canon(row: Record<string, unknown>, cols: string[]): string {
  return JSON.stringify(
    cols.map((c) => {
      const v = toWireValue(row[c]);
      return v === null ? null : String(v);
    }),
  );
}

async function rows(db: Database, table: string, cols: string[], order: string, siteId?: number): Promise<string[]> {
  const q = (s: string) => db.dialect.quote(s);
  const where = siteId === undefined ? '' : ` WHERE ${q('id_efector')} = ?`;
  const r = await db.query<Record<string, unknown>>(
    `SELECT ${cols.map(q).join(', ')} FROM ${q(table)}${where} ORDER BY ${q(order)}`,
    siteId === undefined ? [] : [siteId],
  );
  return r.map((x) => canon(x, cols));
}

export interface Snapshot {
  headers: string[];
  details: string[];
}

export async function siteSnapshot(site: Database): Promise<Snapshot> {
  return {
    headers: await rows(site, ORDERS_TABLE, ORDER_ATTRS, 'order_id'),
    details: await rows(site, RESULTS_TABLE, RESULT_ATTRS, 'result_id'),
  };
}

export async function centralSnapshot(
  central: Database,
  siteId: number,
  header = 'central_orders',
  detail = 'central_results',
): Promise<Snapshot> {
  return {
    headers: await rows(central, header, ORDER_ATTRS, 'order_id', siteId),
    details: await rows(central, detail, RESULT_ATTRS, 'result_id', siteId),
  };
}

/** Count of rows in a table for a site (catches duplicates a set comparison would hide). */
export async function countRows(db: Database, table: string, siteId?: number): Promise<number> {
  const where = siteId === undefined ? '' : ` WHERE id_efector = ?`;
  const r = await db.query<{ n: number | string }>(
    `SELECT COUNT(*) AS n FROM ${db.dialect.quote(table)}${where}`,
    siteId === undefined ? [] : [siteId],
  );
  return Number(r[0]!.n);
}
