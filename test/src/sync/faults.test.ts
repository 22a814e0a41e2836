import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SessionLockedError } from '@sitesync/peripheral';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';
import { changeResult, deleteOrder, seedLabData } from '../support/lab-data.js';
import { until } from '../support/wait.js';

const broker = amqpUrl();
const REPO = resolve(fileURLToPath(import.meta.url), '../../../..');
const PERIPHERAL_BIN = join(REPO, 'agents/peripheral/bin/sync-peripheral.js');
if (!broker) console.log('[sitesync tests] skipping fault tests: no RabbitMQ available');

describe.skipIf(!broker)('faults and concurrency', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('lost ack: a peripheral killed after publishing and before the ack converges on the next session, with no duplicates', async () => {
    const ch = await world.rawChannel();
    await world.topology.declareCentral(ch);
    const siteUrl = world.dbUrl('sqlite', 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 200 });
    const cfgFile = join(world.dir, 'site101.json');
    writeFileSync(cfgFile, JSON.stringify({ ...input, lockTtlSeconds: 2, ackTimeoutSeconds: 120, logLevel: 'warn' }));

    // No central is running: the session publishes everything, then waits for acks that cannot come.
    const child = spawn(process.execPath, [PERIPHERAL_BIN, 'run', '--once', '--config', cfgFile], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(signal ? null : code)));
    try {
      const published = await until('the session to be published', async () => {
        const q = await ch.checkQueue(world.topology.centralSyncQueue);
        return q.messageCount >= 3 && q.messageCount; // session.started + batch(es) + session.completed
      });
      expect(published).toBeGreaterThanOrEqual(3);
    } finally {
      child.kill('SIGKILL');
    }
    expect(await exited).toBeNull();

    // The central now merges the orphaned session; its acks wait in the site queue.
    const centralUrl = world.dbUrl('sqlite', 'central');
    await world.registerSite(await world.open(centralUrl, 'central'), 101);
    const central = await world.startCentral(centralUrl);
    await changeResult(await world.open(siteUrl, 'site'), 9, 'changed after the crash');
    const site = await world.startSite({ ...input, lockTtlSeconds: 2 });
    const r = await until('the dead session lock to expire', () =>
      site.runSession().catch((err: unknown) => {
        if (err instanceof SessionLockedError) return undefined;
        throw err;
      }),
    );
    expect(r.status).toBe('ok');
    const c = await centralSnapshot(central.database!, 101);
    const s = await siteSnapshot(site.database!);
    expect(c).toEqual(s);
    expect(await countRows(central.database!, 'central_orders', 101)).toBe(200);
    expect(await countRows(central.database!, 'central_results', 101)).toBe(1000);
    const again = await site.runSession();
    expect(again.totals.headers).toBe(0);
    const log = await site.database!.query<{ status: string }>(`SELECT status FROM "LAB_SyncStatus" ORDER BY version`);
    // The killed session's entry says what happened to it: the central's late session.ack may
    // confirm it (everything had been published), else the next session marks it abandoned.
    expect(['ok', 'abandoned']).toContain(log[0]!.status);
  });

  it('a session with the broker down fails cleanly, says why in LAB_SyncStatus, and the next one sends everything still dirty', async () => {
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 50 });
    const { PeripheralAgent } = await import('@sitesync/peripheral');
    const { parsePeripheralConfig } = await import('@sitesync/protocol');
    const { testLogger } = await import('../support/harness.js');
    const down = new PeripheralAgent(
      parsePeripheralConfig({ ...input, amqp: { ...input.amqp, url: 'amqp://guest:guest@127.0.0.1:1' } }),
      testLogger('down'),
    );
    await down.start({ requireBroker: false });
    try {
      const r = await down.runSession();
      expect(r.status).toBe('failed');
      expect(r.error).toMatch(/broker/i);
      const log = await down.database!.query<{ status: string; error: string }>(
        `SELECT status, error FROM "LAB_SyncStatus"`,
      );
      expect(log).toHaveLength(1);
      expect(log[0]).toMatchObject({ status: 'failed' });
      expect(log[0]!.error).toMatch(/cannot connect to the broker/);
    } finally {
      await down.close();
    }
    const up = await world.startSite(input);
    const r2 = await up.runSession();
    expect(r2).toMatchObject({ status: 'ok', totals: { headers: 50, details: 250 } });
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(up.database!));
  });

  it('never runs two sessions of one site at once (a second agent process is refused)', async () => {
    const ch = await world.rawChannel();
    await world.topology.declareCentral(ch);
    const siteUrl = world.dbUrl('sqlite', 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 100 });
    const a = await world.startSite(input);
    // No central yet: A's session stays open, waiting for its acks.
    const running = a.runSession();
    await until('A to hold the session', async () => {
      const rows = await a.database!.query(`SELECT id FROM "LAB_SyncStatus" WHERE status = 'running'`);
      return rows.length === 1;
    });
    const cfgFile = join(world.dir, 'b.json');
    writeFileSync(cfgFile, JSON.stringify({ ...input, logLevel: 'warn' }));
    const b = spawn(process.execPath, [PERIPHERAL_BIN, 'run', '--once', '--config', cfgFile]);
    let out = '';
    b.stdout.on('data', (d: Buffer) => (out += d.toString()));
    b.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => b.once('exit', r));
    expect(code).toBe(1);
    expect(out).toMatch(/another session of this site is running/);

    // Register the site before the central consumes what A published while it was away.
    const centralUrl = world.dbUrl('sqlite', 'central');
    await world.registerSite(await world.open(centralUrl, 'central'), 101);
    const central = await world.startCentral(centralUrl);
    expect((await running).status).toBe('ok');
    const log = await a.database!.query(`SELECT id FROM "LAB_SyncStatus"`);
    expect(log).toHaveLength(1);
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(a.database!));
  });

  it('SIGTERM stops the central after its open transaction: nothing half-applied, the rest is merged after restart', async () => {
    const ch = await world.rawChannel();
    await world.topology.declareCentral(ch);
    const centralUrl = world.dbUrl('sqlite', 'central');
    const cdb = await world.open(centralUrl, 'central');
    await world.registerSite(cdb, 101);
    const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 1500 });
    const site = await world.startSite({
      ...input,
      ackTimeoutSeconds: 0.5,
      batch: { maxRows: 30, maxBytes: 1_000_000, pageSize: 500 },
    });
    expect((await site.runSession()).totals.batches).toBe(300);

    const cfgFile = join(world.dir, 'central.json');
    writeFileSync(
      cfgFile,
      JSON.stringify({
        amqp: { url: broker, prefix: world.prefix },
        db: { url: centralUrl },
        prefetch: 8,
        logLevel: 'warn',
      }),
    );
    const child = spawn(
      process.execPath,
      [join(REPO, 'agents/central/bin/sync-central.js'), 'run', '--config', cfgFile],
      { stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await until('the central to merge some batches', async () => {
        const n = await cdb.query<{ n: number }>(`SELECT COUNT(*) AS n FROM sync_inbox WHERE message_type = 'batch'`);
        return Number(n[0]!.n) >= 20;
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    // Whatever was committed is complete: every merged batch has all its rows.
    const merged = await cdb.query<{ h: number; d: number }>(
      `SELECT SUM(headers) AS h, SUM(details) AS d FROM sync_inbox WHERE message_type = 'batch'`,
    );
    expect(await countRows(cdb, 'central_orders', 101)).toBe(Number(merged[0]!.h));
    expect(await countRows(cdb, 'central_results', 101)).toBe(Number(merged[0]!.d));
    expect(Number(merged[0]!.h)).toBeLessThan(1500);

    const central = await world.startCentral(centralUrl);
    await until(
      'the rest to be merged',
      async () => (await countRows(central.database!, 'central_results', 101)) === 7500,
    );
    expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(site.database!));
  });

  const centralKind = postgresUrl() ? 'postgres' : 'sqlite';
  it(`two central consumers at once and two sites at once into shared tables both converge (${centralKind} central)`, async () => {
    const centralUrl = world.dbUrl(centralKind, 'central');
    const c1 = await world.startCentral(centralUrl, { prefetch: 4 });
    const c2 = await world.startCentral(centralUrl, { prefetch: 4 });
    const cdb = c1.database!;
    await world.registerSite(cdb, 101);
    await world.registerSite(cdb, 102);
    const small = { maxRows: 120, maxBytes: 1_000_000, pageSize: 200 };
    const in101 = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 600, seed: 1 });
    const in102 = await world.prepareSite(102, world.dbUrl('sqlite', 'site102'), { orders: 500, seed: 2 });
    const s101 = await world.startSite({ ...in101, batch: small });
    const s102 = await world.startSite({ ...in102, batch: small });
    const [r1, r2] = await Promise.all([s101.runSession(), s102.runSession()]);
    expect(r1.status).toBe('ok');
    expect(r2.status).toBe('ok');
    expect(r1.totals.batches).toBeGreaterThan(10);
    // Both consumers took part.
    const handled = async (agent: typeof c1) =>
      (await agent.metrics.batches.get()).values.reduce((n, v) => n + v.value, 0);
    expect(await handled(c1)).toBeGreaterThan(0);
    expect(await handled(c2)).toBeGreaterThan(0);
    // Same order ids at both sites: the site id keeps them apart in the shared tables.
    for (const [id, site] of [
      [101, s101],
      [102, s102],
    ] as const) {
      expect(await centralSnapshot(cdb, id)).toEqual(await siteSnapshot(site.database!));
    }
    // A second round with changes and deletions at both sites.
    for (const site of [s101, s102]) {
      for (let i = 1; i <= 40; i++) await changeResult(site.database!, i * 7, `r2-${i}`);
      await deleteOrder(site.database!, 3);
      await seedLabData(site.database!, { orders: 10, firstOrderId: 5000 });
    }
    const [r3, r4] = await Promise.all([s101.runSession(), s102.runSession()]);
    expect(r3.status).toBe('ok');
    expect(r4.status).toBe('ok');
    for (const [id, site] of [
      [101, s101],
      [102, s102],
    ] as const) {
      expect(await centralSnapshot(cdb, id)).toEqual(await siteSnapshot(site.database!));
    }
  });
});

describe.skipIf(!broker)('broker connection loss', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('agents reconnect after the broker closes their connections, and the next session converges', async () => {
    const { closeBrokerConnections } = await import('../support/harness.js');
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    await world.registerSite(central.database!, 101);
    const site = await world.startSite(await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 100 }));
    expect((await site.runSession()).status).toBe('ok');
    const closed = await closeBrokerConnections(world.prefix);
    expect(closed).toBe(2);
    for (let i = 1; i <= 20; i++) await changeResult(site.database!, i, `after-cut-${i}`);
    await until(
      'both agents to reconnect',
      async () => central.brokerConnection!.connected && site.brokerConnection!.connected,
    );
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(r.totals.headers).toBe(20);
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(site.database!));
    expect(central.brokerConnection!.reconnects).toBeGreaterThanOrEqual(1);
  });
});
