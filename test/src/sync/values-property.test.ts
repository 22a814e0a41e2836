// Values must not move with the site's process time zone: generated wall clocks are read and
// written in a zone that is neither UTC nor a whole-hour offset for much of history.
process.env.TZ = 'America/Argentina/Buenos_Aires';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import {
  SITE_ID,
  VALUE_DB_KINDS,
  columnsOf,
  createSiteTables,
  expected,
  insertRow,
  pipeline,
  readBack,
  type Col,
} from '../support/value-columns.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping the value property test: no RabbitMQ available');

const KINDS = VALUE_DB_KINDS;
/** Each available dialect once as a site and once as a central (the full matrix is values.test.ts). */
const PAIRS = KINDS.map((site, i) => [site, KINDS[(i + 1) % KINDS.length]!] as const);
/** Generated cases per pair: each is two sessions (a first sync of random rows, then a random change). SITESYNC_PROPERTY_RUNS runs more, for a soak. */
const RUNS = Number(process.env.SITESYNC_PROPERTY_RUNS ?? 20);

const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const year = fc.integer({ min: 1000, max: 9999 });
const dateText = fc
  .record({ y: year, m: fc.integer({ min: 1, max: 12 }), d: fc.integer({ min: 1, max: 28 }) })
  .map(({ y, m, d }) => `${y}-${pad(m)}-${pad(d)}`);
const timeText = fc
  .record({
    h: fc.integer({ min: 0, max: 23 }),
    mi: fc.integer({ min: 0, max: 59 }),
    s: fc.integer({ min: 0, max: 59 }),
    us: fc.integer({ min: 0, max: 999_999 }),
  })
  .map(({ h, mi, s, us }) => `${pad(h)}:${pad(mi)}:${pad(s)}.${pad(us, 6)}`);
/** Text any central here can hold: whole code points (no lone surrogate), no NUL (PostgreSQL refuses both). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const text = (maxLength: number) =>
  fc.string({ unit: 'binary', maxLength }).filter((s) => !LONE_SURROGATE.test(s) && !s.includes('\0'));
/**
 * Doubles as their shortest round-trip text. Not -0 (it travels as '-0', which a MariaDB or SQLite
 * central refuses: float-values.test.ts holds that) and not subnormal (MariaDB reads such literals
 * as 0): both are left out here, not hidden.
 */
const double = fc
  .double({ min: -1e300, max: 1e300, noNaN: true, noDefaultInfinity: true })
  .filter((v) => !Object.is(v, -0) && (v === 0 || Math.abs(v) >= 1e-300))
  .map(String);
const decimal = fc
  .record({
    neg: fc.boolean(),
    int: fc.bigInt({ min: 0n, max: 10n ** 20n - 1n }),
    frac: fc.integer({ min: 0, max: 1e9 }),
  })
  .map(({ neg, int, frac }) => `${neg ? '-' : ''}${int}.${String(frac).padStart(10, '0')}`);
const hexBytes = fc.uint8Array({ maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));

/** A generator of one column's value as text (null: SQL NULL). */
function valueOf(col: Col): fc.Arbitrary<string | null> {
  const v: fc.Arbitrary<string> = (() => {
    switch (col.name) {
      case 'big':
        return fc.bigInt(INT64).map(String);
      case 'dbl':
        return double;
      case 'dec':
        return decimal;
      case 'txt':
        return text(200);
      case 'note':
        return text(20);
      case 'd':
        return dateText;
      case 'ts':
        return fc.tuple(dateText, timeText).map(([d, t]) => `${d} ${t}`);
      case 'tm':
        return timeText;
      case 'tstz':
        return fc.tuple(dateText, timeText).map(([d, t]) => `${d} ${t}+00`);
      case 'bin':
        return hexBytes;
      case 'flag':
        return fc.boolean().map(String);
      case 'u':
        return fc.uuid();
      default:
        throw new Error(`no generator for column ${col.name}`);
    }
  })();
  return fc.option(v, { nil: null });
}

/** Rows of random values for every column of a site dialect, with unique int64 keys. */
function rowsOf(cols: Col[]): fc.Arbitrary<Array<Record<string, string | null>>> {
  const others = cols.filter((c) => c.name !== 'id');
  const values = fc.record(Object.fromEntries(others.map((c) => [c.name, valueOf(c)])));
  return fc
    .uniqueArray(fc.bigInt(INT64), { minLength: 1, maxLength: 8 })
    .chain((ids) => fc.tuple(...ids.map(() => values)).map((vs) => vs.map((v, i) => ({ id: String(ids[i]), ...v }))));
}

describe.skipIf(!broker)('random typed values survive a sync exactly (property)', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it.each(PAIRS)(
    'from a %s site to a %s central: site == central after a sync and after a change',
    async (siteKind, centralKind) => {
      const central = await world.startCentral(world.dbUrl(centralKind, 'central'));
      const cdb = central.database!;
      await world.registerSite(cdb, SITE_ID, { pipeline: 'vals', header: 'c_vals_h', detail: 'c_vals_d' });
      const siteUrl = world.dbUrl(siteKind, 'site');
      const sdb = await world.open(siteUrl, 'site');
      await createSiteTables(sdb, siteKind);
      const site = await world.startSite(world.siteConfig(SITE_ID, siteUrl, { pipelines: [pipeline()] }));
      const cols = columnsOf(siteKind);

      const replaceAll = async (rows: Array<Record<string, string | null>>) => {
        await sdb.query('DELETE FROM vals_d');
        await sdb.query('DELETE FROM vals_h');
        for (const r of rows) await insertRow(sdb, siteKind, r);
        const s = await site.runSession();
        expect(s.error).toBeUndefined();
        expect(s.status).toBe('ok');
        expect(await readBack(cdb, 'c_vals_h', cols, true)).toEqual(expected(cols, rows));
      };

      await fc.assert(
        fc.asyncProperty(rowsOf(cols), rowsOf(cols), async (first, second) => {
          await replaceAll(first);
          // A change: other rows (the first ones are deleted at the site, so centrally too) and other values.
          await replaceAll(second);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
    },
  );
});
