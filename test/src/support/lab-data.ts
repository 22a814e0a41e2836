import type { Database } from '@sitesync/db';
import type { HashingFileInput } from '@sitesync/protocol';

/** Realistic lab data: order headers (~300 bytes) and result lines as details. */
export const ORDERS_TABLE = 'lab_orders';
export const RESULTS_TABLE = 'lab_results';

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

export async function createLabTables(db: Database): Promise<void> {
  const q = (s: string) => db.dialect.quote(s);
  const int = db.dialect.name === 'mssql' ? 'INT' : 'INTEGER';
  const text = (n: number) =>
    db.dialect.name === 'sqlite' ? 'TEXT' : db.dialect.name === 'mssql' ? `NVARCHAR(${n})` : `VARCHAR(${n})`;
  await db.query(
    `CREATE TABLE ${q(ORDERS_TABLE)} (order_id ${int} NOT NULL PRIMARY KEY, patient_id ${text(20)} NOT NULL, patient_name ${text(80)}, ` +
      `ordered_at ${text(30)}, ward ${text(40)}, priority ${text(10)}, status ${text(20)}, physician ${text(80)}, notes ${text(400)}, ` +
      `internal_note ${text(200)})`,
  );
  await db.query(
    `CREATE TABLE ${q(RESULTS_TABLE)} (result_id ${int} NOT NULL PRIMARY KEY, order_id ${int} NOT NULL, test_code ${text(10)}, ` +
      `test_name ${text(60)}, value ${text(20)}, unit ${text(20)}, ref_range ${text(20)}, flag ${text(2)})`,
  );
  await db.query(`CREATE INDEX ${q('ix_lab_results_order')} ON ${q(RESULTS_TABLE)} (order_id)`);
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

/** Inserts `orders` headers with `detailsPerOrder` result lines each, in large transactions. */
export async function seedLabData(db: Database, opts: SeedOptions): Promise<void> {
  const per = opts.detailsPerOrder ?? 5;
  const first = opts.firstOrderId ?? 1;
  const rand = rng(opts.seed ?? first);
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)]!;
  const orderCols = [
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
  ];
  const resultCols = ['result_id', 'order_id', 'test_code', 'test_name', 'value', 'unit', 'ref_range', 'flag'];
  const d = db.dialect;
  const ordersPerTx = 2000;
  for (let start = 0; start < opts.orders; start += ordersPerTx) {
    const n = Math.min(ordersPerTx, opts.orders - start);
    const orders: unknown[][] = [];
    const results: unknown[][] = [];
    for (let i = 0; i < n; i++) {
      const id = first + start + i;
      const when = new Date(Date.UTC(2026, 0, 1) + id * 60_000).toISOString();
      orders.push([
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
      ]);
      for (let j = 0; j < per; j++) {
        const t = TESTS[(id + j) % TESTS.length]!;
        const value = (rand() * 200).toFixed(1);
        results.push([id * 100 + j, id, t[0], t[1], value, t[2], t[3], rand() < 0.15 ? 'H' : '']);
      }
    }
    await db.transaction(async (tx) => {
      const oc = Math.min(d.maxRowsPerInsert, d.chunkSize(orderCols.length, 0, 100_000));
      for (let i = 0; i < orders.length; i += oc)
        await tx.run(d.insertRows(ORDERS_TABLE, orderCols, orders.slice(i, i + oc)));
      const rc = Math.min(d.maxRowsPerInsert, d.chunkSize(resultCols.length, 0, 100_000));
      for (let i = 0; i < results.length; i += rc)
        await tx.run(d.insertRows(RESULTS_TABLE, resultCols, results.slice(i, i + rc)));
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
