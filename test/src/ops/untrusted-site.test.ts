import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_ORIGINAL_USER,
  HEADER_REASON,
  HEADER_REPLAYS,
  HEADER_CHECKSUM,
  bodyChecksum,
  encodeMessage,
  type EncodedMessage,
} from '@sitesync/protocol';
import { HEADER_SIGNATURE } from '@sitesync/central';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import { declareRejectQueues, labBatch, publishRaw, rowCount } from '../support/messages.js';
import { syncctl as runSyncctl, until } from '../support/wait.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping untrusted-site tests: no RabbitMQ available');

const HEADERS = 'central_orders';
/** Site 102's broker user: nobody in these tests holds it, so nothing may ever speak for it. */
const SITE_102_USER = 'site-102-not-held';

async function syncctl(args: string[]): Promise<{ code: number; out: string }> {
  const r = await runSyncctl(args);
  return { code: r.code, out: r.stdout + r.stderr };
}

/** A batch as site `siteId` (broker user guest, the test's own) publishes it. */
function siteBatch(siteId: number, orderId: number, opts: { gzip?: boolean } = {}): EncodedMessage {
  return encodeMessage('batch', labBatch(siteId, [{ orderId }]), {
    siteId,
    appId: 'test',
    userId: 'guest',
    gzipThreshold: opts.gzip ? 1 : 0,
  });
}

/** Headers that would make a dead letter speak for site 102, had the central trusted them. */
const FORGED_ORIGIN = {
  [HEADER_REASON]: 'schema',
  [HEADER_ORIGINAL_EXCHANGE]: 'sync.up',
  [HEADER_ORIGINAL_ROUTING_KEY]: '102.batch',
  [HEADER_ORIGINAL_QUEUE]: 'central.sync',
  [HEADER_ORIGINAL_USER]: SITE_102_USER,
  [HEADER_REPLAYS]: 0,
  [HEADER_SIGNATURE]: 'bm90IGEgc2lnbmF0dXJl',
};

async function depth(world: TestWorld, queue: string): Promise<number> {
  const ch = await world.rawChannel();
  return (await ch.checkQueue(queue)).messageCount;
}

describe.skipIf(!broker)('a site is an untrusted tenant', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  async function setup(overrides: Record<string, unknown> = {}) {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl, overrides);
    const db = central.database!;
    await world.registerSite(db, 101); // broker user guest: the test's channel
    await world.registerSite(db, 102, { user: SITE_102_USER });
    const ch = await world.rawChannel();
    const base = ['--db', centralUrl, 'dlq', '--amqp', broker!, '--prefix', world.prefix];
    return { central, db, ch, base };
  }

  /**
   * Publishes `msg` as a site to the central's queue (no central running) and requeues it until the
   * broker gives up at its delivery limit and dead-letters it itself; returns that dead-letter queue.
   */
  async function deadByDeliveryLimit(msg: EncodedMessage): Promise<string> {
    const t = world.topology;
    const ch = await world.rawChannel();
    await publishRaw(ch, t.up, msg);
    const dlq = t.deadLetterQueue(t.centralSyncQueue);
    await until('the broker to dead-letter it after its delivery limit', async () => {
      const m = await ch.get(t.centralSyncQueue, { noAck: false });
      if (m) ch.nack(m, false, true);
      return (await ch.checkQueue(dlq)).messageCount === 1;
    });
    return dlq;
  }

  it('a planted dead letter claiming another site is listed unverified and not replayed, even forced, as that site', async () => {
    const { db, ch, base } = await setup();
    // What a site user could do before it lost write on the dead-letter exchange: plant a "dead
    // letter" whose headers name site 102's user and route.
    const planted = siteBatch(102, 7001);
    Object.assign(planted.options.headers, FORGED_ORIGIN);
    const dlq = world.topology.deadLetterQueue(world.topology.centralSyncQueue);
    await publishRaw(ch, world.topology.dlx, { ...planted, routingKey: world.topology.centralSyncQueue });
    await until('the planted letter', async () => (await ch.checkQueue(dlq)).messageCount === 1);

    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    // Its site is only what its header claims: shown with a "?", and never matched by --site.
    expect(list).toEqual([expect.objectContaining({ queue: dlq, trust: 'unverified', site: '102?', count: 1 })]);
    const bySite = await syncctl([...base, 'replay', '--site', '102', '--dry-run']);
    expect(bySite.out).toContain('0 would replay, 0 refused');
    // Vouching for a user needs one message named by id, not a filter.
    const vouchAll = await syncctl([
      ...base,
      'replay',
      '--all',
      '--force',
      '--exchange',
      world.topology.up,
      '--routing-key',
      '102.batch',
      '--as-user',
      SITE_102_USER,
    ]);
    expect(vouchAll.code).not.toBe(0);
    expect(vouchAll.out).toMatch(/--as-user goes with one message \(--id\)/);

    const replay = await syncctl([...base, 'replay', '--id', planted.options.messageId]);
    expect(replay.code).toBe(1);
    expect(replay.out).toMatch(/unverified/);
    const forcedNoTarget = await syncctl([...base, 'replay', '--id', planted.options.messageId, '--force']);
    expect(forcedNoTarget.code).toBe(1);
    expect(await depth(world, dlq)).toBe(1);

    // Forced to an explicit target without vouching for a user, it speaks for nobody: the central
    // refuses it as forged, and parks it under site 102's own dead letters, not merged.
    const [rejects102] = await declareRejectQueues(ch, world.topology, [102]);
    const forced = await syncctl([
      ...base,
      'replay',
      '--id',
      planted.options.messageId,
      '--force',
      '--exchange',
      world.topology.up,
      '--routing-key',
      '102.batch',
    ]);
    expect(forced.code, forced.out).toBe(0);
    await until('the forced replay to be refused', async () => (await ch.checkQueue(rejects102!)).messageCount === 1);
    const again = (await ch.get(rejects102!, { noAck: true })) as { properties: { headers: Record<string, unknown> } };
    expect(again.properties.headers[HEADER_REASON]).toBe('forged-site');
    expect(await rowCount(db, HEADERS, 102)).toBe(0);
  });

  it("a site's own message with forged central headers is parked as its own and replays as its own", async () => {
    const { db, ch, base } = await setup();
    const [rejects101] = await declareRejectQueues(ch, world.topology, [101]);
    // Site 101 publishes a batch of a pipeline the central does not know for it (a rejection), with
    // headers claiming site 102's user and route.
    const msg = encodeMessage(
      'batch',
      { ...labBatch(101, [{ orderId: 7002 }]), pipeline: { ...labBatch(101, []).pipeline, name: 'nope' } },
      {
        siteId: 101,
        appId: 'test',
        userId: 'guest',
        gzipThreshold: 0,
      },
    );
    Object.assign(msg.options.headers, FORGED_ORIGIN);
    await publishRaw(ch, world.topology.up, msg);
    await until('the rejection', async () => (await ch.checkQueue(rejects101!)).messageCount === 1);
    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    expect(list).toEqual([
      expect.objectContaining({ queue: rejects101, site: '101', trust: 'signed', reason: 'unknown-site' }),
    ]);
    const shown = await syncctl([...base, 'show', msg.options.messageId]);
    expect(shown.out).toContain('"routingKey": "101.batch"');
    expect(shown.out).toContain('"user": "guest"');
    expect(shown.out).not.toContain(`"user": "${SITE_102_USER}"`);
    const dry = await syncctl([...base, 'replay', '--id', msg.options.messageId, '--dry-run']);
    expect(dry.out).toContain(`-> ${world.topology.up} 101.batch`);
    expect(await rowCount(db, HEADERS, 102)).toBe(0);
  });

  it("one site filling its dead letters cannot crowd out another's", async () => {
    const { central, ch, base } = await setup({ limits: { siteDeadLetterMaxMessages: 5 } });
    const badBatch = (site: number, id: number) => {
      const m = siteBatch(site, id);
      return { ...m, options: { ...m.options, headers: { ...m.options.headers, [HEADER_CHECKSUM]: 'x' } } };
    };
    for (let i = 0; i < 20; i++) await publishRaw(ch, world.topology.up, badBatch(101, 8000 + i));
    // Site 102's bad message (routed under its id: the central attributes by routing key, which
    // topic permissions make the sender's own).
    const from102 = badBatch(102, 8100);
    await publishRaw(ch, world.topology.up, from102);
    const [r101, r102] = await declareRejectQueues(ch, central.topology, [101, 102]);
    await until('all 21 to be handled', async () => {
      const q = await ch.checkQueue(world.topology.centralSyncQueue);
      return q.messageCount === 0 && (await ch.checkQueue(r102!)).messageCount === 1;
    });
    expect(await depth(world, r101!)).toBe(5);
    const dropped = await central.metrics.deadLettersDropped.get();
    expect(dropped.values.find((v) => v.labels.site === '101')?.value).toBe(15);
    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    expect(list).toContainEqual(
      expect.objectContaining({ queue: r102, site: '102', reason: 'checksum-mismatch', count: 1 }),
    );
    // The consumer is still consuming.
    await publishRaw(ch, world.topology.up, siteBatch(101, 1));
    await until('a good batch after the flood', async () => (await rowCount(central.database!, HEADERS, 101)) === 1);
  });

  it('a replay whose route has no queue keeps the dead letter and says so; it lands once the queue is back', async () => {
    const { central, db, ch, base } = await setup();
    const [rejects101] = await declareRejectQueues(ch, world.topology, [101]);
    // A batch of site 101 rejected because its target table is not registered yet.
    await db.query(`DELETE FROM "EstadoSyncGeneral" WHERE id_efector = 101`);
    const msg = siteBatch(101, 9001);
    await publishRaw(ch, world.topology.up, msg);
    await until('the rejection', async () => (await ch.checkQueue(rejects101!)).messageCount === 1);
    await world.registerSite(db, 101);
    // The central is stopped and its queue deleted: nothing is bound to sync.up for *.batch.
    await central.close();
    await ch.deleteQueue(world.topology.centralSyncQueue);
    const replay = await syncctl([...base, 'replay', '--id', msg.options.messageId]);
    expect(replay.code).toBe(1);
    expect(replay.out).toMatch(/no queue is bound to .*sync\.up for routing key 101\.batch: kept/);
    expect(replay.out).toContain('0 replayed, 1 refused');
    expect(await depth(world, rejects101!)).toBe(1);

    const restarted = await world.startCentral(world.dbUrl('sqlite', 'central'));
    const ok = await syncctl([...base, 'replay', '--id', msg.options.messageId]);
    expect(ok.code, ok.out).toBe(0);
    await until('the replayed batch merged', async () => (await rowCount(restarted.database!, HEADERS, 101)) === 1);
    expect(await depth(world, rejects101!)).toBe(0);
  });

  it('a dead-letter queue deleted while the central runs is declared again before the dead letter goes out', async () => {
    const { ch } = await setup();
    const t = world.topology;
    const [rejects101] = await declareRejectQueues(ch, t, [101]);
    await ch.deleteQueue(rejects101!);
    const shared = t.deadLetterQueue(t.centralSyncQueue);
    await ch.deleteQueue(shared);
    const bad = siteBatch(101, 9101);
    bad.options.headers[HEADER_CHECKSUM] = 'x';
    await publishRaw(ch, t.up, bad);
    // A routing key that names no site: the central cannot attribute it, so it goes to the shared queue.
    const unattributed = siteBatch(101, 9102);
    await publishRaw(ch, t.up, { ...unattributed, routingKey: 'x.batch' });
    await until('both parked', async () => {
      const c = await world.rawChannel();
      const a = await c.checkQueue(rejects101!).then(
        (q) => q.messageCount,
        () => 0,
      );
      const c2 = await world.rawChannel();
      const b = await c2.checkQueue(shared).then(
        (q) => q.messageCount,
        () => 0,
      );
      return a === 1 && b === 1;
    });
    expect(await depth(world, t.centralSyncQueue)).toBe(0);
  });

  it('what a site agent cannot apply it rejects into its own dead-letter queue (no dead-letter write); it replays from there', async () => {
    const { ch, base } = await setup();
    const site = await world.startSite(await world.prepareSite(101, world.dbUrl('sqlite', 'site101')));
    expect(site.state).toBe('RUNNING');
    const t = world.topology;
    // The central's side: an ack whose checksum does not match its body.
    const ack = encodeMessage(
      'session.ack',
      {
        sessionId: '00000000-0000-4000-8000-000000000000',
        siteId: 101,
        status: 'complete',
        rejectedBatches: 0,
      } as never,
      { siteId: 101, appId: 'test', validate: false },
    );
    ack.options.headers[HEADER_CHECKSUM] = 'x';
    await publishRaw(ch, t.down, ack);
    const dlq = t.deadLetterQueue(t.siteQueue(101));
    await until(
      'the rejected ack in the site dead-letter queue',
      async () => (await ch.checkQueue(dlq)).messageCount === 1,
    );
    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    expect(list).toEqual([expect.objectContaining({ queue: dlq, trust: 'broker', reason: 'rejected', count: 1 })]);
    const dry = await syncctl([...base, 'replay', '--id', ack.options.messageId, '--dry-run']);
    expect(dry.out).toContain(`-> ${t.down} 101.session.ack`);
  });

  it('a message the broker gave up on (delivery limit) replays along the route of the queue it died in, as its own user', async () => {
    const { central, base } = await setup();
    const t = world.topology;
    await central.close();
    const msg = siteBatch(101, 9401);
    // A header naming another route: the broker's route, not this, is what a replay takes.
    msg.options.headers[HEADER_ORIGINAL_ROUTING_KEY] = '102.batch';
    const dlq = await deadByDeliveryLimit(msg);
    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    expect(list).toEqual([expect.objectContaining({ queue: dlq, trust: 'broker', reason: 'delivery_limit' })]);
    const restarted = await world.startCentral(world.dbUrl('sqlite', 'central'));
    const replay = await syncctl([...base, 'replay', '--id', msg.options.messageId]);
    expect(replay.out).toContain(`-> ${t.up} 101.batch`);
    expect(replay.code, replay.out).toBe(0);
    await until('the replayed batch merged', async () => (await rowCount(restarted.database!, HEADERS, 101)) === 1);
    expect(await rowCount(restarted.database!, HEADERS, 102)).toBe(0);
  });

  it("a planted x-death naming another site's route (which RabbitMQ before 3.13 keeps) leaves the broker dead letter unverified", async () => {
    const { central, base } = await setup();
    const t = world.topology;
    await central.close();
    const msg = siteBatch(101, 9501);
    msg.options.headers['x-death'] = [
      { queue: t.centralSyncQueue, reason: 'delivery_limit', exchange: t.up, 'routing-keys': ['102.batch'], count: 1 },
    ];
    const dlq = await deadByDeliveryLimit(msg);
    const list = JSON.parse((await syncctl([...base, 'list', '--json'])).out) as Array<Record<string, unknown>>;
    const x = list[0]!;
    // Either the broker wrote its own entry (a route back to 101) or it kept the planted one, which
    // names a site guest does not speak for: then the letter is unverified. Never a route to 102.
    if (x.trust === 'broker') {
      expect((await syncctl([...base, 'replay', '--id', msg.options.messageId, '--dry-run'])).out).toContain(
        '101.batch',
      );
    } else {
      expect(x).toMatchObject({ queue: dlq, trust: 'unverified' });
      const replay = await syncctl([...base, 'replay', '--id', msg.options.messageId]);
      expect(replay.code).toBe(1);
      expect(replay.out).toMatch(/unverified/);
    }
    expect((await syncctl([...base, 'replay', '--id', msg.options.messageId, '--dry-run'])).out).not.toContain(
      '102.batch',
    );
  });

  it("a message with headers near the encoding limit is still parked in its site's queue (the headers noted, not kept)", async () => {
    const { central, ch } = await setup();
    const [rejects101] = await declareRejectQueues(ch, world.topology, [101]);
    const bad = siteBatch(101, 9601);
    bad.options.headers[HEADER_CHECKSUM] = 'x';
    // amqplib encodes at most 64 KiB of headers: the sender's fit, the copy with the central's own would not.
    bad.options.headers['x-padding'] = 'p'.repeat(65_100);
    await publishRaw(ch, world.topology.up, bad);
    const dead = await until('the rejection', () => ch.get(rejects101!, { noAck: true }));
    const h = dead.properties.headers as Record<string, unknown>;
    expect(h[HEADER_REASON]).toBe('checksum-mismatch');
    expect(h['x-padding']).toBeUndefined();
    expect(Number(h['x-sitesync-sender-headers-dropped'])).toBeGreaterThan(65_100);
    expect(central.state).toBe('RUNNING');
  });

  it('a body that inflates past 2 GiB is dead-lettered too-large; the central stays up with bounded memory', async () => {
    const { central, ch } = await setup();
    const [rejects101] = await declareRejectQueues(ch, world.topology, [101]);
    // 33 gzip members of 64 MiB of zeros: ~2 MB on the wire, 2.06 GiB inflated.
    const member = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: 33 }, () => member));
    const msg = siteBatch(101, 9201);
    const evil: EncodedMessage = {
      ...msg,
      content: bomb,
      options: {
        ...msg.options,
        contentEncoding: 'gzip',
        headers: { ...msg.options.headers, [HEADER_CHECKSUM]: bodyChecksum(bomb) },
      },
    };
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    try {
      await publishRaw(ch, world.topology.up, evil);
      // A good batch queued right behind it is merged, not dead-lettered with it.
      await publishRaw(ch, world.topology.up, siteBatch(101, 1));
      await until('the good batch merged', async () => (await rowCount(central.database!, HEADERS, 101)) === 1);
    } finally {
      clearInterval(sampler);
    }
    const dead = await until('the bomb parked', () => ch.get(rejects101!, { noAck: true }));
    expect((dead.properties.headers as Record<string, unknown>)[HEADER_REASON]).toBe('too-large');
    expect(central.state).toBe('RUNNING');
    console.log(
      `[sitesync tests] inflation bomb: ${(bomb.length / 1e6).toFixed(1)} MB on the wire; test process RSS ${(before / 2 ** 20).toFixed(0)} MiB before, peak ${(peak / 2 ** 20).toFixed(0)} MiB`,
    );
    // The cap (64 MiB) and the message buffers, not the 2 GiB the body would inflate to.
    expect(peak - before).toBeLessThan(400 * 2 ** 20);
  });

  it('a body over the wire limit is dead-lettered too-large without being read', async () => {
    const { central, ch } = await setup({ limits: { maxWireBytes: 64 * 1024 } });
    const [rejects101] = await declareRejectQueues(ch, world.topology, [101]);
    const big = siteBatch(101, 9301);
    const content = Buffer.alloc(100 * 1024, 0x20);
    await publishRaw(ch, world.topology.up, {
      ...big,
      content,
      options: { ...big.options, headers: { ...big.options.headers, [HEADER_CHECKSUM]: bodyChecksum(content) } },
    });
    await until('the rejection', async () => (await ch.checkQueue(rejects101!)).messageCount === 1);
    const dead = await ch.get(rejects101!, { noAck: true });
    expect((dead as { properties: { headers: Record<string, unknown> } }).properties.headers[HEADER_REASON]).toBe(
      'too-large',
    );
    expect(central.state).toBe('RUNNING');
  });
});
