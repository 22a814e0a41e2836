import { describe, expect, it } from 'vitest';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, mssqlUrl, mysqlUrl, postgresUrl } from '../support/services.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';
import { changeOrder, changeResult, deleteOrder, labPipeline, seedLabData } from '../support/lab-data.js';

const broker = amqpUrl();
const kinds: DbKind[] = [
  'sqlite',
  ...(postgresUrl() ? (['postgres'] as const) : []),
  ...(mysqlUrl() ? (['mysql'] as const) : []),
  ...(mssqlUrl() ? (['mssql'] as const) : []),
];
if (!mssqlUrl()) console.log(`[sitesync tests] incremental sync on SQL Server skipped: no SQL Server for this run`);
if (!broker) console.log('[sitesync tests] skipping incremental sync: no RabbitMQ available');

describe.skipIf(!broker).each(kinds)('incremental sync on %s', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  async function setup() {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    await world.registerSite(central.database!, 101);
    const site = await world.startSite(await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 120 }));
    const first = await site.runSession();
    expect(first.status).toBe('ok');
    return { central, site, cdb: central.database!, sdb: site.database! };
  }

  async function expectConverged(cdb: Parameters<typeof centralSnapshot>[0], sdb: Parameters<typeof siteSnapshot>[0]) {
    const c = await centralSnapshot(cdb, 101);
    const s = await siteSnapshot(sdb);
    expect(c.headers).toEqual(s.headers);
    expect(c.details).toEqual(s.details);
  }

  it('a second session with no change sends zero rows', async () => {
    const { site } = await setup();
    const second = await site.runSession();
    expect(second.status).toBe('ok');
    expect(second.totals).toEqual({ batches: 0, headers: 0, details: 0, deletions: 0 });
  });

  it('one changed detail re-sends exactly its header with all its details', async () => {
    const { site, cdb, sdb } = await setup();
    await changeResult(sdb, 42, '999.9');
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals).toEqual({ batches: 1, headers: 1, details: 5, deletions: 0 });
    await expectConverged(cdb, sdb);
    const v = await cdb.query<{ value: string }>(
      `SELECT value FROM central_results WHERE id_efector = ? AND result_id = ?`,
      [101, 4200],
    );
    expect(v[0]?.value).toBe('999.9');
  });

  it('detail lines removed, added and moved to another header are merged exactly', async () => {
    const { site, cdb, sdb } = await setup();
    const q = (c: string) => sdb.dialect.quote(c);
    await sdb.execute(`DELETE FROM ${q('lab_results')} WHERE result_id IN (?, ?)`, [1100, 1101]);
    await sdb.execute(
      `INSERT INTO ${q('lab_results')} (result_id, order_id, test_code, test_name, value, unit, ref_range, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [1299, 12, 'K', 'Potassium', '4.2', 'mmol/L', '3.5-5.1', ''],
    );
    await sdb.execute(`UPDATE ${q('lab_results')} SET order_id = ? WHERE result_id = ?`, [14, 1302]);
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals).toMatchObject({ headers: 4, details: 3 + 6 + 4 + 6, deletions: 0 });
    await expectConverged(cdb, sdb);
    expect(await countRows(cdb, 'central_results', 101)).toBe(599);
    const moved = await cdb.query<{ order_id: unknown }>(
      `SELECT order_id FROM central_results WHERE id_efector = ? AND result_id = ?`,
      [101, 1302],
    );
    expect(Number(moved[0]!.order_id)).toBe(14);
  });

  it('a header with more detail lines than one statement can compare is replaced whole, and converges', async () => {
    const { site, cdb, sdb } = await setup();
    await seedLabData(sdb, { orders: 1, detailsPerOrder: 2100, firstOrderId: 5000 });
    expect((await site.runSession()).totals).toMatchObject({ headers: 1, details: 2100 });
    await changeResult(sdb, 5000, 'big-changed');
    await sdb.execute(`DELETE FROM ${sdb.dialect.quote('lab_results')} WHERE result_id = ?`, [500001]);
    expect((await site.runSession()).totals).toMatchObject({ headers: 1, details: 2099 });
    await expectConverged(cdb, sdb);
    expect(await countRows(cdb, 'central_results', 101)).toBe(600 + 2099);
  });

  it('a legacy central table without the expected primary key is merged by delete + insert', async () => {
    const centralUrl = world.dbUrl(kind, 'central');
    const cdb0 = await world.open(centralUrl, 'central');
    const q = (c: string) => cdb0.dialect.quote(c);
    const t = (n: number) => cdb0.dialect.textType(n);
    await cdb0.query(
      `CREATE TABLE ${q('central_orders')} (id_efector INT NOT NULL, order_id INT NOT NULL, patient_id ${t(20)}, ` +
        `patient_name ${t(80)}, ordered_at ${t(30)}, ward ${t(40)}, priority ${t(10)}, status ${t(20)}, physician ${t(80)}, notes ${t(400)})`,
    );
    await cdb0.query(
      `CREATE TABLE ${q('central_results')} (id_efector INT NOT NULL, result_id INT NOT NULL, order_id INT NOT NULL, ` +
        `test_code ${t(10)}, test_name ${t(60)}, value ${t(20)}, unit ${t(20)}, ref_range ${t(20)}, flag ${t(2)})`,
    );
    const central = await world.startCentral(centralUrl);
    await world.registerSite(central.database!, 101);
    const site = await world.startSite(await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 30 }));
    expect((await site.runSession()).status).toBe('ok');
    await changeResult(site.database!, 3, 'legacy-ok');
    await changeOrder(site.database!, 4, 'status', 'VALIDATED');
    expect((await site.runSession()).totals).toMatchObject({ headers: 2, details: 10 });
    await expectConverged(central.database!, site.database!);
    expect(await countRows(central.database!, 'central_results', 101)).toBe(150);
  });

  it('a change to a column outside attributes sends nothing', async () => {
    const { site, sdb } = await setup();
    await changeOrder(sdb, 7, 'internal_note', 'edited by the lab, not for the central');
    const r = await site.runSession();
    expect(r.totals.headers).toBe(0);
  });

  it('new headers are sent; deleted headers disappear centrally with their details', async () => {
    const { site, cdb, sdb } = await setup();
    await deleteOrder(sdb, 5);
    await deleteOrder(sdb, 77);
    await seedLabData(sdb, { orders: 3, firstOrderId: 1000 });
    await changeOrder(sdb, 10, 'status', 'CANCELLED');
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals).toEqual({ batches: 1, headers: 4, details: 20, deletions: 2 });
    await expectConverged(cdb, sdb);
    expect(await countRows(cdb, 'central_orders', 101)).toBe(121);
    expect(await countRows(cdb, 'central_results', 101)).toBe(605);
    // The deletion was acknowledged: the next session sends nothing again.
    const again = await site.runSession();
    expect(again.totals).toEqual({ batches: 0, headers: 0, details: 0, deletions: 0 });
  });

  it('a header that leaves the filter is deleted centrally', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 20 });
    const site = await world.startSite({ ...input, pipelines: [labPipeline({ filter: "status <> 'CANCELLED'" })] });
    expect((await site.runSession()).totals.headers).toBe(20);
    await changeOrder(site.database!, 3, 'status', 'CANCELLED');
    const r = await site.runSession();
    expect(r.totals).toMatchObject({ headers: 0, deletions: 1 });
    const left = await central.database!.query(
      `SELECT order_id FROM central_orders WHERE id_efector = ? AND order_id = ?`,
      [101, 3],
    );
    expect(left).toHaveLength(0);
    expect(await countRows(central.database!, 'central_results', 101)).toBe(95);
  });

  it('a site keyed by a binary column: its deletion pass finds a vanished header by its bytes', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const cdb = central.database!;
    await world.registerSite(cdb, 101, { pipeline: 'bin', header: 'central_bin_h', detail: 'central_bin_d' });
    const url = world.dbUrl(kind, 'site101');
    const sdb = await world.open(url, 'site');
    const d = sdb.dialect;
    const q = (c: string) => d.quote(c);
    const bin = d.columnType({ name: 'k', type: 'binary', nullable: false }, true);
    await sdb.execute(
      `CREATE TABLE ${q('bin_h')} (${q('k')} ${bin} NOT NULL PRIMARY KEY, ${q('note')} ${d.textType(20)})`,
    );
    await sdb.execute(
      `CREATE TABLE ${q('bin_d')} (${q('line')} INT NOT NULL PRIMARY KEY, ${q('k')} ${bin} NOT NULL, ${q('v')} ${d.textType(20)})`,
    );
    // bytes 00 i ff: not UTF-8, and a zero byte first (a key compared as text would find none of them)
    const key = (i: number) => Buffer.from([0, i, 255]);
    await sdb.run(
      d.insertRows(
        'bin_h',
        ['k', 'note'],
        [1, 2, 3, 4, 5].map((i) => [key(i), `h${i}`]),
      ),
    );
    await sdb.run(
      d.insertRows(
        'bin_d',
        ['line', 'k', 'v'],
        [1, 2, 3, 4, 5].map((i) => [i * 10, key(i), `l${i}`]),
      ),
    );
    const site = await world.startSite(
      world.siteConfig(101, url, {
        pipelines: [
          { name: 'bin', baseEntity: 'bin_h', linkEntities: ['bin_h', { entity: 'bin_d', join: { k: 'k' } }] },
        ],
        // pages of two: the deletion pass reads the side table and looks up the site in several pages
        batch: { maxRows: 1000, maxBytes: 1_000_000, pageSize: 2 },
      }),
    );
    expect((await site.runSession()).totals).toMatchObject({ headers: 5, details: 5, deletions: 0 });
    const notes = async () =>
      (
        await cdb.query<{ note: string }>(`SELECT note FROM central_bin_h WHERE id_efector = ? ORDER BY note`, [101])
      ).map((r) => r.note);
    expect(await notes()).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
    await sdb.execute(`DELETE FROM ${q('bin_d')} WHERE ${q('k')} = ?`, [key(4)]);
    await sdb.execute(`DELETE FROM ${q('bin_h')} WHERE ${q('k')} = ?`, [key(4)]);
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    // only the vanished header: the four still present are found by their bytes, not sent as deletions
    expect(r.totals).toMatchObject({ headers: 0, deletions: 1 });
    expect(await notes()).toEqual(['h1', 'h2', 'h3', 'h5']);
    expect(await countRows(cdb, 'central_bin_d', 101)).toBe(4);
    expect((await site.runSession()).totals).toMatchObject({ headers: 0, deletions: 0 });
  });

  it('a base table that has SourceHash/TargetHash/IsSync columns gets them maintained', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 30 });
    const sdb = await world.open(input.db.url, 'site');
    const q = (c: string) => sdb.dialect.quote(c);
    const bool = kind === 'postgres' ? 'BOOLEAN' : 'INTEGER';
    for (const [col, type] of [
      ['SourceHash', 'VARCHAR(64)'],
      ['TargetHash', 'VARCHAR(64)'],
      ['IsSync', bool],
    ]) {
      await sdb.query(`ALTER TABLE lab_orders ADD COLUMN ${q(col!)} ${type!}`);
    }
    const site = await world.startSite(input);
    expect((await site.runSession()).status).toBe('ok');
    const rows = await sdb.query<{ SourceHash: string; TargetHash: string; IsSync: unknown }>(
      `SELECT ${q('SourceHash')}, ${q('TargetHash')}, ${q('IsSync')} FROM lab_orders ORDER BY order_id`,
    );
    expect(rows).toHaveLength(30);
    for (const r of rows) {
      expect(r.SourceHash).toMatch(/^[0-9a-f]{32}$/);
      expect(r.TargetHash).toBe(r.SourceHash);
      expect(Boolean(r.IsSync)).toBe(true);
    }
    // The hash columns themselves are not part of the hash: nothing is re-sent.
    expect((await site.runSession()).totals.headers).toBe(0);
    await changeResult(sdb, 4, 'new');
    expect((await site.runSession()).totals.headers).toBe(1);
    const four = await sdb.query<{ SourceHash: string; TargetHash: string }>(
      `SELECT ${q('SourceHash')}, ${q('TargetHash')} FROM lab_orders WHERE order_id = 4`,
    );
    expect(four[0]!.TargetHash).toBe(four[0]!.SourceHash);
    expect(four[0]!.SourceHash).not.toBe(rows[3]!.SourceHash);
  });

  it('batches are bounded by rows and by bytes', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 100 });
    const byRows = await world.startSite({ ...input, batch: { maxRows: 60, maxBytes: 10_000_000, pageSize: 500 } });
    const r = await byRows.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals.batches).toBe(10); // 6 rows per header, 60 rows per batch
    await byRows.close();
    const sdb = await world.open(input.db.url, 'site');
    for (let i = 1; i <= 100; i++) await changeResult(sdb, i, `v${i}`);
    const byBytes = await world.startSite({ ...input, batch: { maxRows: 100_000, maxBytes: 8_000, pageSize: 500 } });
    const r2 = await byBytes.runSession();
    expect(r2.status).toBe('ok');
    expect(r2.totals.headers).toBe(100);
    expect(r2.totals.batches).toBeGreaterThanOrEqual(10);
  });

  it("a pipeline's batches grow from 500 rows, doubling up to maxRows", async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 700 });
    const site = await world.startSite({ ...input, batch: { maxRows: 1200, maxBytes: 10_000_000, pageSize: 500 } });
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    // 6 rows per header: 83 headers (498 rows), 166 (996), then 200 (1,200, the cap) twice, then
    // the last 51; batches of 1,200 rows from the start would have been 4
    expect(r.totals).toEqual({ batches: 5, headers: 700, details: 3500, deletions: 0 });
    expect(await countRows(central.database!, 'central_orders')).toBe(700);
  });
});
