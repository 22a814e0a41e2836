import type { HashingFileInput } from '@sitesync/protocol';
import { copyField, type RawDb, type RawPg, type RawSqlite } from './raw-db.js';

/**
 * Realistic lab data (copied from test/src/support/lab-data.ts, which the bench must not import):
 * order headers of ~300 bytes with result lines as details.
 */
export const ORDERS_TABLE = 'lab_orders';
export const RESULTS_TABLE = 'lab_results';

export const ORDER_COLUMNS = [
  'order_id',
  'patient_id',
  'patient_name',
  'ordered_at',
  'ward',
  'priority',
  'status',
  'physician',
  'notes',
  'internal_note',
] as const;
export const RESULT_COLUMNS = [
  'result_id',
  'order_id',
  'test_code',
  'test_name',
  'value',
  'unit',
  'ref_range',
  'flag',
] as const;

const TESTS = [
  ['GLU', 'Glucose', 'mg/dL', '70-110'],
  ['HB', 'Hemoglobin', 'g/dL', '12-16'],
  ['WBC', 'White blood cells', '10^3/uL', '4.5-11'],
  ['PLT', 'Platelets', '10^3/uL', '150-400'],
  ['CRE', 'Creatinine', 'mg/dL', '0.6-1.2'],
  ['NA', 'Sodium', 'mmol/L', '135-145'],
  ['K', 'Potassium', 'mmol/L', '3.5-5.1'],
] as const;
const FIRST = ['Ana', 'Juan', 'María', 'Carlos', 'Lucía', 'Pedro', 'Sofía', 'Diego', 'Valentina', 'Martín'];
const LAST = ['González', 'Rodríguez', 'Gómez', 'Fernández', 'López', 'Díaz', 'Martínez', 'Pérez', 'Sánchez', 'Romero'];
const WARDS = ['Guardia', 'Clínica Médica', 'Pediatría', 'Terapia Intensiva', 'Maternidad', 'Consultorio Externo'];

/** The pipeline hashing file for the lab tables; `internal_note` is outside `attributes` on purpose. */
export function labPipeline(overrides: Partial<HashingFileInput> = {}): HashingFileInput {
  return {
    name: 'lab',
    baseEntity: ORDERS_TABLE,
    linkEntities: [ORDERS_TABLE, { entity: RESULTS_TABLE, join: { order_id: 'order_id' } }],
    attributes: [
      'order_id',
      'patient_id',
      'patient_name',
      'ordered_at',
      'ward',
      'priority',
      'status',
      'physician',
      'notes',
      'result_id',
      'test_code',
      'test_name',
      'value',
      'unit',
      'ref_range',
      'flag',
    ],
    ...overrides,
  };
}

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

/** Deterministic pseudo-random numbers, so a seed gives the same data every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

export interface SeedOptions {
  orders: number;
  detailsPerOrder?: number;
  firstOrderId?: number;
  seed?: number;
}

/** The seeded rows, one header with its details at a time (same generator as the tests). */
export function* labRows(opts: SeedOptions): Generator<{ order: unknown[]; results: unknown[][] }> {
  const per = opts.detailsPerOrder ?? 5;
  const first = opts.firstOrderId ?? 1;
  const rand = rng(opts.seed ?? first);
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)]!;
  for (let i = 0; i < opts.orders; i++) {
    const id = first + i;
    const when = new Date(Date.UTC(2026, 0, 1) + id * 60_000).toISOString();
    const order = [
      id,
      `DNI${String(20_000_000 + Math.floor(rand() * 30_000_000))}`,
      `${pick(LAST)}, ${pick(FIRST)}`,
      when,
      pick(WARDS),
      rand() < 0.1 ? 'URGENT' : 'ROUTINE',
      pick(['REQUESTED', 'IN_PROGRESS', 'VALIDATED']),
      `Dr. ${pick(LAST)}`,
      `Muestra recibida en ${pick(WARDS)}; paciente en ayunas: ${rand() < 0.5 ? 'sí' : 'no'}. Observaciones clínicas de rutina.`,
      'not synced',
    ];
    const results: unknown[][] = [];
    for (let j = 0; j < per; j++) {
      const t = TESTS[(id + j) % TESTS.length]!;
      const value = (rand() * 200).toFixed(1);
      results.push([id * 100 + j, id, t[0], t[1], value, t[2], t[3], rand() < 0.15 ? 'H' : '']);
    }
    yield { order, results };
  }
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
