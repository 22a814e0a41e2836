import { describe, expect, it } from 'vitest';
import { claimChangedKeys, dirtyTableName, resolvePipeline } from '@sitesync/db';
import { HashingFileSchema } from '@sitesync/protocol';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, mssqlUrl, mysqlUrl, postgresUrl } from '../support/services.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';
import { changeOrder, changeResult, deleteOrder, labPipeline, seedLabData } from '../support/lab-data.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping change tracking: no RabbitMQ available');
const kinds: DbKind[] = [
  'sqlite',
  ...(postgresUrl() ? (['postgres'] as const) : []),
  ...(mysqlUrl() ? (['mysql'] as const) : []),
  ...(mssqlUrl() ? (['mssql'] as const) : []),
];

describe.skipIf(!broker).each(kinds)('trigger-kept change tracking on %s', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  async function setup(fullScanHours = 24) {
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl(kind, 'site101'), { orders: 150 });
    const site = await world.startSite({
      ...input,
      pipelines: [labPipeline({ changeTracking: 'triggers', fullScanHours })],
    });
    return { central, site, cdb: central.database!, sdb: site.database! };
  }

  it('reads only what changed after a first full scan, and sends exactly the changed headers', async () => {
    const { site, cdb, sdb } = await setup();
    const first = await site.runSession();
    expect(first.status).toBe('ok');
    expect(first.scans).toEqual([expect.objectContaining({ mode: 'full', scanned: 150, dirty: 150 })]);

    const idle = await site.runSession();
    expect(idle.scans).toEqual([expect.objectContaining({ mode: 'changes', scanned: 0, dirty: 0, deleted: 0 })]);
    expect(idle.totals.headers).toBe(0);

    await changeOrder(sdb, 3, 'status', 'VALIDATED-2');
    await changeResult(sdb, 4, 'detail changed');
    await changeOrder(sdb, 5, 'internal_note', 'not hashed: fires the trigger, changes no hash');
    await seedLabData(sdb, { orders: 2, firstOrderId: 900 });
    await deleteOrder(sdb, 6);
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.scans).toEqual([expect.objectContaining({ mode: 'changes', scanned: 5, dirty: 4, deleted: 1 })]);
    expect(r.totals).toMatchObject({ headers: 4, details: 20, deletions: 1 });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(sdb));
    expect(await countRows(cdb, 'central_orders', 101)).toBe(151);

    // The queue is emptied once a session has handled it.
    const left = await sdb.query<{ n: number }>(
      `SELECT COUNT(*) AS n FROM ${sdb.dialect.quote(dirtyTableName('lab'))}`,
    );
    expect(Number(left[0]!.n)).toBe(0);
  });

  it('turning tracking off removes the triggers and their queue; sessions re-hash again', async () => {
    const { site, cdb } = await setup();
    expect((await site.runSession()).status).toBe('ok');
    const input = { ...site.config, pipelines: [labPipeline()] };
    await site.close();
    const plain = await world.startSite({ ...input, amqp: { url: broker!, prefix: world.prefix } });
    const db = plain.database!;
    expect(await db.describeTable(dirtyTableName('lab'))).toBeUndefined();
    await changeResult(db, 8, 'no trigger');
    const r = await plain.runSession();
    expect(r.scans[0]).toMatchObject({ mode: 'full', scanned: 150, dirty: 1 });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(db));
  });

  it('a session that took queued keys and died leaves them for the next one', async () => {
    const { site, cdb, sdb } = await setup();
    expect((await site.runSession()).status).toBe('ok');
    await changeResult(sdb, 10, 'pre-crash');
    // A session claims the queue, then its process dies before it could send anything.
    const pipeline = await resolvePipeline(sdb, HashingFileSchema.parse(labPipeline({ changeTracking: 'triggers' })));
    expect(await claimChangedKeys(sdb, pipeline, 99)).toHaveLength(1);
    const r = await site.runSession();
    expect(r.scans[0]).toMatchObject({ mode: 'changes', dirty: 1 });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(sdb));
  });

  it('re-sends what the central never acknowledged, and runs a full scan again after fullScanHours', async () => {
    const { site, cdb, sdb } = await setup(0.0005); // about 2 s
    expect((await site.runSession()).status).toBe('ok');
    // The acks of a send are lost: the side table still says "pending".
    await changeResult(sdb, 20, 'ack lost');
    await sdb.execute(`DELETE FROM ${sdb.dialect.quote(dirtyTableName('lab'))}`);
    await sdb.execute(`UPDATE sync_row_state SET pending_batch = ?, pending_hash = ? WHERE header_key = ?`, [
      'lost-batch',
      'f'.repeat(32),
      JSON.stringify(['20']),
    ]);
    const again = await site.runSession();
    expect(again.scans[0]).toMatchObject({ mode: 'changes', dirty: 1 });
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(sdb));

    // A change the triggers cannot see (they were dropped meanwhile) is found by the periodic full scan.
    await new Promise((r) => setTimeout(r, 2100));
    const full = await site.runSession();
    expect(full.scans[0]).toMatchObject({ mode: 'full', scanned: 150, dirty: 0 });
  });
});
