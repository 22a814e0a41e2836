import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  UnroutableError,
  BrokerConnection,
  CENTRAL_INTERVENTION_BINDINGS,
  CENTRAL_SYNC_BINDINGS,
  DEFAULT_DELIVERY_LIMIT,
  MESSAGE_DIRECTION,
  REPLY_MESSAGE_TYPES,
  Topology,
  encodeMessage,
  replyRoutingKey,
  routingKeyFor,
  type Log,
  type MessageType,
} from '@sitesync/protocol';
import { amqpUrl, reportSkip } from '../../support/services.js';
import { batch, batchAck } from './fixtures.js';

describe('topology names', () => {
  it('without a prefix uses the names of the design', () => {
    const t = new Topology();
    expect(t.prefix).toBe('');
    expect([t.up, t.down, t.dlx, t.centralSyncQueue]).toEqual(['sync.up', 'sync.down', 'sync.dlx', 'central.sync']);
    expect(t.siteQueue(12)).toBe('site.12');
    expect(t.deadLetterQueue('site.12')).toBe('site.12.dlq');
  });

  it('puts the prefix on every exchange and queue, dead-letter queues included', () => {
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    const t = new Topology({ prefix });
    const names = [
      t.up,
      t.down,
      t.dlx,
      t.centralSyncQueue,
      t.siteQueue(3),
      t.deadLetterQueue(t.centralSyncQueue),
      t.deadLetterQueue(t.siteQueue(3)),
    ];
    for (const n of names) expect(n.startsWith(prefix)).toBe(true);
    expect(new Set(names).size).toBe(names.length);
    // two environments on one broker never share a name
    const other = new Topology({ prefix: 'other.' });
    for (const n of [other.up, other.down, other.dlx, other.centralSyncQueue, other.siteQueue(3)])
      expect(names).not.toContain(n);
  });

  it('site queues of different sites differ', () => {
    const t = new Topology({ prefix: 'p.' });
    expect(t.siteQueue(1)).not.toBe(t.siteQueue(11));
  });
});

describe('work queue arguments', () => {
  it('declare a quorum queue with an explicit delivery limit that dead-letters to its own dead-letter queue', () => {
    const t = new Topology({ prefix: 'env1.' });
    const q = t.centralSyncQueue;
    const args = t.workQueueArguments(q);
    expect(args['x-queue-type']).toBe('quorum');
    expect(args['x-delivery-limit']).toBe(DEFAULT_DELIVERY_LIMIT);
    expect(typeof args['x-delivery-limit']).toBe('number');
    expect(args['x-dead-letter-exchange']).toBe('env1.sync.dlx');
    expect(args['x-dead-letter-routing-key']).toBe(q);
    expect(args['x-dead-letter-strategy']).toBe('at-least-once');
    expect(args['x-overflow']).toBe('reject-publish');
  });

  it('route each queue to its own name on the dead-letter exchange', () => {
    const t = new Topology({ prefix: 'x.' });
    for (const q of [t.centralSyncQueue, t.siteQueue(1), t.siteQueue(2)]) {
      expect(t.workQueueArguments(q)['x-dead-letter-routing-key']).toBe(q);
    }
  });

  it('take a configured delivery limit and extra arguments without losing the dead-letter ones', () => {
    const t = new Topology({ deliveryLimit: 2 });
    const args = t.workQueueArguments('site.4', { 'x-single-active-consumer': true });
    expect(args['x-delivery-limit']).toBe(2);
    expect(args['x-single-active-consumer']).toBe(true);
    expect(args['x-dead-letter-exchange']).toBe('sync.dlx');
    expect(args['x-dead-letter-routing-key']).toBe('site.4');
  });

  it('the default delivery limit is a small positive number', () => {
    expect(Number.isInteger(DEFAULT_DELIVERY_LIMIT)).toBe(true);
    expect(DEFAULT_DELIVERY_LIMIT).toBeGreaterThan(0);
    expect(DEFAULT_DELIVERY_LIMIT).toBeLessThanOrEqual(20);
  });
});

describe('routing', () => {
  it('routing keys start with the efector id', () => {
    expect(routingKeyFor(42, 'session.started')).toBe('42.session.started');
  });

  it('every site->central message type reaches exactly one central queue', () => {
    const matches = (pattern: string, key: string) =>
      new RegExp(`^${pattern.replace(/\./g, '\\.').replace(/\*/g, '[^.]+')}$`).test(key);
    const up = Object.entries(MESSAGE_DIRECTION).filter(
      ([t, d]) => d === 'up' && !REPLY_MESSAGE_TYPES.includes(t as MessageType),
    );
    for (const [t] of up) {
      const key = routingKeyFor(7, t);
      const queues = [CENTRAL_SYNC_BINDINGS, CENTRAL_INTERVENTION_BINDINGS].filter((b) =>
        b.some((p) => matches(p, key)),
      );
      expect(queues, t).toHaveLength(1);
    }
  });

  it('a reply to syncctl reaches no central queue', () => {
    const matches = (pattern: string, key: string) =>
      new RegExp(`^${pattern.replace(/\./g, '\\.').replace(/\*/g, '[^.]+')}$`).test(key);
    const key = replyRoutingKey(7, randomUUID());
    for (const p of [...CENTRAL_SYNC_BINDINGS, ...CENTRAL_INTERVENTION_BINDINGS])
      expect(matches(p, key), p).toBe(false);
  });
});

const silent: Log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
const AMQP = amqpUrl();

describe.skipIf(reportSkip('topology on a real broker', AMQP))('topology on a real broker', () => {
  const topology = new Topology({ prefix: `unit-${randomUUID().slice(0, 8)}.`, deliveryLimit: 3 });
  const SITE = 7;
  let conn: BrokerConnection;

  beforeAll(async () => {
    conn = new BrokerConnection({
      url: AMQP!,
      name: 'sitesync unit: topology',
      log: silent,
      setup: async (ch) => {
        await topology.declareCentral(ch);
        await topology.declareSite(ch, SITE);
      },
    });
    await conn.connect();
  });

  afterAll(async () => {
    if (!conn?.connected) return;
    await conn
      .withChannel(async (ch) => {
        const cq = topology.centralSyncQueue;
        const sq = topology.siteQueue(SITE);
        for (const q of [cq, sq, topology.deadLetterQueue(cq), topology.deadLetterQueue(sq)]) await ch.deleteQueue(q);
        for (const x of [topology.up, topology.down, topology.dlx]) await ch.deleteExchange(x);
      })
      .finally(() => conn.close());
  });

  it('the broker accepts the queue arguments, and declaring again is harmless', async () => {
    await conn.withChannel(async (ch) => {
      await topology.declareCentral(ch);
      await topology.declareSite(ch, SITE);
      for (const q of [topology.centralSyncQueue, topology.siteQueue(SITE)]) {
        await ch.checkQueue(q);
        await ch.checkQueue(topology.deadLetterQueue(q));
      }
    });
  });

  it('a declaration that disagrees on the delivery limit is refused by the broker (the limit is really set)', async () => {
    const other = new Topology({ prefix: topology.prefix, deliveryLimit: 9 });
    await expect(
      conn.withChannel((ch) =>
        ch.assertQueue(other.centralSyncQueue, {
          durable: true,
          arguments: other.workQueueArguments(other.centralSyncQueue),
        }),
      ),
    ).rejects.toThrow(/PRECONDITION_FAILED/);
  });

  it('site messages reach the central queue and central replies reach only that site', async () => {
    const up = encodeMessage('batch', batch(SITE), { siteId: SITE, appId: 'unit' });
    const down = encodeMessage('batch.ack', batchAck(SITE), { siteId: SITE, appId: 'unit' });
    const otherSite = encodeMessage('batch.ack', batchAck(SITE + 1), { siteId: SITE + 1, appId: 'unit' });
    await conn.publish(topology.up, up);
    await conn.publish(topology.down, down);
    // No queue is bound for another site here: the broker returns the mandatory publish, and the
    // publisher learns it landed nowhere instead of taking the confirm for delivery.
    await expect(conn.publish(topology.down, otherSite)).rejects.toThrow(UnroutableError);
    await expect(conn.publish(topology.down, otherSite, false)).resolves.toBeUndefined();
    await conn.withChannel(async (ch) => {
      // publisher confirms on quorum queues mean the message is in the queue, so the counts are exact here
      expect((await ch.checkQueue(topology.centralSyncQueue)).messageCount).toBe(1);
      expect((await ch.checkQueue(topology.siteQueue(SITE))).messageCount).toBe(1);
      const got = await ch.get(topology.centralSyncQueue, { noAck: true });
      expect(got && got.properties.messageId).toBe(up.options.messageId);
      // the site queue has a single active consumer, which rules out basic.get: consume it
      const site = await new Promise<string | undefined>((resolve, reject) => {
        ch.consume(topology.siteQueue(SITE), (msg) => resolve(msg?.properties.messageId as string | undefined), {
          noAck: true,
        }).catch(reject);
      });
      expect(site).toBe(down.options.messageId);
    });
  });

  it('a message rejected without requeue lands in the dead-letter queue beside its queue', async () => {
    const m = encodeMessage('batch', batch(SITE), { siteId: SITE, appId: 'unit' });
    await conn.publish(topology.up, m);
    await conn.withChannel(async (ch) => {
      const got = await ch.get(topology.centralSyncQueue, { noAck: false });
      expect(got).not.toBe(false);
      if (got) ch.nack(got, false, false);
      let dead: Awaited<ReturnType<typeof ch.get>> = false;
      for (let i = 0; i < 50 && !dead; i++) {
        dead = await ch.get(topology.deadLetterQueue(topology.centralSyncQueue), { noAck: true });
        if (!dead) await new Promise((r) => setTimeout(r, 50));
      }
      expect(dead && dead.properties.messageId).toBe(m.options.messageId);
    });
  });

  it('a publish a full queue refuses (basic.nack) fails as BROKER_NACK; one lost with its closed channel does not', async () => {
    const full = `${topology.prefix}full`;
    await conn.withChannel(async (ch) => {
      await ch.assertQueue(full, { durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
      await ch.bindQueue(full, topology.down, `${SITE + 1}.#`);
    });
    const reconnectsBefore = conn.reconnects;
    try {
      const one = () => encodeMessage('batch.ack', batchAck(SITE + 1), { siteId: SITE + 1, appId: 'unit' });
      await conn.publish(topology.down, one());
      await expect(conn.publish(topology.down, one())).rejects.toMatchObject({ code: 'BROKER_NACK' });
      // An exchange that does not exist closes the publish channel (404): the publish was not refused
      // by a queue, it was lost with the channel, and must not be taken for a full queue.
      await expect(conn.publish(`${topology.prefix}no-such-exchange`, one())).rejects.toMatchObject({
        code: 'BROKER_DISCONNECTED',
      });
    } finally {
      // the lost channel takes the connection down; it comes back by itself
      for (let i = 0; i < 100 && !(conn.connected && conn.reconnects > reconnectsBefore); i++)
        await new Promise((r) => setTimeout(r, 100));
      await conn.withChannel((ch) => ch.deleteQueue(full));
    }
  });
});
