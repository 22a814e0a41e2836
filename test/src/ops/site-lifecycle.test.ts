import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  encodeMessage,
  HEADER_REASON,
  ManagementApi,
  parsePeripheralConfig,
  type PeripheralConfigInput,
} from '@sitesync/protocol';
import { readSiteStatus } from '@sitesync/central';
import { INBOX_TABLE, LEDGER_TABLE, RUN_LOG_TABLE, SESSION_TABLE, SITE_TABLE } from '@sitesync/db';
import { PeripheralAgent } from '@sitesync/peripheral';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, managementUrl, postgresUrl } from '../support/services.js';
import { LAB_SHAPE, rowCount } from '../support/messages.js';
import { syncctl, until } from '../support/wait.js';

const broker = amqpUrl();
const mgmt = managementUrl();
if (!broker || !mgmt) console.log('[sitesync tests] skipping site lifecycle: no RabbitMQ with the management plugin');
/** The central databases these tests run on: SQLite always, PostgreSQL when a server answers. */
const centralKinds: Array<'sqlite' | 'postgres'> = ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : [])];

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

describe.skipIf(!broker || !mgmt)('site lifecycle: disable, enable, refusal, remove', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  /** A site agent whose log lines are kept for the test to read. */
  async function startLoggedSite(input: PeripheralConfigInput): Promise<{ site: PeripheralAgent; logs: LogLine[] }> {
    const logs: LogLine[] = [];
    const log = pino(
      { name: `site-${input.siteId}`, level: 'info' },
      { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) },
    );
    const site = new PeripheralAgent(parsePeripheralConfig(input), log);
    await site.start();
    world.onTeardown(() => site.close());
    return { site, logs };
  }

  async function runLogStatus(site: PeripheralAgent, sessionId: string): Promise<string | undefined> {
    const rows = await site.database!.query<{ status: string }>(
      `SELECT status FROM ${site.database!.dialect.quote(RUN_LOG_TABLE)} WHERE session_id = ?`,
      [sessionId],
    );
    return rows[0]?.status;
  }

  for (const kind of centralKinds) {
    it(`[${kind}] a disabled site's session is refused (nothing merged, dead-lettered as site-disabled, the site told); enabled again it merges and the dead letters replay`, async () => {
      const centralUrl = world.dbUrl(kind, 'central');
      const central = await world.startCentral(centralUrl);
      const cdb = central.database!;
      await world.registerSite(cdb, 101);
      const cli = (...args: string[]) => syncctl(['--db', centralUrl, ...args]);

      const unknown = await cli('sites', 'disable', '999');
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('site 999 is not registered at the central');
      const disable = await cli('sites', 'disable', '101');
      expect(disable.code, disable.stderr).toBe(0);
      expect(disable.stdout).toContain('site 101 disabled');
      const listed = JSON.parse((await cli('sites', 'list', '--json')).stdout) as Array<Record<string, unknown>>;
      expect(listed).toEqual([expect.objectContaining({ id_efector: 101, enabled: 'no' })]);
      expect(listed[0]!.disabled_at).not.toBeNull();
      // Not `stale` (which would page someone): disabled, in status and on the page alike.
      expect((await readSiteStatus(cdb)).map((s) => s.state)).toEqual(['disabled']);

      const input = await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 30 });
      const { site, logs } = await startLoggedSite({ ...input, batch: { maxRows: 20 } });
      const refused = await site.runSession();
      expect(refused.status).toBe('refused');
      expect(await runLogStatus(site, refused.sessionId)).toBe('refused');
      const error = logs.find((l) => l.level === 50 && l.msg.includes('syncctl sites enable 101'));
      expect(error, JSON.stringify(logs.filter((l) => l.level >= 40))).toBeDefined();
      expect(error!.msg).toContain('site 101 is disabled at the central');

      // Nothing of it is merged, and its messages wait in the site's own rejects queue as site-disabled.
      expect(await rowCount(cdb, 'central_orders', 101).catch(() => 0)).toBe(0);
      expect(await rowCount(cdb, INBOX_TABLE, 101)).toBe(0);
      const dlqBase = ['dlq', '--amqp', broker!, '--prefix', world.prefix];
      const parked = await until('the refused session to be dead-lettered', async () => {
        const groups = JSON.parse((await cli(...dlqBase, 'list', '--json')).stdout) as Array<{
          queue: string;
          site: string;
          reason: string;
          type: string;
          count: number;
        }>;
        // The agent reports its procedure catalogue on connect: an intervention-side message, refused alike.
        const types = new Set(groups.map((g) => g.type));
        return types.has('session.started') && types.has('procedure.catalogue') && groups;
      });
      for (const g of parked) {
        expect(g).toMatchObject({ queue: world.topology.siteRejectsQueue(101), site: '101', reason: 'site-disabled' });
      }

      const enable = await cli('sites', 'enable', '101');
      expect(enable.code, enable.stderr).toBe(0);
      expect(JSON.parse((await cli('sites', 'list', '--json')).stdout)).toEqual([
        expect.objectContaining({ id_efector: 101, enabled: 'yes', disabled_at: null }),
      ]);
      const ok = await site.runSession();
      expect(ok.status).toBe('ok');
      expect(await runLogStatus(site, ok.sessionId)).toBe('ok');
      expect(await rowCount(cdb, 'central_orders', 101)).toBe(30);
      expect((await readSiteStatus(cdb)).map((s) => s.state)).toEqual(['ok']);

      // The dead letters replay now: every one is taken (none comes back dead-lettered) and nothing is lost.
      const replay = await cli(...dlqBase, 'replay', '--site', '101');
      expect(replay.code, replay.stdout + replay.stderr).toBe(0);
      expect(replay.stdout + replay.stderr).toMatch(/\d+ replayed/);
      const ch = await world.rawChannel();
      await until('the replayed messages to be consumed', async () => {
        const depth = (await ch.checkQueue(world.topology.centralSyncQueue)).messageCount;
        const rejects = (await ch.checkQueue(world.topology.siteRejectsQueue(101))).messageCount;
        return depth === 0 && rejects === 0;
      });
      await new Promise((r) => setTimeout(r, 500));
      expect((await ch.checkQueue(world.topology.siteRejectsQueue(101))).messageCount).toBe(0);
      const sessions = await cdb.query<{ session_id: string }>(
        `SELECT session_id FROM ${SESSION_TABLE} WHERE id_efector = ?`,
        [101],
      );
      expect(sessions.map((s) => s.session_id)).toContain(refused.sessionId);
      expect(await rowCount(cdb, 'central_orders', 101)).toBe(30);
    });
  }

  it('an unregistered site is told to be added (syncctl sites add <id>), and a refusal nobody can receive does not wedge the central', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    const ch = await world.rawChannel();
    world.onTeardown(async () => {
      for (const s of [104, 105, 106]) await ch.deleteQueue(world.topology.siteRejectsQueue(s)).catch(() => undefined);
    });

    // Site 105 has no queue at all: the refusal is unroutable. Its session.started is still parked.
    const lone = encodeMessage(
      'session.started',
      {
        sessionId: randomUUID(),
        siteId: 105,
        version: 1,
        startedAt: new Date().toISOString(),
        pipelines: [LAB_SHAPE],
      },
      { siteId: 105, appId: 'test', userId: 'guest' },
    );
    await new Promise<void>((res, rej) =>
      ch.publish(world.topology.up, lone.routingKey, lone.content, lone.options, (err) => (err ? rej(err) : res())),
    );
    // Its dead letter is parked with the reason (each look on its own connection: a queue not yet
    // declared closes the channel that asked).
    const parked = await until('the unregistered session.started to be dead-lettered', async () => {
      const conn = await amqp.connect(broker!);
      conn.on('error', () => undefined);
      try {
        const look = await conn.createChannel();
        look.on('error', () => undefined);
        return (
          (await look.get(world.topology.siteRejectsQueue(105), { noAck: true }).catch(() => false as const)) ||
          undefined
        );
      } finally {
        await conn.close().catch(() => undefined);
      }
    });
    expect((parked.properties.headers as Record<string, unknown>)[HEADER_REASON]).toBe('unknown-site');

    // The central goes on: site 104's session is refused and the site is told what to run.
    const input = await world.prepareSite(104, world.dbUrl('sqlite', 'site104'), { orders: 5 });
    const { site, logs } = await startLoggedSite(input);
    const r = await site.runSession();
    expect(r.status).toBe('refused');
    expect(await runLogStatus(site, r.sessionId)).toBe('refused');
    const error = logs.find((l) => l.level === 50 && l.msg.includes('"syncctl sites add 104"'));
    expect(error, JSON.stringify(logs.filter((l) => l.level >= 40))).toBeDefined();
    expect(error!.msg).toContain('site 104 is not registered at the central: run "syncctl sites add 104" there');
    expect(central.state).toBe('RUNNING');
    expect(await rowCount(central.database!, INBOX_TABLE, 104)).toBe(0);

    // A registered site whose session names a pipeline it has no row for is told which one to add.
    await world.registerSite(central.database!, 106, { pipeline: 'other' });
    const input106 = await world.prepareSite(106, world.dbUrl('sqlite', 'site106'), { orders: 3 });
    const s106 = await startLoggedSite(input106);
    expect((await s106.site.runSession()).status).toBe('refused');
    expect(s106.logs.find((l) => l.level === 50)?.msg).toContain(
      'site 106 has no pipeline lab registered at the central: run "syncctl sites add 106 --pipeline lab',
    );
  });

  for (const kind of centralKinds) {
    it(`[${kind}] remove lists what would go without --yes; with --yes it takes the site's user, queues and state (and with --purge-rows its rows) and nothing of another site; twice is fine`, async () => {
      const centralUrl = world.dbUrl(kind, 'central');
      const central = await world.startCentral(centralUrl);
      const cdb = central.database!;
      const cfgFile = world.writeCentralConfig(centralUrl);
      const api = ManagementApi.fromAmqpUrl(broker!, mgmt);
      const users = { 101: `t${world.id}-site-101`, 102: `t${world.id}-site-102` };
      world.onTeardown(() => api.deleteUser(users[101]));
      world.onTeardown(() => api.deleteUser(users[102]));
      const siteUrls: Record<number, string> = {};
      for (const id of [101, 102] as const) {
        const add = await syncctl([
          '-c',
          cfgFile,
          'sites',
          'add',
          String(id),
          '--pipeline',
          'lab',
          '--header-table',
          'central_orders',
          '--detail-table',
          'central_results',
          '--user',
          users[id],
        ]);
        expect(add.code, add.stderr).toBe(0);
        siteUrls[id] = (JSON.parse(add.stdout) as { amqp: { url: string } }).amqp.url;
        const input = await world.prepareSite(id, world.dbUrl('sqlite', `site${id}`), { orders: 10 + id - 100 });
        const site = await world.startSite({ ...input, amqp: { url: siteUrls[id], prefix: world.prefix } });
        expect((await site.runSession()).status).toBe('ok');
        await site.close();
      }
      const t = world.topology;
      const queuesOf = (id: number) => [t.siteQueue(id), t.deadLetterQueue(t.siteQueue(id)), t.siteRejectsQueue(id)];
      // The central's rejects queue of each site exists (a dead letter declares it): one bad message each.
      const ch = await world.rawChannel();
      for (const id of [101, 102]) {
        await ch.assertQueue(t.siteRejectsQueue(id), { durable: true, arguments: t.siteRejectsQueueArguments() });
      }
      const state = async (id: number) => ({
        site: await rowCount(cdb, SITE_TABLE, id),
        sessions: await rowCount(cdb, SESSION_TABLE, id),
        ledger: await rowCount(cdb, LEDGER_TABLE, id),
        inbox: await rowCount(cdb, INBOX_TABLE, id),
        orders: await rowCount(cdb, 'central_orders', id),
        results: await rowCount(cdb, 'central_results', id),
      });
      const before = { 101: await state(101), 102: await state(102) };
      expect(before[101]).toMatchObject({ site: 1, sessions: 1, ledger: 11, orders: 11 });
      expect(before[102]).toMatchObject({ site: 1, sessions: 1, ledger: 12, orders: 12 });
      const brokerHas = async (id: 101 | 102) => ({
        user: await api.userExists(users[id]),
        queues: queuesOf(id).filter((q) => existing.has(q)).length,
      });
      let existing = await api.queues();
      expect(await brokerHas(101)).toEqual({ user: true, queues: 3 });

      const remove = (...args: string[]) => syncctl(['-c', cfgFile, 'sites', 'remove', '101', ...args]);

      // A transfer to the site still in progress: removing it now could lose the intervention, so it is refused.
      const transferId = randomUUID();
      await cdb.execute(
        `INSERT INTO intervention_transfer (transfer_id, guid, from_site, to_site, procedure_code, procedure_version, state, created_at, updated_at) ` +
          `VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?)`,
        [transferId, randomUUID(), 101, 'P', 1, 'sent', cdb.dialect.now(), cdb.dialect.now()],
      );
      const busy = await remove('--yes');
      expect(busy.code).toBe(2);
      expect(busy.stderr).toContain(`${transferId} (sent)`);
      expect(busy.stderr).toContain('syncctl transfer-cancel');
      expect(await state(101)).toEqual(before[101]);
      // Once it is over, it is history: the transfer log keeps it through the removal.
      await cdb.execute(`UPDATE intervention_transfer SET state = ? WHERE transfer_id = ?`, ['completed', transferId]);

      const dry = await remove('--purge-rows');
      expect(dry.code).toBe(1);
      expect(dry.stderr).toContain('run again with --yes');
      expect(dry.stdout).toContain(`broker user ${users[101]}`);
      for (const q of queuesOf(101)) expect(dry.stdout).toContain(`queue ${q} (`);
      expect(dry.stdout).toContain(`1 row(s) of ${SITE_TABLE}`);
      expect(dry.stdout).toContain(`11 row(s) of ${LEDGER_TABLE}`);
      expect(dry.stdout).toContain('11 row(s) of central_orders (id_efector = 101)');
      expect(dry.stdout).toContain('55 row(s) of central_results (id_efector = 101)');
      expect(await state(101)).toEqual(before[101]);
      existing = await api.queues();
      expect(await brokerHas(101)).toEqual({ user: true, queues: 3 });

      const done = await remove('--purge-rows', '--yes');
      expect(done.code, done.stderr).toBe(0);
      expect(await state(101)).toEqual({ site: 0, sessions: 0, ledger: 0, inbox: 0, orders: 0, results: 0 });
      existing = await api.queues();
      expect(await brokerHas(101)).toEqual({ user: false, queues: 0 });
      // Its user can no longer connect.
      const refused = await amqp.connect(siteUrls[101]!).then(
        async (c) => {
          await c.close();
          return 'connected';
        },
        (err: Error) => err.message,
      );
      expect(refused).toMatch(/ACCESS_REFUSED|403/);
      // The other site keeps everything: its user, its queues, its state and its rows.
      expect(await state(102)).toEqual(before[102]);
      expect(await brokerHas(102)).toEqual({ user: true, queues: 3 });
      const other = await world.startSite({
        ...world.siteConfig(102, world.dbUrl('sqlite', 'site102')),
        amqp: { url: siteUrls[102]!, prefix: world.prefix },
      });
      expect((await other.runSession()).status).toBe('ok');

      expect(await cdb.query(`SELECT state FROM intervention_transfer WHERE transfer_id = ?`, [transferId])).toEqual([
        { state: 'completed' },
      ]);

      const again = await remove('--purge-rows', '--yes');
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain('(absent already)');
      expect(again.stdout).toContain('queues: none left');
      expect(await state(102)).toMatchObject({ site: 1, orders: 12 });
    });
  }
});
