import type { RawDb, RawPg, RawSqlite } from '../raw-db.js';
import { ORDERS_TABLE, RESULTS_TABLE } from '../lab-data.js';
import { cpuMeter, type CpuByGroup } from '../cpu.js';
import { since } from '../stats.js';

/** A central target table as the central agent created it. */
interface TargetTable {
  name: string;
  /** Data columns (without id_efector), in table order. */
  columns: string[];
  /** PostgreSQL array element type per column (for unnest). */
  pgTypes: string[];
  key: string;
  source: string;
}

async function describe(central: RawDb, name: string, key: string, source: string): Promise<TargetTable> {
  if (central.dialect === 'sqlite') {
    const cols = await central.all<{ name: string }>(`SELECT name FROM pragma_table_info(?)`, [name]);
    const columns = cols.map((c) => c.name).filter((c) => c !== 'id_efector');
    return { name, columns, pgTypes: [], key, source };
  }
  const cols = await central.all<{ column_name: string; udt_name: string }>(
    `SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`,
    [name],
  );
  const data = cols.filter((c) => c.column_name !== 'id_efector');
  return { name, columns: data.map((c) => c.column_name), pgTypes: data.map((c) => c.udt_name), key, source };
}

/** An empty copy of a central table (same columns, key and indexes). */
async function cloneEmpty(central: RawDb, from: string, to: string): Promise<void> {
  await central.exec(`DROP TABLE IF EXISTS "${to}"`);
  if (central.dialect === 'postgres') {
    await central.exec(`CREATE TABLE "${to}" (LIKE "${from}" INCLUDING ALL)`);
    return;
  }
  const ddl = await central.all<{ sql: string }>(
    `SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC`,
    [from],
  );
  for (const { sql } of ddl) {
    await central.exec(sql.replaceAll(`"${from}"`, `"${to}"`).replace(/"IX_[^"]*"/, `"IX_${to}_header"`));
  }
}

export interface RawLoadResult {
  rows: number;
  /** The fastest method's figures. */
  method: string;
  seconds: number;
  rowsPerSecond: number;
  /** Time spent writing only (reading the site excluded), where the method separates the two. */
  writeOnlyRowsPerSecond?: number;
  /** rows/s of every method tried. */
  methods: Record<string, number>;
  /** CPU seconds by process group while the fastest method ran. */
  cpuSeconds: CpuByGroup;
}

type Method = 'prepared' | 'preparedMultiRow' | 'unnest' | 'copyStage';

/**
 * The fastest plain idempotent load of the site's rows into empty copies of the central tables,
 * reading from the site as any cross-server copy must. Methods: SQLite, prepared upserts of one row
 * or of 100 rows per statement in large transactions; PostgreSQL, `INSERT ... SELECT FROM unnest(...) ON CONFLICT` (reading the next page
 * while the previous one is written) and `COPY` into a temporary stage then `INSERT ... SELECT ...
 * ON CONFLICT`. Each method loads everything once; the fastest counts.
 */
export async function rawUpsert(
  site: RawDb,
  central: RawDb,
  siteId: number,
  tables: { header: string; detail: string },
  onRows: (n: number, method: string) => void,
): Promise<RawLoadResult> {
  const targets = [
    await describe(central, tables.header, 'order_id', ORDERS_TABLE),
    await describe(central, tables.detail, 'result_id', RESULTS_TABLE),
  ];
  const methods: Method[] = central.dialect === 'sqlite' ? ['prepared', 'preparedMultiRow'] : ['unnest', 'copyStage'];
  const results: Array<{ method: Method; rows: number; seconds: number; cpu: CpuByGroup; writeSeconds?: number }> = [];
  for (const method of methods) {
    let rows = 0;
    let writeSeconds: number | undefined = 0;
    for (const t of targets) await cloneEmpty(central, t.name, `raw_${t.name}`);
    const cpu = cpuMeter();
    const t0 = performance.now();
    for (const t of targets) {
      const clone = { ...t, name: `raw_${t.name}` };
      const report = (n: number) => onRows(rows + n, method);
      const r: { rows: number; writeSeconds?: number } =
        method === 'prepared' || method === 'preparedMultiRow'
          ? upsertSqlite(
              site as RawSqlite,
              central as RawSqlite,
              siteId,
              clone,
              report,
              method === 'prepared' ? 1 : SQLITE_ROWS_PER_STATEMENT,
            )
          : method === 'unnest'
            ? await upsertPg(site as RawPg, central as RawPg, siteId, clone, report)
            : await copyStagePg(site as RawPg, central as RawPg, siteId, clone);
      rows += r.rows;
      writeSeconds =
        r.writeSeconds === undefined || writeSeconds === undefined ? undefined : writeSeconds + r.writeSeconds;
    }
    const seconds = since(t0);
    results.push({ method, rows, seconds, cpu: cpu(), ...(writeSeconds !== undefined ? { writeSeconds } : {}) });
    for (const t of targets) await central.exec(`DROP TABLE IF EXISTS "raw_${t.name}"`);
  }
  const best = results.reduce((a, b) => (b.rows / b.seconds > a.rows / a.seconds ? b : a));
  return {
    rows: best.rows,
    method: best.method,
    seconds: best.seconds,
    rowsPerSecond: best.rows / best.seconds,
    ...(best.writeSeconds ? { writeOnlyRowsPerSecond: best.rows / best.writeSeconds } : {}),
    methods: Object.fromEntries(results.map((r) => [r.method, r.rows / r.seconds])),
    cpuSeconds: best.cpu,
  };
}

/** COPY the site rows into a temporary stage, then one `INSERT ... SELECT ... ON CONFLICT`, in one transaction. */
async function copyStagePg(site: RawPg, central: RawPg, siteId: number, t: TargetTable): Promise<{ rows: number }> {
  const cols = t.columns.map((c) => `"${c}"`).join(', ');
  return central.transaction(async () => {
    await central.exec(`CREATE TEMP TABLE raw_stage (LIKE "${t.name}") ON COMMIT DROP`);
    await central.copyAcross(
      site,
      `SELECT ${Math.trunc(siteId)}, ${cols} FROM "${t.source}"`,
      `COPY raw_stage (id_efector, ${cols}) FROM STDIN`,
    );
    const rows = await central.run(upsertSql(t, `SELECT id_efector, ${cols} FROM raw_stage`));
    return { rows };
  });
}

function upsertSql(t: TargetTable, values: string): string {
  const cols = ['id_efector', ...t.columns].map((c) => `"${c}"`).join(', ');
  const set = t.columns
    .filter((c) => c !== t.key)
    .map((c) => `"${c}" = excluded."${c}"`)
    .join(', ');
  return `INSERT INTO "${t.name}" (${cols}) ${values} ON CONFLICT (id_efector, "${t.key}") DO UPDATE SET ${set}`;
}

/** Rows per statement of the multi-row SQLite method (10-500 measured alike here; 2x the one-row statement). */
const SQLITE_ROWS_PER_STATEMENT = 100;

/**
 * SQLite: one prepared upsert statement run per row (`prepared`) or per 100 rows (`preparedMultiRow`,
 * a VALUES list of 100 tuples, the last few rows one at a time), in transactions of 20,000 rows.
 */
function upsertSqlite(
  site: RawSqlite,
  central: RawSqlite,
  siteId: number,
  t: TargetTable,
  onRows: (n: number) => void,
  perStatement: number,
): { rows: number; writeSeconds: number } {
  const read = site.db
    .prepare(`SELECT ${t.columns.map((c) => `"${c}"`).join(', ')} FROM "${t.source}" ORDER BY "${t.key}"`)
    .raw(true);
  const tuple = `(${['?', ...t.columns.map(() => '?')].join(', ')})`;
  const write = central.db.prepare(upsertSql(t, `VALUES ${tuple}`));
  const writeMany = central.db.prepare(upsertSql(t, `VALUES ${new Array(perStatement).fill(tuple).join(', ')}`));
  const tx = central.db.transaction((batch: unknown[][]) => {
    let i = 0;
    if (perStatement > 1) {
      for (; i + perStatement <= batch.length; i += perStatement) {
        const params: unknown[] = [];
        for (let j = i; j < i + perStatement; j++) params.push(siteId, ...batch[j]!);
        writeMany.run(params);
      }
    }
    for (; i < batch.length; i++) write.run(siteId, ...batch[i]!);
  });
  const PER_TX = 20_000;
  let rows = 0;
  let writeSeconds = 0;
  let batch: unknown[][] = [];
  const flush = () => {
    const w0 = performance.now();
    tx(batch);
    writeSeconds += since(w0);
    rows += batch.length;
    batch = [];
    onRows(rows);
  };
  for (const r of read.iterate() as IterableIterator<unknown[]>) {
    batch.push(r);
    if (batch.length >= PER_TX) flush();
  }
  if (batch.length) flush();
  return { rows, writeSeconds };
}

async function upsertPg(
  site: RawPg,
  central: RawPg,
  siteId: number,
  t: TargetTable,
  onRows: (n: number) => void,
): Promise<{ rows: number; writeSeconds: number }> {
  const PAGE = 10_000;
  const select = `SELECT ${t.columns.map((c) => `"${c}"`).join(', ')} FROM "${t.source}" WHERE "${t.key}" > ? ORDER BY "${t.key}" LIMIT ${PAGE}`;
  const keyIndex = t.columns.indexOf(t.key);
  const unnest = `SELECT $1::int, * FROM unnest(${t.pgTypes.map((ty, i) => `$${i + 2}::${ty}[]`).join(', ')})`;
  const sql = upsertSql(t, unnest);
  let rows = 0;
  let writeSeconds = 0;
  let next = site.rows(select, [-1]);
  for (;;) {
    const page = await next;
    if (page.length === 0) break;
    // Read the next page while this one is written (two connections).
    next = site.rows(select, [page[page.length - 1]![keyIndex]]);
    const columns = t.columns.map((_, i) => page.map((r) => r[i]));
    const w0 = performance.now();
    await central.client.query(sql, [siteId, ...columns]);
    writeSeconds += since(w0);
    rows += page.length;
    onRows(rows);
    if (page.length < PAGE) {
      await next;
      break;
    }
  }
  return { rows, writeSeconds };
}

/** PostgreSQL: `COPY ... TO STDOUT` at the site streamed into `COPY ... FROM STDIN` of an empty copy of each central table. */
export async function rawCopy(
  site: RawPg,
  central: RawPg,
  siteId: number,
  tables: { header: string; detail: string },
): Promise<{ rows: number; seconds: number; rowsPerSecond: number; bytes: number }> {
  const targets = [
    await describe(central, tables.header, 'order_id', ORDERS_TABLE),
    await describe(central, tables.detail, 'result_id', RESULTS_TABLE),
  ];
  for (const t of targets) await cloneEmpty(central, t.name, `copy_${t.name}`);
  let rows = 0;
  let bytes = 0;
  const t0 = performance.now();
  for (const t of targets) {
    const cols = t.columns.map((c) => `"${c}"`).join(', ');
    bytes += await central.copyAcross(
      site,
      `SELECT ${Math.trunc(siteId)}, ${cols} FROM "${t.source}"`,
      `COPY "copy_${t.name}" (id_efector, ${cols}) FROM STDIN`,
    );
  }
  const seconds = since(t0);
  for (const t of targets) {
    const n = await central.all<{ n: string }>(`SELECT COUNT(*) AS n FROM "copy_${t.name}"`);
    rows += Number(n[0]!.n);
    await central.exec(`DROP TABLE "copy_${t.name}"`);
  }
  return { rows, seconds, rowsPerSecond: rows / seconds, bytes };
}
