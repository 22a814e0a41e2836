import type { Database } from '@sitesync/db';
import {
  ORDERS_TABLE,
  ORDER_COLUMNS,
  RESULTS_TABLE,
  RESULT_COLUMNS,
  labRows,
  labTablesDdl,
  type SeedOptions,
} from '@sitesync/labdata';

/** The lab tables on a sitesync Database (any dialect): the shared generator of @sitesync/labdata. */
export { ORDERS_TABLE, RESULTS_TABLE, labPipeline, type SeedOptions } from '@sitesync/labdata';

export async function createLabTables(db: Database): Promise<void> {
  for (const ddl of labTablesDdl(db.dialect)) await db.query(ddl);
}

/** Inserts `orders` headers with `detailsPerOrder` result lines each, in large transactions. */
export async function seedLabData(db: Database, opts: SeedOptions): Promise<void> {
  const d = db.dialect;
  const ordersPerTx = 2000;
  const rows = labRows(opts);
  for (let start = 0; start < opts.orders; start += ordersPerTx) {
    const orders: unknown[][] = [];
    const results: unknown[][] = [];
    for (let i = 0; i < ordersPerTx; i++) {
      const next = rows.next();
      if (next.done) break;
      orders.push(next.value.order);
      results.push(...next.value.results);
    }
    await db.transaction(async (tx) => {
      const oc = Math.min(d.maxRowsPerInsert, d.chunkSize(ORDER_COLUMNS.length, 0, 100_000));
      for (let i = 0; i < orders.length; i += oc)
        await tx.run(d.insertRows(ORDERS_TABLE, [...ORDER_COLUMNS], orders.slice(i, i + oc)));
      const rc = Math.min(d.maxRowsPerInsert, d.chunkSize(RESULT_COLUMNS.length, 0, 100_000));
      for (let i = 0; i < results.length; i += rc)
        await tx.run(d.insertRows(RESULTS_TABLE, [...RESULT_COLUMNS], results.slice(i, i + rc)));
    });
  }
}

/** Changes one result line of `orderId` (a detail change must re-send its header with all details). */
export async function changeResult(db: Database, orderId: number, value: string): Promise<void> {
  await db.execute(`UPDATE ${db.dialect.quote(RESULTS_TABLE)} SET value = ? WHERE result_id = ?`, [
    value,
    orderId * 100,
  ]);
}

export async function changeOrder(
  db: Database,
  orderId: number,
  column: 'status' | 'internal_note' | 'notes',
  value: string,
): Promise<void> {
  const q = (s: string) => db.dialect.quote(s);
  await db.execute(`UPDATE ${q(ORDERS_TABLE)} SET ${q(column)} = ? WHERE order_id = ?`, [value, orderId]);
}

export async function deleteOrder(db: Database, orderId: number): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(`DELETE FROM ${tx.dialect.quote(RESULTS_TABLE)} WHERE order_id = ?`, [orderId]);
    await tx.execute(`DELETE FROM ${tx.dialect.quote(ORDERS_TABLE)} WHERE order_id = ?`, [orderId]);
  });
}
