/** The lab tables at the bench's sites: the shared generator (@sitesync/labdata), seeded by the fastest driver path. */
import {
  ORDERS_TABLE,
  ORDER_COLUMNS,
  RESULTS_TABLE,
  RESULT_COLUMNS,
  labRows,
  labTablesDdl,
  type SeedOptions,
} from '@sitesync/labdata';
import { copyField, type RawDb, type RawPg, type RawSqlite } from './raw-db.js';

export * from '@sitesync/labdata';

/** The bench's raw connections quote names the same way (PostgreSQL and SQLite only). */
export function labDdl(db: RawDb | RawDb['dialect'], orders?: string, results?: string): string[] {
  const name = typeof db === 'string' ? db : db.dialect;
  return labTablesDdl({ name, quote: (s) => `"${s.replace(/"/g, '""')}"` }, orders, results);
}

/** Creates the lab tables (the database is already migrated) and fills them, by the fastest driver path. */
export async function createAndSeed(db: RawDb, opts: SeedOptions, onProgress?: (done: number) => void): Promise<void> {
  const [orders, results, index] = labDdl(db) as [string, string, string];
  await db.exec(orders);
  await db.exec(results);
  // Seeding is not measured: no fsync, and the index built once at the end.
  if (db.dialect === 'sqlite') await db.exec('PRAGMA synchronous = OFF');
  if (opts.orders > 0) await seed(db, opts, onProgress);
  await db.exec(index);
  if (db.dialect === 'sqlite') await db.exec('PRAGMA synchronous = NORMAL');
}

export async function seed(db: RawDb, opts: SeedOptions, onProgress?: (done: number) => void): Promise<void> {
  if (db.dialect === 'sqlite') seedSqlite(db as RawSqlite, opts, onProgress);
  else await seedPg(db as RawPg, opts, onProgress);
}

function seedSqlite(db: RawSqlite, opts: SeedOptions, onProgress?: (done: number) => void): void {
  const ins = (table: string, cols: readonly string[]) =>
    db.db.prepare(`INSERT INTO "${table}" (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
  const insOrder = ins(ORDERS_TABLE, ORDER_COLUMNS);
  const insResult = ins(RESULTS_TABLE, RESULT_COLUMNS);
  let n = 0;
  let open = false;
  for (const { order, results } of labRows(opts)) {
    if (!open) {
      db.db.exec('BEGIN');
      open = true;
    }
    insOrder.run(...order);
    for (const r of results) insResult.run(...r);
    if (++n % 50_000 === 0) {
      db.db.exec('COMMIT');
      open = false;
      onProgress?.(n);
    }
  }
  if (open) db.db.exec('COMMIT');
  onProgress?.(n);
}

async function seedPg(db: RawPg, opts: SeedOptions, onProgress?: (done: number) => void): Promise<void> {
  const chunks = async function* (part: 'order' | 'results') {
    let buf = '';
    let n = 0;
    for (const row of labRows(opts)) {
      const lines = part === 'order' ? [row.order] : row.results;
      for (const l of lines) buf += `${l.map(copyField).join('\t')}\n`;
      if (++n % 2000 === 0) {
        yield buf;
        buf = '';
        if (part === 'results') onProgress?.(n);
      }
    }
    if (buf) yield buf;
    if (part === 'results') onProgress?.(n);
  };
  await db.copyIn(`COPY ${ORDERS_TABLE} (${ORDER_COLUMNS.join(', ')}) FROM STDIN`, chunks('order'));
  await db.copyIn(`COPY ${RESULTS_TABLE} (${RESULT_COLUMNS.join(', ')}) FROM STDIN`, chunks('results'));
  await db.exec(`ANALYZE ${ORDERS_TABLE}; ANALYZE ${RESULTS_TABLE}`);
}

/**
 * Changes `count` headers spread over `1..total`: even ones get a new header `status`, odd ones a new
 * value on one of their result lines (which re-sends the header with all its details).
 * Returns the changed order ids.
 */
export async function changeSome(db: RawDb, total: number, count: number, round: number): Promise<number[]> {
  const step = Math.max(1, Math.floor(total / count));
  const ids: number[] = [];
  for (let k = 0; k < count; k++) ids.push(1 + ((k * step + round * 37) % total));
  const headerIds = ids.filter((_, k) => k % 2 === 0);
  const detailIds = ids.filter((_, k) => k % 2 === 1).map((id) => id * 100 + (round % 5));
  const status = `AMENDED_${round}`;
  const value = `${round}.5`;
  await db.transaction(async () => {
    if (db.dialect === 'postgres') {
      await db.run(`UPDATE ${ORDERS_TABLE} SET status = ? WHERE order_id = ANY(?::int[])`, [status, headerIds]);
      await db.run(`UPDATE ${RESULTS_TABLE} SET value = ? WHERE result_id = ANY(?::int[])`, [value, detailIds]);
    } else {
      for (const id of headerIds)
        await db.run(`UPDATE ${ORDERS_TABLE} SET status = ? WHERE order_id = ?`, [status, id]);
      for (const id of detailIds)
        await db.run(`UPDATE ${RESULTS_TABLE} SET value = ? WHERE result_id = ?`, [value, id]);
    }
  });
  return ids;
}
