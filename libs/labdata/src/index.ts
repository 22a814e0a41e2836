import type { HashingFileInput } from '@sitesync/protocol';

/**
 * Realistic lab data shared by the tests, the demo and the benchmarks: order headers of ~300 bytes
 * (10 columns; `internal_note` is outside the hashed attributes) with result lines as details,
 * generated deterministically from a seed.
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
    // Every column but `internal_note` (changes there must not be sent); `order_id` of the results
    // is the join column, named once.
    attributes: [
      ...ORDER_COLUMNS.filter((c) => c !== 'internal_note'),
      ...RESULT_COLUMNS.filter((c) => c !== 'order_id'),
    ],
    ...overrides,
  };
}

/** Deterministic pseudo-random numbers (xorshift32), so a seed gives the same data every run. */
export function rng(seed: number): () => number {
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

/** How the DDL below is written for a database: its dialect name and how it quotes a name. */
export interface LabDdlDialect {
  name: 'sqlite' | 'postgres' | 'mssql' | 'mysql';
  quote(identifier: string): string;
}

/**
 * DDL of the lab tables as a site holds them: header, detail, and the detail's index on the header
 * key (the same statements create the legacy staging copies on the central, as the legacy scripts do).
 */
export function labTablesDdl(d: LabDdlDialect, orders = ORDERS_TABLE, results = RESULTS_TABLE): string[] {
  const q = (s: string) => d.quote(s);
  const int = d.name === 'mssql' ? 'INT' : 'INTEGER';
  const text = (n: number) => (d.name === 'sqlite' ? 'TEXT' : d.name === 'mssql' ? `NVARCHAR(${n})` : `VARCHAR(${n})`);
  return [
    `CREATE TABLE ${q(orders)} (order_id ${int} NOT NULL PRIMARY KEY, patient_id ${text(20)} NOT NULL, patient_name ${text(80)}, ` +
      `ordered_at ${text(30)}, ward ${text(40)}, priority ${text(10)}, status ${text(20)}, physician ${text(80)}, notes ${text(400)}, ` +
      `internal_note ${text(200)})`,
    `CREATE TABLE ${q(results)} (result_id ${int} NOT NULL PRIMARY KEY, order_id ${int} NOT NULL, test_code ${text(10)}, ` +
      `test_name ${text(60)}, value ${text(20)}, unit ${text(20)}, ref_range ${text(20)}, flag ${text(2)})`,
    `CREATE INDEX ${q(`ix_${results}_order`)} ON ${q(results)} (order_id)`,
  ];
}
