// The site's process time zone must not move a value: every value here is read and written in a
// zone that is neither UTC nor a whole-hour offset in 1901 (Buenos Aires kept local mean time then).
process.env.TZ = 'America/Argentina/Buenos_Aires';

import { describe, expect, it } from 'vitest';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import {
  COLUMNS,
  SITE_ID,
  VALUE_DB_KINDS,
  centralTypes,
  columnsOf,
  createSiteTables,
  expected as expectedOf,
  insertRow,
  pipeline,
  readBack,
  type Col,
} from '../support/value-columns.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping value round trips: no RabbitMQ available');

const KINDS = VALUE_DB_KINDS;
/**
 * Every site dialect available to every central dialect available. SQL Server takes part when a
 * server is there (global-setup prints why not); its statements are held by unit/db/mssql-values.test.ts.
 */
const PAIRS = KINDS.flatMap((site) => KINDS.map((central) => [site, central] as const));

const MB_TEXT = 'añ€😀'.repeat(1 << 16) + 'x'.repeat(1_048_576 - 4 * (1 << 16)); // > 1 MB of UTF-8, > 64 KB

/** The hard values, as text (null: SQL NULL). `txt` of the first row is bound as a parameter (1 MB). */
const ROWS: Array<Record<string, string | null>> = [
  {
    id: '1',
    big: '9007199254740993',
    dbl: '0.30000000000000004',
    dec: '12345678901234567890.0123456789',
    txt: MB_TEXT,
    note: '',
    d: '1901-12-13',
    ts: '1901-12-13 23:59:59.123',
    tm: '23:59:59.123',
    tstz: '1901-12-13 23:59:59.123+00',
    bin: '00010000ff',
    flag: 'true',
    u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  },
  {
    id: '2',
    big: '-9007199254740993',
    dbl: '-1.5e-7',
    dec: '-0.0000000001',
    txt: 'emoji 😀👩‍👩‍👧 e\u0301 cafe\u0301 שלום עולם مرحبا',
    note: null,
    d: '2999-12-31',
    ts: '2999-12-31 23:59:59.123456',
    tm: '00:00:00.000001',
    tstz: '2999-12-31 23:59:59.123456+00',
    bin: '000000',
    flag: 'false',
    u: null,
  },
  { id: '9223372036854775807', big: '9223372036854775807', txt: 'max', note: 'x' },
  { id: '-9223372036854775808', big: '-9223372036854775808', txt: 'min', note: null },
];

function expected(cols: Col[], rows: typeof ROWS = ROWS): Map<string, string[]> {
  return expectedOf(cols, rows);
}

describe.skipIf(!broker)('values survive a sync exactly', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('the test process runs in a non-UTC zone', () => {
    expect(new Date('1901-12-13T23:59:59.123Z').getTimezoneOffset()).not.toBe(0);
    expect(new Date('2024-06-01T00:00:00Z').getTimezoneOffset()).toBe(180);
  });

  it.each(PAIRS)('from a %s site to a %s central, and after a change', async (siteKind, centralKind) => {
    const central = await world.startCentral(world.dbUrl(centralKind, 'central'));
    const cdb = central.database!;
    await world.registerSite(cdb, SITE_ID, { pipeline: 'vals', header: 'c_vals_h', detail: 'c_vals_d' });
    const siteUrl = world.dbUrl(siteKind, 'site');
    const sdb = await world.open(siteUrl, 'site');
    await createSiteTables(sdb, siteKind);
    for (const r of ROWS) await insertRow(sdb, siteKind, r);
    const site = await world.startSite(world.siteConfig(SITE_ID, siteUrl, { pipelines: [pipeline()] }));

    const cols = columnsOf(siteKind);
    const lineCols: Col[] = [
      COLUMNS[0]!,
      { name: 'line', kind: 'int', ddl: {} },
      { name: 'val', kind: 'text', ddl: {} },
    ];
    const check = async (rows: typeof ROWS) => {
      // what the site holds is what was written, and the central holds exactly that
      expect(await readBack(sdb, 'vals_h', cols, false)).toEqual(expected(cols, rows));
      expect(await readBack(cdb, 'c_vals_h', cols, true)).toEqual(expected(cols, rows));
      expect(await readBack(cdb, 'c_vals_d', lineCols, true)).toEqual(await readBack(sdb, 'vals_d', lineCols, false));
    };

    const first = await site.runSession();
    expect(first.error).toBeUndefined();
    expect(first.status).toBe('ok');
    await check(ROWS);

    // A change at the site is sent once, the rest stays acknowledged.
    const q = (s: string) => sdb.dialect.quote(s);
    await sdb.query(
      `UPDATE vals_h SET ${q('big')} = 9007199254740995, ${q('ts')} = '1969-12-31 23:59:59.999' WHERE ${q('id')} = 1`,
    );
    const second = await site.runSession();
    expect(second.status).toBe('ok');
    expect(second.totals).toMatchObject({ headers: 1, deletions: 0 });
    const changed = ROWS.map((r) =>
      r.id === '1' ? { ...r, big: '9007199254740995', ts: '1969-12-31 23:59:59.999' } : r,
    );
    await check(changed);
    expect((await site.runSession()).totals).toMatchObject({ headers: 0, deletions: 0 });

    // A deleted header keyed by the largest int64 is deleted centrally, and nothing else is.
    await sdb.query(`DELETE FROM vals_d WHERE ${q('id')} = 9223372036854775807`);
    await sdb.query(`DELETE FROM vals_h WHERE ${q('id')} = 9223372036854775807`);
    const third = await site.runSession();
    expect(third.totals).toMatchObject({ headers: 0, deletions: 1 });
    await check(changed.filter((r) => r.id !== '9223372036854775807'));

    // The central's columns are the site's types, widened, never narrowed.
    if (centralKind !== 'sqlite') {
      const types = await centralTypes(cdb, 'c_vals_h');
      const byCentral = <T>(v: Record<'postgres' | 'mysql' | 'mssql', T>) => v[centralKind];
      expect(types.dbl).toBe(byCentral({ postgres: 'double precision', mysql: 'double', mssql: 'float' }));
      expect(types.d).toBe('date');
      expect(types.ts).toBe(
        byCentral({ postgres: 'timestamp without time zone', mysql: 'datetime', mssql: 'datetime2' }),
      );
      expect(types.big).toBe('bigint');
      if (centralKind === 'mysql') expect(types.txt).toBe('longtext');
      if (centralKind === 'mssql') expect(types.txt).toBe('nvarchar');
    }
  });
});
