import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startHttpServer } from '@sitesync/protocol';
import { supervisionRoutes } from '@sitesync/central';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping central HTTP API: no RabbitMQ available');
const TOKEN = 'a-long-enough-test-token';

describe.skipIf(!broker)('central HTTP API for transfers', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('moves an intervention on an authenticated request and refuses bad ones clearly', async () => {
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'), {
      dispatchIntervalMs: 100,
      apiToken: TOKEN,
    });
    const cdb = central.database!;
    await world.registerSite(cdb, 101);
    const site = await world.startSite({
      ...(await world.prepareSite(101, world.dbUrl('sqlite', 'w1'))),
      transferPollSeconds: 0.2,
    });
    await central.interventionService!.publishProcedure({ code: 'P', version: 1, name: 'P', definition: '{}' }, []);
    const guid = randomUUID();
    await cdb.execute(
      `INSERT INTO intervention (guid, procedure_code, procedure_version, finished, payload, state, transfer_requested, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [guid, 'P', 1, 0, '{"n":1}', 'active', 0, new Date().toISOString()],
    );
    const server = await startHttpServer(
      0,
      central.metrics.registry,
      async () => ({ ok: true, detail: {} }),
      supervisionRoutes(central),
    );
    world.onTeardown(() => new Promise((r) => server.close(() => r())));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const post = (body: unknown, token = TOKEN) =>
      fetch(`${base}/api/transfers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });

    expect((await post({ guid, to: 101 }, 'wrong-token-wrong-token')).status).toBe(401);
    expect((await fetch(`${base}/api/transfers`)).status).toBe(401);
    expect((await post({ guid })).status).toBe(400);
    const unknown = await post({ guid: randomUUID(), to: 101 });
    expect(unknown.status).toBe(409);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/not held by the central/);

    const ok = await post({ guid, to: 101 });
    expect(ok.status).toBe(202);
    const { transferId } = (await ok.json()) as { transferId: string };
    const again = await post({ guid, to: 101 });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: string }).error).toMatch(/already being transferred/);

    const end = Date.now() + 20_000;
    let state = '';
    while (Date.now() < end && state !== 'completed') {
      const r = await fetch(`${base}/api/transfers?guid=${guid}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const rows = (await r.json()) as Array<{ transfer_id: string; state: string }>;
      state = rows.find((t) => t.transfer_id === transferId)?.state ?? '';
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(state).toBe('completed');
    expect(
      await site.database!.query(`SELECT id FROM intervention WHERE guid = ? AND state = 'active'`, [guid]),
    ).toHaveLength(1);
    expect(await cdb.query(`SELECT id FROM intervention WHERE guid = ?`, [guid])).toHaveLength(0);
  });
});
