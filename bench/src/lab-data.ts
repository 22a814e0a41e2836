/** The lab tables at the bench's sites: the shared generator (@sitesync/labdata), seeded by the fastest driver path. */
import {
  ORDERS_TABLE,
  ORDER_COLUMNS,
  RESULTS_TABLE,
  RESULT_COLUMNS,
  labRows,
  type SeedOptions,
} from '@sitesync/labdata';
import { copyField, type RawDb, type RawPg, type RawSqlite } from './raw-db.js';

export * from '@sitesync/labdata';

/**
 * DDL of the lab tables as a site holds them (the same statements create the legacy staging
 * copies on the central, which is what the legacy scripts do).
 */
export function labTablesDdl(dialect: RawDb['dialect'], orders = ORDERS_TABLE, results = RESULTS_TABLE): string[] {
  const text = (n: number) => (dialect === 'sqlite' ? 'TEXT' : `VARCHAR(${n})`);
  return [
    `CREATE TABLE "${orders}" (order_id INTEGER NOT NULL PRIMARY KEY, patient_id ${text(20)} NOT NULL, patient_name ${text(80)}, ` +
      `ordered_at ${text(30)}, ward ${text(40)}, priority ${text(10)}, status ${text(20)}, physician ${text(80)}, notes ${text(400)}, ` +
      `internal_note ${text(200)})`,
    `CREATE TABLE "${results}" (result_id INTEGER NOT NULL PRIMARY KEY, order_id INTEGER NOT NULL, test_code ${text(10)}, ` +
      `test_name ${text(60)}, value ${text(20)}, unit ${text(20)}, ref_range ${text(20)}, flag ${text(2)})`,
    `CREATE INDEX "ix_${results}_order" ON "${results}" (order_id)`,
  ];
}

/** Creates the lab tables (the database is already migrated) and fills them, by the fastest driver path. */
export async function createAndSeed(db: RawDb, opts: SeedOptions, onProgress?: (done: number) => void): Promise<void> {
  const [orders, results, index] = labTablesDdl(db.dialect) as [string, string, string];
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
