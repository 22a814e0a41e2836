import { Writable } from 'node:stream';
import * as amqp from 'amqplib';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parsePeripheralConfig, type Logger } from '@sitesync/protocol';
import { CentralAgent, parseCentralConfig } from '@sitesync/central';
import { PeripheralAgent } from '@sitesync/peripheral';
import { TestWorld } from '../support/harness.js';
import { centralSnapshot, countRows, siteSnapshot } from '../support/compare.js';
import { RabbitCluster, type ClusterNode } from '../support/rabbitmq-cluster.js';
import { until } from '../support/wait.js';

const noCluster = RabbitCluster.unavailable();
if (noCluster) console.log(`[sitesync tests] skipping the clustered broker test: ${noCluster}`);

const ORDERS = 1500;
const RESULTS_PER_ORDER = 5;

/** An agent's log, kept as parsed JSON lines for the test to read (and echoed when SITESYNC_TEST_LOG is set). */
function capturedLogger(name: string): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
        if (process.env.SITESYNC_TEST_LOG) process.stderr.write(`${line}\n`);
      }
      done();
    },
  });
  return { log: pino({ name, level: 'info' }, stream), lines };
}

const addressOf = (n: ClusterNode) => `127.0.0.1:${n.amqpPort}`;

describe.skipIf(!!noCluster)('a clustered broker (three RabbitMQ nodes of the test own)', () => {
  it('the node leading the central sync queue stops mid-session: both agents move to another node, the sync completes, every site row is at the central, none lost and none applied twice', async (ctx) => {
    const t0 = Date.now();
    let cluster: RabbitCluster;
    try {
      cluster = await RabbitCluster.start();
    } catch (err) {
      console.log(`[sitesync tests] skipping the clustered broker test: the nodes did not start here: ${String(err)}`);
      ctx.skip();
      return;
    }
    console.log(
      `[sitesync tests] broker cluster: 3 nodes booted in ${cluster.timings.boot} ms, joined in ${cluster.timings.joined} ms`,
    );
    const world = new TestWorld(cluster.nodes[0]!.url);
    try {
      // The central topology, declared through the first node; its quorum queues span the cluster.
      const conn = await amqp.connect(cluster.nodes[0]!.url);
      try {
        const ch = await conn.createChannel();
        await world.topology.declareCentral(ch, () => conn.createChannel());
      } finally {
        await conn.close();
      }
      const syncQueue = world.topology.centralSyncQueue;
      const before = await cluster.leaderOf(syncQueue, cluster.nodes[0]!);
      expect([...before.members].sort()).toEqual(cluster.nodes.map((n) => n.name).sort());
      const leader = cluster.node(before.leader);
      // Both agents list the leader first, so both are on the node that stops.
      const i = cluster.nodes.indexOf(leader);
      const urls = [...cluster.nodes.slice(i), ...cluster.nodes.slice(0, i)].map((n) => n.url);
      const survivor = cluster.nodes.find((n) => n !== leader)!;

      const centralUrl = world.dbUrl('sqlite', 'central');
      const centralLog = capturedLogger('central');
      const central = new CentralAgent(
        parseCentralConfig({ amqp: { url: urls, prefix: world.prefix }, db: { url: centralUrl } }),
        centralLog.log,
      );
      world.onTeardown(() => central.close());
      await central.start();
      const cdb = central.database!;
      await world.registerSite(cdb, 101);
      // Every write of the central's version ledger, to tell a batch applied twice (the same header
      // at the same version written again) from a header re-sent by a later session (a newer version).
      await cdb.query('CREATE TABLE ledger_writes (id_efector INTEGER, header_key TEXT, version INTEGER)');
      for (const on of ['INSERT', 'UPDATE'])
        await cdb.query(
          `CREATE TRIGGER ledger_writes_${on.toLowerCase()} AFTER ${on} ON sync_ledger BEGIN ` +
            'INSERT INTO ledger_writes VALUES (NEW.id_efector, NEW.header_key, NEW.version); END',
        );

      const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: ORDERS });
      const siteLog = capturedLogger('site-101');
      const site = new PeripheralAgent(
        parsePeripheralConfig({
          ...input,
          amqp: { url: urls, prefix: world.prefix },
          ackTimeoutSeconds: 30,
          batch: { maxRows: 60 },
        }),
        siteLog.log,
      );
      world.onTeardown(() => site.close());
      await site.start();
      expect(central.brokerConnection!.broker).toBe(addressOf(leader));
      expect(site.brokerConnection!.broker).toBe(addressOf(leader));

      const session = site.runSession();
      await until('the central to have merged part of the session', async () => {
        const n = await countRows(cdb, 'central_orders', 101).catch(() => 0);
        return n > 0 && n < ORDERS * 0.8;
      });
      const stopAt = Date.now();
      await cluster.stopApp(leader);
      const cut = await session;
      await until(
        'both agents to reconnect to another node',
        async () => central.brokerConnection!.connected && site.brokerConnection!.connected,
        60_000,
      );
      const failoverMs = Date.now() - stopAt;
      // The session publishes again what the lost node never confirmed, on the node it moved to.
      expect(cut.status, cut.error).toBe('ok');

      // The queue has a new leader among the two nodes left, and the agents are on them.
      const after = await cluster.leaderOf(syncQueue, survivor);
      expect(after.leader).not.toBe(leader.name);
      expect(after.online).not.toContain(leader.name);
      expect(central.brokerConnection!.broker).not.toBe(addressOf(leader));
      expect(site.brokerConnection!.broker).not.toBe(addressOf(leader));
      for (const { lines } of [centralLog, siteLog]) {
        const moved = lines.find((l) => String(l.msg).startsWith('broker connected to another node'));
        expect(moved, 'an agent logged its move to another node').toMatchObject({ was: addressOf(leader) });
        expect(JSON.stringify(lines)).not.toContain('guest:guest');
      }

      // Nothing lost: the central holds exactly the site's rows, and nothing was parked.
      expect(await countRows(cdb, 'central_orders', 101)).toBe(ORDERS);
      expect(await countRows(cdb, 'central_results', 101)).toBe(ORDERS * RESULTS_PER_ORDER);
      expect(await centralSnapshot(cdb, 101)).toEqual(await siteSnapshot(site.database!));
      // The dead-letter queues are classic, on the node that stopped: back with it, and empty.
      await cluster.startApp(leader);
      expect((await cluster.runningNodes(survivor)).sort()).toEqual(cluster.nodes.map((n) => n.name).sort());
      const check = await amqp.connect(survivor.url);
      try {
        const ch = await check.createChannel();
        ch.on('error', () => undefined);
        for (const q of [syncQueue, world.topology.siteQueue(101)])
          expect((await ch.checkQueue(world.topology.deadLetterQueue(q))).messageCount).toBe(0);
      } finally {
        await check.close();
      }

      // Nothing applied twice: no header written twice at one version (redeliveries after the
      // failover were recognised), and each ok session's merged counts are what the site sent.
      const twice = await cdb.query<{ header_key: string; version: number; n: number }>(
        'SELECT header_key, version, COUNT(*) AS n FROM ledger_writes GROUP BY id_efector, header_key, version HAVING COUNT(*) > 1',
      );
      expect(twice).toEqual([]);
      const written = await cdb.query<{ n: number }>('SELECT COUNT(DISTINCT header_key) AS n FROM ledger_writes');
      expect(Number(written[0]!.n)).toBe(ORDERS);
      const sessions = await site.database!.query<{
        session_id: string;
        status: string;
        headers_sent: number;
        details_sent: number;
        headers_acked: number;
      }>('SELECT session_id, status, headers_sent, details_sent, headers_acked FROM "LAB_SyncStatus" ORDER BY version');
      expect(sessions.at(-1)!.status).toBe('ok');
      for (const s of sessions.filter((x) => x.status === 'ok')) {
        const merged = await cdb.query<{ headers: number; details: number; batches: number }>(
          `SELECT COALESCE(SUM(headers), 0) AS headers, COALESCE(SUM(details), 0) AS details, COUNT(*) AS batches
               FROM sync_inbox WHERE session_id = ? AND message_type = 'batch'`,
          [s.session_id],
        );
        expect(Number(merged[0]!.headers)).toBe(Number(s.headers_sent));
        expect(Number(merged[0]!.details)).toBe(Number(s.details_sent));
        expect(Number(s.headers_acked)).toBe(Number(s.headers_sent));
      }
      const last = sessions.at(-1)!;
      const state = await cdb.query<{ header_count: number; detail_count: number; status: string }>(
        'SELECT header_count, detail_count, status FROM "EstadoSyncGeneral" WHERE id_efector = 101',
      );
      expect(state).toHaveLength(1);
      expect(state[0]!.status).toBe('ok');
      expect(Number(state[0]!.header_count)).toBe(Number(last.headers_sent));
      expect(Number(state[0]!.detail_count)).toBe(Number(last.details_sent));
      console.log(
        `[sitesync tests] broker cluster: failover (stop_app of ${leader.name} to both agents reconnected) ${failoverMs} ms; ` +
          `cut session ${cut.status}, ${sessions.length} session(s) in all; test ${Date.now() - t0} ms`,
      );
    } finally {
      try {
        await world.teardown();
      } finally {
        await cluster.destroy();
      }
    }
    // Reached only when the test passed (a failed teardown check must not hide the failure).
    expect(cluster.leftoverPids(), 'beam processes of the cluster left running').toEqual([]);
  }, 240_000);
});
