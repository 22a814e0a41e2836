import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeKey,
  encodeMessage,
  replyRoutingKey,
  HEADER_CHECKSUM,
  HEADER_SCHEMA,
  HEADER_SITE,
  bodyChecksum,
  type DecodedMessage,
  type MessageBody,
  ManagementApi,
  Topology,
  brokerDefinitions,
  rabbitPasswordHash,
} from '@sitesync/protocol';
import { type Database } from '@sitesync/db';
import { type BrokerPipelineVerification, type ResyncResult } from '@sitesync/syncctl';
import { ORDERS_TABLE, RESULTS_TABLE, labPipeline } from '../support/lab-data.js';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, localDbKinds, managementUrl } from '../support/services.js';
import { twoSyncedSites } from '../support/synced-sites.js';
import { ORDER_ATTRS } from '../support/compare.js';
import { syncctl } from '../support/wait.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping verify over the broker: no RabbitMQ available');
const mgmt = managementUrl();
const kinds: DbKind[] = localDbKinds();

/** Hand damage at the central: order `orderId` of site 101 deleted with its results. */
async function deleteCentralOrder(cdb: Database, orderId: number): Promise<void> {
  await cdb.execute(`DELETE FROM central_results WHERE id_efector = ? AND order_id = ?`, [101, orderId]);
  await cdb.execute(`DELETE FROM central_orders WHERE id_efector = ? AND order_id = ?`, [101, orderId]);
}

/** Hand damage at the central: an order `extraId` site 101 never had, a copy of its order `copyOf`. */
async function plantCentralOrder(cdb: Database, extraId: number, copyOf: number): Promise<void> {
  const cols = ORDER_ATTRS.filter((c) => c !== 'order_id').join(', ');
  await cdb.execute(
    `INSERT INTO central_orders (id_efector, order_id, ${cols}) SELECT id_efector, ?, ${cols} FROM central_orders WHERE id_efector = ? AND order_id = ?`,
    [extraId, 101, copyOf],
  );
}

/** `syncctl verify --site 101` over the broker, as JSON. */
/** `syncctl --db <central> <command> --site 101 ... --amqp <test broker> --prefix <world's>` */
function siteCommand(world: TestWorld, centralUrl: string, command: 'verify' | 'resync', ...args: string[]) {
  return syncctl(['--db', centralUrl, command, '--site', '101', ...args, '--amqp', broker!, '--prefix', world.prefix]);
}

async function verifyOverBroker(world: TestWorld, centralUrl: string, extra: string[] = []) {
  const r = await siteCommand(world, centralUrl, 'verify', '--json', ...extra);
  expect(r.stderr).toBe('');
  return { code: r.code, report: JSON.parse(r.stdout) as BrokerPipelineVerification[] };
}

/** `amqp://user:password@<the test broker's host and port>/vhost` */
function brokerUrl(user: string, password: string, vhost: string): string {
  const u = new URL(broker!);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  u.pathname = `/${encodeURIComponent(vhost)}`;
  return u.toString();
}

async function centralOrder(cdb: Database, orderId: number): Promise<Record<string, unknown> | undefined> {
  const rows = await cdb.query<Record<string, unknown>>(
    `SELECT status FROM central_orders WHERE id_efector = ? AND order_id = ?`,
    [101, orderId],
  );
  return rows[0];
}

describe.skipIf(!broker).each(kinds)('syncctl verify and resync over the broker (central on %s)', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('says equal when in sync, lists exactly the rows damaged centrally, and resync --differences --now repairs them', async () => {
    // Site 102's rows share the central tables and must not count for 101.
    const { centralUrl, cdb, siteUrl, site } = await twoSyncedSites(world, kind);

    const clean = await verifyOverBroker(world, centralUrl);
    expect(clean.code).toBe(0);
    expect(clean.report).toHaveLength(1);
    expect(clean.report[0]!.differences).toBe(0);
    expect(clean.report[0]!.site).toEqual(clean.report[0]!.central);
    expect(clean.report[0]!.site).toMatchObject({ headers: 60, details: 300 });

    // Someone edits the central copy by hand: a header value, a detail value, a deleted header, an extra header.
    await cdb.execute(`UPDATE central_orders SET status = ? WHERE id_efector = ? AND order_id = ?`, [
      'tampered',
      101,
      3,
    ]);
    await cdb.execute(`UPDATE central_results SET value = ? WHERE id_efector = ? AND result_id = ?`, ['x', 101, 1000]);
    await deleteCentralOrder(cdb, 20);
    await plantCentralOrder(cdb, 9999, 30);

    const damaged = await verifyOverBroker(world, centralUrl);
    expect(damaged.code).toBe(1);
    expect(damaged.report[0]).toMatchObject({
      differences: 4,
      different: [encodeKey([10]), encodeKey([3])],
      missingCentrally: [encodeKey([20])],
      extraCentrally: [encodeKey([9999])],
    });
    expect(damaged.report[0]!.central.headers).toBe(60);
    expect(damaged.report[0]!.site.digest).not.toBe(damaged.report[0]!.central.digest);

    const table = await siteCommand(world, centralUrl, 'verify');
    expect(table.code).toBe(1);
    expect(table.stdout).toContain(`lab: only centrally: ${encodeKey([9999])}`);
    expect(table.stdout).toContain('site 101: 4 header(s) differ');

    const resync = await siteCommand(world, centralUrl, 'resync', '--differences', '--now', '--json');
    expect(resync.stderr).toBe('');
    expect(resync.code).toBe(0);
    const result = JSON.parse(resync.stdout) as ResyncResult;
    expect(result.marked).toEqual([{ pipeline: 'lab', keys: 4 }]);
    expect(result.session).toMatchObject({ state: 'finished', status: 'ok', headers: 3, deletions: 1 });

    const repaired = await verifyOverBroker(world, centralUrl);
    expect(repaired.code).toBe(0);
    expect(repaired.report[0]!.differences).toBe(0);
    expect(repaired.report[0]!.site).toEqual(repaired.report[0]!.central);

    // The central rows are the site's again (the direct form reads both databases to say so).
    const sdb = site.database!;
    const siteStatus = await sdb.query<{ status: string }>(
      `SELECT status FROM ${sdb.dialect.quote(ORDERS_TABLE)} WHERE order_id = ?`,
      [3],
    );
    expect((await centralOrder(cdb, 3))?.status).toBe(siteStatus[0]!.status);
    expect(await centralOrder(cdb, 9999)).toBeUndefined();
    expect(await centralOrder(cdb, 20)).toBeDefined();
    const siteValue = await sdb.query<{ value: string }>(
      `SELECT value FROM ${sdb.dialect.quote(RESULTS_TABLE)} WHERE result_id = ?`,
      [1000],
    );
    const centralValue = await cdb.query<{ value: string }>(
      `SELECT value FROM central_results WHERE id_efector = ? AND result_id = ?`,
      [101, 1000],
    );
    expect(centralValue[0]!.value).toBe(siteValue[0]!.value);
    const pipelineFile = join(world.dir, 'lab.json');
    writeFileSync(pipelineFile, JSON.stringify(labPipeline()));
    const direct = await syncctl([
      '--db',
      centralUrl,
      'verify',
      '--site',
      '101',
      '--site-db',
      siteUrl,
      '--pipeline-file',
      pipelineFile,
      '--json',
    ]);
    expect(direct.code).toBe(0);
    const [directLab] = JSON.parse(direct.stdout) as BrokerPipelineVerification[];
    // Both forms hash alike: the same digests.
    expect(directLab!.site.digest).toBe(repaired.report[0]!.site.digest);
    expect(directLab!.central.digest).toBe(repaired.report[0]!.central.digest);
  });
});

/** Keys a site keeps apart that MariaDB's and SQL Server's default collations hold as one. */
const CASE_CODES = Array.from({ length: 40 }, (_, i) => [`k${i}`, `K${i}`, `k${i} `]).flat();

describe.skipIf(!broker).each(kinds)(
  'verify over the broker, keys differing only by case or trailing spaces (central on %s)',
  (kind) => {
    let world: TestWorld;
    worldPerTest(broker, (w) => (world = w));

    it('ranges are cut and compared in code-unit order: exactly the damaged spelling is found and repaired', async () => {
      const centralUrl = world.dbUrl(kind, 'central');
      const central = await world.startCentral(centralUrl);
      const cdb = central.database!;
      await world.registerSite(cdb, 101, { header: 'kt_orders', detail: 'kt_lines', pipeline: 'kt' });
      const siteUrl = world.dbUrl('sqlite', 'site');
      const sdb = await world.open(siteUrl, 'site');
      await sdb.query(`CREATE TABLE kt_orders (code TEXT NOT NULL PRIMARY KEY, amount INTEGER, label TEXT)`);
      await sdb.query(
        `CREATE TABLE kt_lines (code TEXT NOT NULL, line INTEGER NOT NULL, note TEXT, PRIMARY KEY (code, line))`,
      );
      for (const [i, code] of CASE_CODES.entries()) {
        await sdb.execute(`INSERT INTO kt_orders (code, amount, label) VALUES (?, ?, ?)`, [
          code,
          i,
          `label of ${code}`,
        ]);
        await sdb.execute(`INSERT INTO kt_lines (code, line, note) VALUES (?, 1, ?)`, [code, `line of ${code}`]);
      }
      const site = await world.startSite(
        world.siteConfig(101, siteUrl, {
          pipelines: [
            {
              name: 'kt',
              baseEntity: 'kt_orders',
              linkEntities: ['kt_orders', { entity: 'kt_lines', join: { code: 'code' } }],
            },
          ],
        }),
      );
      expect((await site.runSession()).status).toBe('ok');
      expect((await verifyOverBroker(world, centralUrl)).code).toBe(0);

      await cdb.execute(`UPDATE kt_orders SET label = ? WHERE id_efector = ? AND code = ?`, ['tampered', 101, 'k7 ']);
      await cdb.execute(`UPDATE kt_lines SET note = ? WHERE id_efector = ? AND code = ?`, ['tampered', 101, 'K30']);
      const damaged = await verifyOverBroker(world, centralUrl);
      expect(damaged.code).toBe(1);
      expect(damaged.report[0]).toMatchObject({ differences: 2, different: [encodeKey(['K30']), encodeKey(['k7 '])] });
      expect(damaged.report[0]!.exchange.requests).toBeGreaterThan(1);

      const resync = await siteCommand(world, centralUrl, 'resync', '--differences', '--now');
      expect(resync.code).toBe(0);
      expect(resync.stdout).toMatch(/ok: 2 header\(s\), 0 deletion\(s\) sent/);
      expect((await verifyOverBroker(world, centralUrl)).code).toBe(0);
      const labels = await cdb.query<{ label: string }>(
        `SELECT label FROM kt_orders WHERE id_efector = ? AND code = ?`,
        [101, 'k7 '],
      );
      expect(labels.map((r) => r.label)).toEqual(['label of k7 ']);
    });
  },
);

describe.skipIf(!broker)('syncctl verify over the broker', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('narrows only the differing ranges: replies are a small fraction of the table', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    const cdb = central.database!;
    await world.registerSite(cdb, 101);
    const site = await world.startSite(
      await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 3000 }),
    );
    expect((await site.runSession()).status).toBe('ok');
    for (const orderId of [17, 1500, 2990])
      await cdb.execute(`UPDATE central_orders SET status = ? WHERE id_efector = ? AND order_id = ?`, [
        'tampered',
        101,
        orderId,
      ]);

    const r = await verifyOverBroker(world, centralUrl);
    expect(r.code).toBe(1);
    const lab = r.report[0]!;
    expect(lab.different).toEqual([encodeKey([1500]), encodeKey([17]), encodeKey([2990])]);
    expect(lab.differences).toBe(3);

    // What the direct form would have to move: every (key, hash) line, and the rows themselves.
    const sdb = site.database!;
    const orders = await sdb.query<Record<string, unknown>>(`SELECT * FROM ${sdb.dialect.quote(ORDERS_TABLE)}`);
    const results = await sdb.query<Record<string, unknown>>(`SELECT * FROM ${sdb.dialect.quote(RESULTS_TABLE)}`);
    const tableBytes = Buffer.byteLength(JSON.stringify(orders)) + Buffer.byteLength(JSON.stringify(results));
    const keyHashBytes = orders.length * (encodeKey([1500]).length + 1 + 32 + 1);
    console.log(
      `[verify over the broker] 3000 headers, 3 differing: ${lab.exchange.requests} request(s), ${lab.exchange.ranges} range(s), ` +
        `${lab.exchange.replyBytes} bytes of replies; (key, hash) list ${keyHashBytes} bytes, table ${tableBytes} bytes`,
    );
    expect(lab.exchange.replyBytes).toBeLessThan(keyHashBytes / 5);
    expect(lab.exchange.replyBytes).toBeLessThan(tableBytes / 100);
  });

  it('with change tracking (sessions read only queued keys), resync --keys and --all send the headers again', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    const cdb = central.database!;
    await world.registerSite(cdb, 101);
    const siteUrl = world.dbUrl('sqlite', 'site101');
    await world.prepareSite(101, siteUrl, { orders: 40 });
    const site = await world.startSite(
      world.siteConfig(101, siteUrl, { pipelines: [labPipeline({ changeTracking: 'triggers' })] }),
    );
    expect((await site.runSession()).status).toBe('ok');
    // The next session reads only what the triggers queued: nothing, so far.
    const quiet = await site.runSession();
    expect(quiet.scans[0]).toMatchObject({ mode: 'changes', dirty: 0 });

    await cdb.execute(`UPDATE central_orders SET status = ? WHERE id_efector = ? AND order_id = ?`, ['x', 101, 5]);
    await deleteCentralOrder(cdb, 6);
    await plantCentralOrder(cdb, 7777, 8);
    expect((await verifyOverBroker(world, centralUrl)).report[0]!.differences).toBe(3);

    const base = ['--db', centralUrl, 'resync', '--site', '101', '--amqp', broker!, '--prefix', world.prefix];
    // A plain value is a key of one column; an encoded key as verify prints it works as well.
    const keys = await syncctl([...base, '--keys', '5', encodeKey([6]), '--pipeline', 'lab']);
    expect(keys.stderr).toBe('');
    expect(keys.code).toBe(0);
    expect(keys.stdout).toContain('site 101, lab: 2 key(s) marked to be sent again');
    expect(keys.stdout).toContain('they go with its next session');
    const next = await site.runSession();
    expect(next.scans[0]).toMatchObject({ mode: 'changes', dirty: 2 });
    const afterKeys = await verifyOverBroker(world, centralUrl);
    expect(afterKeys.report[0]).toMatchObject({ differences: 1, extraCentrally: [encodeKey([7777])] });

    // A key only the central has goes out as a deletion.
    const extra = await syncctl([...base, '--keys', '7777', '--now', '--json']);
    expect(extra.code).toBe(0);
    expect(JSON.parse(extra.stdout)).toMatchObject({
      marked: [{ pipeline: 'lab', keys: 1 }],
      session: { state: 'finished', status: 'ok', headers: 0, deletions: 1 },
    });
    expect(await centralOrder(cdb, 7777)).toBeUndefined();

    const all = await syncctl([...base, '--all', '--now', '--json']);
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout)).toMatchObject({
      marked: [{ pipeline: 'lab', keys: 40 }],
      session: { state: 'finished', status: 'ok', headers: 40, deletions: 0 },
    });
    const clean = await verifyOverBroker(world, centralUrl);
    expect(clean.code).toBe(0);
  });

  it('a request past its time is not answered: the broker drops it unread, the site ignores one past its deadline', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    await world.registerSite(central.database!, 101);
    const siteUrl = world.dbUrl('sqlite', 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 3 });
    const first = await world.startSite(input);
    await first.close();

    const ch = await world.rawChannel();
    const replies: string[] = [];
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    const request = (deadline: number) => ({
      requestId: randomUUID(),
      siteId: 101,
      pipeline: 'lab',
      round: 0,
      deadline,
      fanout: 16,
      leafSize: 32,
      ranges: [{ lo: null, hi: null }],
    });
    const send = async (body: ReturnType<typeof request>, expiration?: number) => {
      await ch.bindQueue(queue, world.topology.up, replyRoutingKey(101, body.requestId));
      const m = encodeMessage('verify.request', body, { siteId: 101, appId: 'test' });
      ch.publish(world.topology.down, m.routingKey, m.content, {
        ...m.options,
        ...(expiration ? { expiration: String(expiration) } : {}),
      });
      await ch.waitForConfirms();
    };
    await ch.consume(queue, (msg) => msg && replies.push(JSON.parse(msg.content.toString()).requestId), {
      noAck: true,
    });

    // While the site is away: one request with a TTL, one already past its deadline.
    await send(request(Date.now() + 60_000), 300);
    await send(request(Date.now() - 1000));
    await new Promise((r) => setTimeout(r, 1000));
    expect((await ch.checkQueue(world.topology.siteQueue(101))).messageCount, 'the TTL one expired').toBe(1);
    // (where the broker dead-letters it, as every message of the site's queue: a replay of it is past its deadline)
    const dlq = world.topology.deadLetterQueue(world.topology.siteQueue(101));
    expect((await ch.checkQueue(dlq)).messageCount).toBe(1);

    await world.startSite(input);
    const fresh = request(Date.now() + 30_000);
    await send(fresh);
    const end = Date.now() + 15_000;
    while (!replies.length && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    // Only the request still in time was answered.
    expect(replies).toEqual([fresh.requestId]);
  });

  it('says promptly that a site is not connected: agent stopped, or never started', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    await world.registerSite(central.database!, 101);
    await world.registerSite(central.database!, 102);
    const site = await world.startSite(await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 3 }));
    await site.close();
    const args = (id: string) => [
      '--db',
      centralUrl,
      'verify',
      '--site',
      id,
      '--amqp',
      broker!,
      '--prefix',
      world.prefix,
    ];

    const started = Date.now();
    const stopped = await syncctl([...args('101'), '--timeout', '20']);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(stopped.code).toBe(3);
    expect(stopped.stderr).toMatch(/site 101 is not connected: no agent consumes its queue/);
    expect(stopped.stdout).toBe('');

    const never = await syncctl([...args('102'), '--timeout', '20']);
    expect(never.code).toBe(3);
    expect(never.stderr).toMatch(/site 102 is not connected: its queue .*site\.102 does not exist/);

    const resync = await siteCommand(world, centralUrl, 'resync', '--keys', '7');
    expect(resync.code).toBe(3);
    expect(resync.stderr).toMatch(/site 101 is not connected/);
  });

  it('resync needs exactly one of --keys, --differences, --all', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const base = ['--db', centralUrl, 'resync', '--site', '101', '--amqp', broker!, '--prefix', world.prefix];
    const none = await syncctl(base);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('resync needs exactly one of --keys, --differences, --all (got none)');
    const two = await syncctl([...base, '--all', '--differences']);
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('got --differences and --all');
    const badKey = await syncctl([...base, '--keys', '[7']);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toContain('--keys: key [7 starts with [ but is not a JSON array');
  });

  it('refuses a hostile reply (another request, oversized, bad schema, another broker user) at once', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const cdb = await world.open(centralUrl, 'central');
    await world.registerSite(cdb, 101);
    await world.registerSite(cdb, 102, { user: 'site-102-not-held' });
    // The test plays the site: it consumes the site's queue and answers each request its own way.
    const ch = await world.rawChannel();
    await world.topology.declareSite(ch, 101);
    await world.topology.declareSite(ch, 102);
    world.onTeardown(async () => {
      for (const q of [...world.topology.siteQueues(101), ...world.topology.siteQueues(102)])
        await ch.deleteQueue(q).catch(() => undefined);
    });
    let answer: (req: DecodedMessage<'verify.request'>) => { content: Buffer; gzip?: boolean } = () => {
      throw new Error('no answer set');
    };
    const reply = (req: DecodedMessage<'verify.request'>, body: unknown) => {
      const m = encodeMessage('verify.reply', body as MessageBody<'verify.reply'>, {
        siteId: req.body.siteId,
        appId: 'hostile',
        userId: 'guest',
        validate: false,
      });
      ch.publish(world.topology.up, replyRoutingKey(req.body.siteId, req.body.requestId), m.content, m.options);
    };
    for (const q of [world.topology.siteQueue(101), world.topology.siteQueue(102)]) {
      await ch.consume(q, (msg) => {
        if (!msg) return;
        ch.ack(msg);
        const req = decodeMessage(msg, ['verify.request']) as DecodedMessage<'verify.request'>;
        const a = answer(req);
        if (a.content.length) {
          ch.publish(world.topology.up, replyRoutingKey(req.body.siteId, req.body.requestId), a.content, {
            messageId: randomUUID(),
            type: 'verify.reply',
            userId: 'guest',
            contentType: 'application/json',
            headers: { [HEADER_SITE]: req.body.siteId, [HEADER_SCHEMA]: 1, [HEADER_CHECKSUM]: bodyChecksum(a.content) },
          });
        }
      });
    }
    const base = { siteId: 101, pipeline: 'lab', round: 0, ranges: [] };
    const verify = async (site = '101') => {
      const started = Date.now();
      const r = await syncctl([
        '--db',
        centralUrl,
        'verify',
        '--site',
        site,
        '--amqp',
        broker!,
        '--prefix',
        world.prefix,
        '--timeout',
        '20',
      ]);
      expect(Date.now() - started, 'refused at once, not after the timeout').toBeLessThan(10_000);
      expect(r.code).toBe(3);
      return r.stderr;
    };

    answer = (req) => {
      reply(req, { ...base, requestId: randomUUID() });
      return { content: Buffer.alloc(0) };
    };
    expect(await verify()).toMatch(/site 101: reply refused: it answers request [0-9a-f-]+, not [0-9a-f-]+/);

    answer = () => ({ content: randomBytes(3 * 1024 * 1024) });
    expect(await verify()).toMatch(/site 101: reply refused \(too-large: body is 3145728 bytes on the wire/);

    answer = (req) => {
      reply(req, { ...base, requestId: req.body.requestId, ranges: 'all equal' });
      return { content: Buffer.alloc(0) };
    };
    expect(await verify()).toMatch(/site 101: reply refused \(schema: verify.reply body invalid at ranges/);

    // A reply whose ranges do not narrow (a site that would make syncctl loop) is refused too.
    answer = (req) => {
      reply(req, {
        ...base,
        requestId: req.body.requestId,
        ranges: [
          {
            lo: null,
            hi: null,
            count: 1000,
            digest: 'a'.repeat(64),
            parts: [{ lo: null, hi: null, count: 1000, digest: 'a'.repeat(64) }],
          },
        ],
      });
      return { content: Buffer.alloc(0) };
    };
    expect(await verify()).toMatch(/site 101: reply refused: /);

    // Site 102 publishes as `site-102-not-held`; a reply by anyone else (here guest) is not its own.
    answer = (req) => {
      reply(req, { ...base, siteId: 102, requestId: req.body.requestId });
      return { content: Buffer.alloc(0) };
    };
    expect(await verify('102')).toMatch(
      /site 102: reply refused: published by broker user "guest", not the site's "site-102-not-held"/,
    );
  });
});

describe.skipIf(!broker || !mgmt)('verify and resync with the deployed broker users', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('work where the site user may write only its own keys on sync.up and the central user only prefixed names', async () => {
    const api = ManagementApi.fromAmqpUrl(broker!, mgmt);
    const vhost = `t${world.id}-verify`;
    const prefix = 'hosp.';
    const password = 'a-test-password';
    const hash = rabbitPasswordHash(password);
    const users = { central: `t${world.id}-central`, site: `t${world.id}-site-101` };
    await api.importDefinitions(
      brokerDefinitions(new Topology({ prefix }), {
        vhost,
        central: { name: users.central, passwordHash: hash },
        sites: [{ siteId: 101, user: { name: users.site, passwordHash: hash } }],
      }),
    );
    world.onTeardown(async () => {
      await api.deleteVhost(vhost);
      for (const u of Object.values(users)) await api.deleteUser(u);
    });
    const centralAmqp = brokerUrl(users.central, password, vhost);
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl, { amqp: { url: centralAmqp, prefix } });
    const cdb = central.database!;
    await world.registerSite(cdb, 101, { user: users.site });
    const siteUrl = world.dbUrl('sqlite', 'site101');
    await world.prepareSite(101, siteUrl, { orders: 50 });
    const site = await world.startSite(
      world.siteConfig(101, siteUrl, { amqp: { url: brokerUrl(users.site, password, vhost), prefix } }),
    );
    expect((await site.runSession()).status).toBe('ok');
    await cdb.execute(`UPDATE central_orders SET status = ? WHERE id_efector = ? AND order_id = ?`, ['x', 101, 42]);

    const base = ['--db', centralUrl, '--amqp', centralAmqp, '--prefix', prefix];
    const verify = await syncctl(['--db', centralUrl, 'verify', '--site', '101', ...base.slice(2), '--json']);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.stdout)[0]).toMatchObject({ differences: 1, different: [encodeKey([42])] });
    const resync = await syncctl([
      '--db',
      centralUrl,
      'resync',
      '--site',
      '101',
      '--differences',
      '--now',
      ...base.slice(2),
    ]);
    expect(resync.stderr).toBe('');
    expect(resync.code).toBe(0);
    expect(resync.stdout).toMatch(/session \S+ ok: 1 header\(s\), 0 deletion\(s\) sent/);
    const again = await syncctl(['--db', centralUrl, 'verify', '--site', '101', ...base.slice(2)]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('site 101: identical at the site and centrally');
  });
});
