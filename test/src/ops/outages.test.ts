import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database } from '@sitesync/db';
import { type TestWorld, worldPerTest, closeBrokerConnections } from '../support/harness.js';
import { amqpUrl, managementUrl } from '../support/services.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';
import { changeResult } from '../support/lab-data.js';
import { PrivatePostgres } from '../support/private-postgres.js';
import { REPO, syncctl, until } from '../support/wait.js';
import { ManagementApi } from '@sitesync/protocol';

const broker = amqpUrl();
const mgmt = managementUrl();
const noPostgres = PrivatePostgres.unavailable();
if (!broker) console.log('[sitesync tests] skipping outage tests: no RabbitMQ available');
if (noPostgres) console.log(`[sitesync tests] skipping the central database outage test: ${noPostgres}`);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function get(url: string): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  } catch (err) {
    return { status: 0, text: (err as Error).message };
  }
}

/** The value of one Prometheus sample (`name{labels}`), or undefined. */
function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe.skipIf(!broker)('outages: the central database and the broker connections', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it.skipIf(!!noPostgres)(
    'the central database stops mid-session: /healthz turns 503, the merge waits, and once it is back the session completes with nothing lost or duplicated; a lost broker connection turns /healthz 503 until it reconnects',
    async () => {
      const pg = await PrivatePostgres.create();
      let central: ChildProcess | undefined;
      try {
        const centralUrl = pg.url();
        const port = await freePort();
        // Its own broker user where the management API is on, so the test can take the broker away from it.
        const api = mgmt ? ManagementApi.fromAmqpUrl(broker!, mgmt) : undefined;
        const centralUser = `t${world.id}-central`;
        const grantCentralUser = async () => {
          await api!.putUser(centralUser, 'outage-test');
          await api!.setPermissions(centralUser, { configure: '.*', write: '.*', read: '.*' });
        };
        let amqpForCentral = broker!;
        if (api) {
          await grantCentralUser();
          world.onTeardown(() => api.deleteUser(centralUser));
          const u = new URL(broker!);
          u.username = centralUser;
          u.password = 'outage-test';
          amqpForCentral = u.toString();
        }
        const cfgFile = join(world.dir, 'central.json');
        writeFileSync(
          cfgFile,
          JSON.stringify({
            amqp: { url: amqpForCentral, prefix: world.prefix },
            db: { url: centralUrl },
            httpPort: port,
            logLevel: 'warn',
          }),
        );
        central = spawn(process.execPath, [join(REPO, 'agents/central/bin/sync-central.js'), 'run', '-c', cfgFile], {
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        const base = `http://127.0.0.1:${port}`;
        await until('the central to be healthy', async () => (await get(`${base}/healthz`)).status === 200);
        const cdb = await world.open(centralUrl, 'central');
        await world.registerSite(cdb, 101);

        const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 300 });
        const site = await world.startSite({ ...input, ackTimeoutSeconds: 90, batch: { maxRows: 60 } });
        expect((await site.runSession()).status).toBe('ok');

        const before = await get(`${base}/metrics`);
        expect(sample(before.text, 'sitesync_site_state{site="101",pipeline="lab",state="ok"}')).toBe(1);
        expect(sample(before.text, 'sitesync_site_lag_seconds{site="101",pipeline="lab"}')).toBeLessThan(60);
        expect(sample(before.text, `sitesync_queue_messages{queue="${world.topology.centralSyncQueue}"}`)).toBe(0);
        expect(sample(before.text, `sitesync_queue_messages{queue="${world.topology.siteQueue(101)}.dlq"}`)).toBe(0);

        for (let i = 1; i <= 120; i++) await changeResult(site.database!, i, `during-outage-${i}`);
        await pg.stop();
        let restarted = false;
        try {
          const unhealthy = await until('/healthz to report the lost database', async () => {
            const h = await get(`${base}/healthz`);
            return h.status === 503 && h;
          });
          expect(JSON.parse(unhealthy.text)).toMatchObject({ ok: false, db: false, broker: true });
          // The session publishes; the central cannot merge and retries while the database is away.
          const session = site.runSession();
          await new Promise((r) => setTimeout(r, 4000));
          await pg.start();
          restarted = true;
          const r = await session;
          expect(r.status).toBe('ok');
          expect(r.totals.headers).toBe(120);
        } finally {
          if (!restarted) await pg.start();
        }
        await until('/healthz to recover', async () => (await get(`${base}/healthz`)).status === 200);

        // The broker lost: the central's broker user is removed and its connection cut, so it cannot
        // reconnect; /healthz says so until the user is back and the agent reconnected by itself.
        if (api) {
          await api.deleteUser(centralUser);
          await closeBrokerConnections(`sitesync-central (${world.prefix})`);
          const cut = await until('/healthz to report the lost broker', async () => {
            const h = await get(`${base}/healthz`);
            return h.status === 503 && h;
          });
          expect(JSON.parse(cut.text)).toMatchObject({ ok: false, db: true, broker: false });
          await grantCentralUser();
          await until(
            '/healthz to recover after the reconnect',
            async () => (await get(`${base}/healthz`)).status === 200,
          );
        }
        const db = await Database.open(centralUrl, { role: 'central' });
        try {
          expect(await centralSnapshot(db, 101)).toEqual(await siteSnapshot(site.database!));
          expect(await countRows(db, 'central_orders', 101)).toBe(300);
          expect(await countRows(db, 'central_results', 101)).toBe(1500);
          const dead = await get(`${base}/metrics`);
          expect(sample(dead.text, `sitesync_queue_messages{queue="${world.topology.centralSyncQueue}.dlq"}`)).toBe(0);
          expect(sample(dead.text, 'sitesync_site_state{site="101",pipeline="lab",state="ok"}')).toBe(1);
        } finally {
          await db.close();
        }
      } finally {
        central?.kill('SIGTERM');
        await pg.destroy();
      }
    },
  );

  it('every broker connection is cut mid-session: agents reconnect, the site session publishes again what was not confirmed and completes, nothing lost or duplicated', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    await world.registerSite(central.database!, 101);
    const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 1500 });
    const site = await world.startSite({ ...input, ackTimeoutSeconds: 20, batch: { maxRows: 30 } });

    const session = site.runSession();
    await until('the central to have merged part of the session', async () => {
      // The target table appears with the first merged batch.
      const n = await countRows(central.database!, 'central_orders', 101).catch(() => 0);
      return n > 0 && n < 1500;
    });
    expect(await closeBrokerConnections(world.prefix)).toBe(2);
    const cut = await session;
    await until(
      'both agents to reconnect',
      async () => central.brokerConnection!.connected && site.brokerConnection!.connected,
    );
    // The session waits for the reconnect and publishes again what was not confirmed.
    expect(cut.status, cut.error).toBe('ok');

    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(site.database!));
    expect(await countRows(central.database!, 'central_orders', 101)).toBe(1500);
    expect(await countRows(central.database!, 'central_results', 101)).toBe(7500);
    const log = await site.database!.query<{ status: string; error: string | null }>(
      `SELECT status, error FROM "LAB_SyncStatus" ORDER BY version`,
    );
    expect(log).toEqual([{ status: 'ok', error: null }]);
    const cfgFile = join(world.dir, 'central.json');
    writeFileSync(cfgFile, JSON.stringify({ amqp: { url: broker, prefix: world.prefix }, db: { url: centralUrl } }));
    const status = await syncctl(['-c', cfgFile, 'status', '--json', '--no-broker']);
    expect(JSON.parse(status.stdout)).toEqual([expect.objectContaining({ site: 101, state: 'ok', lastError: null })]);
  });
});
