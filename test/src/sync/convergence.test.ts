import { describe, expect, it } from 'vitest';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, mssqlUrl, mysqlUrl, postgresUrl } from '../support/services.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';

const broker = amqpUrl();
const kinds: DbKind[] = [
  'sqlite',
  ...(postgresUrl() ? (['postgres'] as const) : []),
  ...(mysqlUrl() ? (['mysql'] as const) : []),
  ...(mssqlUrl() ? (['mssql'] as const) : []),
];
if (!mssqlUrl()) console.log('[sitesync tests] header/detail sync on SQL Server skipped: no SQL Server for this run');
if (!broker) console.log('[sitesync tests] skipping convergence: no RabbitMQ available');

describe.skipIf(!broker).each(kinds)('header/detail sync on %s', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('after a session, the central equals the site row by row', async () => {
    const centralUrl = world.dbUrl(kind, 'central');
    const central = await world.startCentral(centralUrl);
    await world.registerSite(central.database!, 101);
    const siteUrl = world.dbUrl(kind, 'site101');
    const site = await world.startSite(await world.prepareSite(101, siteUrl, { orders: 300, detailsPerOrder: 5 }));
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals).toMatchObject({ headers: 300, details: 1500, deletions: 0 });
    const siteDb = site.database!;
    const c = await centralSnapshot(central.database!, 101);
    const s = await siteSnapshot(siteDb);
    expect(c.headers).toEqual(s.headers);
    expect(c.details).toEqual(s.details);
    expect(await countRows(central.database!, 'central_results', 101)).toBe(1500);
    const state = await central.database!.query<Record<string, unknown>>(
      `SELECT * FROM ${central.database!.dialect.quote('EstadoSyncGeneral')} WHERE id_efector = ?`,
      [101],
    );
    expect(state[0]).toMatchObject({ status: 'ok' });
    expect(Number(state[0]!.ultimo_sync_registros)).toBe(1800);
    expect(Number(state[0]!.header_count)).toBe(300);
    expect(Number(state[0]!.detail_count)).toBe(1500);
    expect(state[0]!.ultimo_update_efector_fin).not.toBeNull();
    expect(state[0]!.ultimo_sync_fecha_fin).not.toBeNull();
  });
});
