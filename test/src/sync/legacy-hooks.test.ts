import { describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, mssqlUrl, postgresUrl } from '../support/services.js';
import { centralSnapshot, siteSnapshot } from '../support/compare.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping legacy hooks: no RabbitMQ available');

/**
 * The legacy job's stored procedures, as a site keeps them: one called with a phase before and
 * after the migration, and the migration itself. Each call is logged so the order can be checked.
 */
const LEGACY: Partial<
  Record<DbKind, { create: string[]; hooks: { before: string; legacy: string; after: string }; broken: string }>
> = {
  postgres: {
    create: [
      `CREATE TABLE hook_log (n SERIAL PRIMARY KEY, phase TEXT NOT NULL)`,
      `CREATE PROCEDURE sp_sync(fase TEXT) LANGUAGE SQL AS $$ INSERT INTO hook_log (phase) VALUES (fase) $$`,
      `CREATE PROCEDURE sp_migracion() LANGUAGE SQL AS $$ INSERT INTO hook_log (phase) VALUES ('migracion') $$`,
    ],
    hooks: {
      before: `CALL sp_sync(fase => 'antes')`,
      legacy: `CALL sp_migracion()`,
      after: `CALL sp_sync(fase => 'despues')`,
    },
    broken: `CALL sp_missing(fase => 'antes')`,
  },
  mssql: {
    create: [
      `CREATE TABLE hook_log (n INT IDENTITY PRIMARY KEY, phase NVARCHAR(20) NOT NULL)`,
      `CREATE PROCEDURE dbo.sp_sync @fase NVARCHAR(20) AS INSERT INTO hook_log (phase) VALUES (@fase)`,
      `CREATE PROCEDURE dbo.sp_migracion AS INSERT INTO hook_log (phase) VALUES ('migracion')`,
    ],
    hooks: {
      before: `EXEC dbo.sp_sync @fase = 'antes'`,
      legacy: `EXEC dbo.sp_migracion`,
      after: `EXEC dbo.sp_sync @fase = 'despues'`,
    },
    broken: `EXEC dbo.sp_missing @fase = 'antes'`,
  },
};

const kinds = (['postgres', 'mssql'] as const).filter((k) => (k === 'postgres' ? postgresUrl() : mssqlUrl()));
if (!mssqlUrl()) console.log('[sitesync tests] legacy hooks on SQL Server (EXEC ... @fase) skipped: no SQL Server');

describe.skipIf(!broker || kinds.length === 0).each(kinds)('legacy stored procedures as hooks on %s', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  async function phases(db: Database): Promise<string[]> {
    return (await db.query<{ phase: string }>(`SELECT phase FROM hook_log ORDER BY n`)).map((r) => r.phase);
  }

  it('calls before, legacy and after around each session exactly as the old cron did', async () => {
    const legacy = LEGACY[kind]!;
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    await world.registerSite(central.database!, 101);
    const siteUrl = world.dbUrl(kind, 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 20 });
    const setup = await world.open(siteUrl, 'site');
    for (const sql of legacy.create) await setup.query(sql);

    const site = await world.startSite({ ...input, hooks: legacy.hooks });
    expect((await site.runSession()).status).toBe('ok');
    expect(await phases(setup)).toEqual(['antes', 'migracion', 'despues']);
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(site.database!));
    expect((await site.runSession()).status).toBe('ok');
    expect(await phases(setup)).toEqual(['antes', 'migracion', 'despues', 'antes', 'migracion', 'despues']);
  });

  it('a failing hook fails the session with its name and the database error, and publishes nothing', async () => {
    const legacy = LEGACY[kind]!;
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    await world.registerSite(central.database!, 101);
    const siteUrl = world.dbUrl(kind, 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 5 });
    const site = await world.startSite({ ...input, hooks: { before: legacy.broken } });
    const r = await site.runSession();
    expect(r.status).not.toBe('ok');
    expect(r.error).toMatch(/hook "before" failed: .*sp_missing/);
    expect(r.totals.batches).toBe(0);
    const log = await site.database!.query<{ status: string; error: string }>(
      `SELECT status, error FROM ${site.database!.dialect.quote('LAB_SyncStatus')} ORDER BY version`,
    );
    expect(log.at(-1)!.error).toMatch(/hook "before" failed/);
  });
});
