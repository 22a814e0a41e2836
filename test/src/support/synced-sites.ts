import { expect } from 'vitest';
import type { DbKind, TestWorld } from './harness.js';

/**
 * A central (on `kind`) with two SQLite sites synced once: site 101 (60 orders) and site 102 (5
 * orders, ids from 9001), whose rows share the central tables and must never count for 101.
 */
export async function twoSyncedSites(world: TestWorld, kind: DbKind) {
  const centralUrl = world.dbUrl(kind, 'central');
  const central = await world.startCentral(centralUrl);
  const cdb = central.database!;
  await world.registerSite(cdb, 101);
  await world.registerSite(cdb, 102);
  const siteUrl = world.dbUrl('sqlite', 'site101');
  const site = await world.startSite(await world.prepareSite(101, siteUrl, { orders: 60 }));
  expect((await site.runSession()).status).toBe('ok');
  const other = await world.startSite(
    await world.prepareSite(102, world.dbUrl('sqlite', 'site102'), { orders: 5, firstOrderId: 9001 }),
  );
  expect((await other.runSession()).status).toBe('ok');
  return { centralUrl, central, cdb, siteUrl, site, other };
}
