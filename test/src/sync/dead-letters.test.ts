import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';
import { describe, expect, it } from 'vitest';
import {
  HEADER_CHECKSUM,
  HEADER_ERROR,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_REASON,
  bodyChecksum,
  encodeMessage,
  type BatchAck,
  type EncodedMessage,
  type EncodeOptions,
  type HeaderBatch,
  type MessageBody,
  type MessageType,
  type PipelineShape,
  hashHeader,
} from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import {
  QueueCollector,
  asVersion1,
  declareRejectQueues,
  decodeAll,
  labBatch,
  labUpsert,
  publishRaw,
  rowCount,
  tableRows,
  takeMessages,
  waitFor,
} from '../support/messages.js';
import { SITE_TABLE } from '@sitesync/db';

const broker = amqpUrl();
const kinds: DbKind[] = ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : [])];
if (!broker) console.log('[sitesync tests] skipping dead letters: no RabbitMQ available');

const HEADERS = 'central_orders';
const DETAILS = 'central_results';
const APP = 'sitesync-test';

/** Encodes a message as site `siteId` would (authenticated as guest unless `userId: undefined`); never gzipped. */
function encode<T extends MessageType>(
  type: T,
  body: MessageBody<T>,
  opts: Partial<EncodeOptions> & { siteId: number },
): EncodedMessage {
  return encodeMessage(type, body, { appId: APP, userId: 'guest', gzipThreshold: 0, ...opts });
}

/** A copy of `msg` with another body and a checksum that matches it (so only the body itself is wrong). */
function withBody(msg: EncodedMessage, content: Buffer): EncodedMessage {
  return {
    ...msg,
    content,
    options: { ...msg.options, headers: { ...msg.options.headers, [HEADER_CHECKSUM]: bodyChecksum(content) } },
  };
}

function batchAckBody(siteId: number): BatchAck {
  return {
    sessionId: randomUUID(),
    siteId,
    pipeline: 'lab',
    batchMessageId: randomUUID(),
    status: 'applied',
    headers: 1,
    details: 2,
    deletions: 0,
    stale: 0,
  };
}

/**
 * Declares a site queue on the raw channel (so the central's acks are kept), removes it at teardown,
 * and collects what arrives on it (a consumer: the queue refuses basic.get).
 */
async function siteQueueCollector(world: TestWorld, ch: amqp.Channel, siteId: number): Promise<QueueCollector> {
  await world.topology.declareSite(ch, siteId);
  const q = world.topology.siteQueue(siteId);
  world.onTeardown(async () => {
    const conn = await amqp.connect(world.amqpUrl);
    try {
      const c = await conn.createChannel();
      c.on('error', () => undefined);
      await c.deleteQueue(q).catch(() => undefined);
      await c.deleteQueue(world.topology.deadLetterQueue(q)).catch(() => undefined);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });
  return QueueCollector.start(ch, q);
}

async function siteState(db: Database, siteId: number): Promise<Record<string, unknown>> {
  const r = await db.query<Record<string, unknown>>(
    `SELECT * FROM ${db.dialect.quote(SITE_TABLE)} WHERE id_efector = ?`,
    [siteId],
  );
  expect(r, `EstadoSyncGeneral row of site ${siteId}`).toHaveLength(1);
  return r[0]!;
}

async function inboxIds(db: Database, ids: string[]): Promise<string[]> {
  const r = await db.query<{ message_id: string }>(
    `SELECT message_id FROM sync_inbox WHERE message_id IN (${ids.map(() => '?').join(', ')})`,
    ids,
  );
  return r.map((x) => x.message_id);
}

/** Header and detail rows of a site, reduced to what the tests compare. */
async function centralView(db: Database, siteId: number): Promise<{ headers: string[]; details: string[] }> {
  const h = await tableRows(db, HEADERS, 'order_id', siteId);
  const d = await tableRows(db, DETAILS, 'result_id', siteId);
  return {
    headers: h.map((r) => `${String(r.order_id)}:${String(r.patient_name)}`),
    details: d.map((r) => `${String(r.result_id)}/${String(r.order_id)}:${String(r.value)}`),
  };
}

describe.skipIf(!broker).each(kinds)('dead letters and idempotent merge on %s', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('every bad message kind ends in the dead-letter queue with its reason, nothing applied, the consumer keeps consuming', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101); // broker_user guest: the raw channel's user
    await world.registerSite(db, 102, { user: 'someone-else' });
    const ch = await world.rawChannel();
    const up = world.topology.up;

    const cases: Array<{ name: string; reason: string; msg: EncodedMessage }> = [];
    const add = (name: string, reason: string, msg: EncodedMessage) => cases.push({ name, reason, msg });

    // Every bad message carries its own order ids (1001..), so any row of them centrally would show.
    {
      const m = encode('batch', labBatch(101, [{ orderId: 1001 }]), { siteId: 101 });
      add('invalid JSON body', 'invalid-json', withBody(m, Buffer.from(m.content.toString('utf8').slice(0, 40))));
    }
    {
      const m = encode('batch', labBatch(101, [{ orderId: 1002 }]), { siteId: 101 });
      const bad = { ...labBatch(101, [{ orderId: 1002 }]), changes: [] };
      add('body failing the schema', 'schema', withBody(m, Buffer.from(JSON.stringify(bad))));
    }
    {
      const m = encode('batch', labBatch(101, [{ orderId: 1003 }]), { siteId: 101 });
      const tampered = Buffer.from(m.content.toString('utf8').replace('DNI1003', 'DNI6666'));
      expect(tampered.equals(m.content)).toBe(false);
      add('tampered body, original checksum', 'checksum-mismatch', { ...m, content: tampered });
    }
    {
      const m = encode('batch', labBatch(101, [{ orderId: 1004 }]), { siteId: 101 });
      add('unknown type property', 'unknown-type', { ...m, options: { ...m.options, type: 'no.such.type' } });
    }
    {
      // A known type that never travels up: the central must not take it for one of its own.
      const m = encode('batch.ack', batchAckBody(101), { siteId: 101 });
      add('down-only type sent up', 'unknown-type', { ...m, routingKey: '101.batch' });
    }
    {
      const b: HeaderBatch = labBatch(101, [{ orderId: 1005 }]);
      const c = b.changes[0]!;
      if (c.op !== 'upsert') throw new Error('unreachable');
      // The hash of other values than the ones sent.
      c.hash = labUpsert({ orderId: 1005, value: 'someone else' }).hash;
      add('row hash mismatch', 'row-hash-mismatch', encode('batch', b, { siteId: 101 }));
    }
    {
      // The same header twice in one batch: which one wins would be undefined.
      const b: HeaderBatch = labBatch(101, [{ orderId: 1009 }]);
      b.changes.push(b.changes[0]!);
      add('one key twice in a batch', 'bad-content', encode('batch', b, { siteId: 101 }));
    }
    // An integer key past 2^53 as a JSON number (a site of an earlier release): already rounded.
    add(
      'integer beyond 2^53 as a JSON number',
      'bad-content',
      encode('batch', labBatch(101, [{ orderId: 2 ** 53 + 2 }]), { siteId: 101 }),
    );
    add(
      'site without EstadoSyncGeneral row',
      'unknown-site',
      encode('batch', labBatch(999, [{ orderId: 1006 }]), { siteId: 999 }),
    );
    add(
      'no user_id',
      'forged-site',
      encode('batch', labBatch(101, [{ orderId: 1007 }]), { siteId: 101, userId: undefined }),
    );
    add(
      "another site's broker user",
      'forged-site',
      encode('batch', labBatch(102, [{ orderId: 1008 }]), { siteId: 102 }),
    );

    // What the central rejects goes to the dead-letter queue of the site whose id leads the routing key.
    const queues = await declareRejectQueues(ch, world.topology, [101, 102, 999]);
    for (const c of cases) await publishRaw(ch, up, c.msg);

    const dead: amqp.GetMessage[] = [];
    const deadline = Date.now() + 20_000;
    while (dead.length < cases.length && Date.now() < deadline) {
      for (const q of queues) dead.push(...(await takeMessages(ch, q, cases.length - dead.length, 200)));
    }
    const byId = new Map(dead.map((d) => [d.properties.messageId as string, d]));
    for (const c of cases) {
      const d = byId.get(c.msg.options.messageId);
      expect.soft(d, `${c.name}: dead-lettered`).toBeDefined();
      if (!d) continue;
      const h = (d.properties.headers ?? {}) as Record<string, unknown>;
      expect.soft(h[HEADER_REASON], `${c.name}: reason (error: ${String(h[HEADER_ERROR])})`).toBe(c.reason);
      expect.soft(h[HEADER_ORIGINAL_ROUTING_KEY], `${c.name}: original routing key`).toBe(c.msg.routingKey);
      expect.soft(String(h[HEADER_ERROR] ?? ''), `${c.name}: error detail`).not.toBe('');
      expect.soft(d.content.equals(c.msg.content), `${c.name}: body kept byte for byte`).toBe(true);
    }
    expect(dead, 'one dead letter per bad message').toHaveLength(cases.length);

    // Nothing of them was applied.
    expect(await rowCount(db, HEADERS), 'central header rows after bad messages').toBe(0);
    expect(await rowCount(db, DETAILS), 'central detail rows after bad messages').toBe(0);
    expect(
      await inboxIds(
        db,
        cases.map((c) => c.msg.options.messageId),
      ),
      'inbox rows of bad messages',
    ).toEqual([]);
    for (const site of [101, 102]) {
      const s = await siteState(db, site);
      expect(s.status, `site ${site} status`).toBe('new');
      expect(s.last_version, `site ${site} last_version`).toBeNull();
      expect(Number(s.header_count), `site ${site} header_count`).toBe(0);
    }

    // The consumer is still consuming: a valid batch published now is merged.
    const good = encode('batch', labBatch(101, [{ orderId: 1, value: 'ok' }]), { siteId: 101 });
    await publishRaw(ch, up, good);
    await waitFor('the valid batch to be merged', async () => (await rowCount(db, HEADERS, 101)) === 1, 20_000);
    expect(await centralView(db, 101)).toEqual({ headers: ['1:ok'], details: ['100/1:ok', '101/1:ok'] });
    expect(await rowCount(db, HEADERS), 'all central header rows').toBe(1);
    expect(await rowCount(db, DETAILS), 'all central detail rows').toBe(2);
    expect(await inboxIds(db, [good.options.messageId])).toEqual([good.options.messageId]);
    for (const q of [...queues, world.topology.deadLetterQueue(world.topology.centralSyncQueue)])
      expect(await ch.get(q, { noAck: true }), `no further dead letter in ${q}`).toBe(false);
  });

  it('the same message delivered twice is applied once', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101);
    const ch = await world.rawChannel();
    const acksIn = await siteQueueCollector(world, ch, 101);

    const m = encode('batch', labBatch(101, [{ orderId: 1 }, { orderId: 2 }]), { siteId: 101 });
    await publishRaw(ch, world.topology.up, m);
    await publishRaw(ch, world.topology.up, m); // same message id: a redelivery

    const acks = decodeAll(await acksIn.waitForCount(2, 20_000), ['batch.ack']);
    expect(acks, 'two batch.ack messages').toHaveLength(2);
    const bodies = acks.map((a) => a.body as BatchAck);
    // The two deliveries may be handled concurrently, so their acks can arrive in either order.
    expect(bodies.map((b) => b.status).sort()).toEqual(['applied', 'duplicate']);
    for (const b of bodies) expect(b.batchMessageId).toBe(m.options.messageId);
    expect(bodies.find((b) => b.status === 'applied')).toMatchObject({
      headers: 2,
      details: 4,
      deletions: 0,
      stale: 0,
    });

    expect(await inboxIds(db, [m.options.messageId]), 'inbox rows of the message').toHaveLength(1);
    expect(await rowCount(db, HEADERS, 101)).toBe(2);
    expect(await rowCount(db, DETAILS, 101)).toBe(4);
    expect(await centralView(db, 101)).toEqual({
      headers: ['1:A', '2:A'],
      details: ['100/1:A', '101/1:A', '200/2:A', '201/2:A'],
    });
    const s = await siteState(db, 101);
    expect(Number(s.header_count), 'header_count counts the batch once').toBe(2);
    expect(Number(s.detail_count), 'detail_count counts the batch once').toBe(4);
    expect(await ch.get(world.topology.deadLetterQueue(world.topology.centralSyncQueue), { noAck: true })).toBe(false);
  });

  it('a batch of a site not upgraded yet (schema version 1, rows as objects) merges like a version-2 one', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101);
    const ch = await world.rawChannel();
    const acksIn = await siteQueueCollector(world, ch, 101);

    const v1 = asVersion1(
      encode('batch', labBatch(101, [{ orderId: 1 }, { orderId: 2, value: 'B' }]), { siteId: 101 }),
    );
    expect(v1.options.headers['x-sitesync-schema']).toBe(1);
    await publishRaw(ch, world.topology.up, v1);
    const acks = decodeAll(await acksIn.waitForCount(1, 20_000), ['batch.ack']);
    expect(acks[0]?.body).toMatchObject({ status: 'applied', headers: 2, details: 4, stale: 0 });
    expect(await centralView(db, 101)).toEqual({
      headers: ['1:A', '2:B'],
      details: ['100/1:A', '101/1:A', '200/2:B', '201/2:B'],
    });

    // A version-1 row with a column outside the shape is refused, as version 1 always refused it.
    const bad = asVersion1(encode('batch', labBatch(101, [{ orderId: 3 }]), { siteId: 101 }), (b) => {
      (b.changes[0]!.header as Record<string, unknown>).extra = 1;
    });
    const [dlq] = await declareRejectQueues(ch, world.topology, [101]);
    await publishRaw(ch, world.topology.up, bad);
    const dead = await waitFor('the doctored version-1 batch in the dead-letter queue', () =>
      ch.get(dlq!, { noAck: true }),
    );
    expect(dead.properties.messageId).toBe(bad.options.messageId);
    expect(dead.properties.headers?.[HEADER_REASON]).toBe('schema');
    expect(String(dead.properties.headers?.[HEADER_ERROR])).toContain('changes.0.header');
    expect(await rowCount(db, HEADERS, 101)).toBe(2);
  });

  it('a pipeline keyed by binary columns: upserts, a changed detail set and a deletion reach the central', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101, { pipeline: 'bin', header: 'bin_headers', detail: 'bin_lines' });
    const ch = await world.rawChannel();
    const acksIn = await siteQueueCollector(world, ch, 101);
    const shape: PipelineShape = {
      name: 'bin',
      algorithm: 'md5',
      header: {
        key: ['k'],
        columns: [
          { name: 'k', type: 'binary', nullable: false },
          { name: 'note', type: 'text', nullable: true },
        ],
      },
      detail: {
        key: ['line'],
        join: { hk: 'k' },
        columns: [
          { name: 'line', type: 'binary', nullable: false },
          { name: 'hk', type: 'binary', nullable: false },
          { name: 'v', type: 'text', nullable: true },
        ],
      },
    };
    const b64 = (...bytes: number[]) => `base64:${Buffer.from(bytes).toString('base64')}`;
    const upsert = (k: string, note: string, lines: Array<[string, string]>): HeaderBatch['changes'][number] => {
      const header = { k, note };
      const details = lines.map(([line, v]) => ({ line, hk: k, v }));
      return {
        op: 'upsert',
        key: [k],
        hash: hashHeader('md5', header, details),
        header: [k, note],
        details: details.map((d) => [d.line, d.hk, d.v]),
      };
    };
    const send = async (version: number, changes: HeaderBatch['changes']) => {
      const before = acksIn.messages.length;
      const body: HeaderBatch = { sessionId: randomUUID(), siteId: 101, pipeline: shape, version, seq: 0, changes };
      await publishRaw(ch, world.topology.up, encode('batch', body, { siteId: 101 }));
      const acks = decodeAll((await acksIn.waitForCount(before + 1, 20_000)).slice(before), ['batch.ack']);
      expect(acks[0]?.body, `batch.ack of version ${version}`).toMatchObject({ status: 'applied' });
    };
    const view = async () => ({
      headers: (await tableRows(db, 'bin_headers', 'note', 101)).map((r) => String(r.note)),
      lines: (await tableRows(db, 'bin_lines', 'v', 101)).map((r) => String(r.v)),
    });
    const [a, b] = [b64(0, 1, 255), b64(0, 2, 255)];
    await send(1, [
      upsert(a, 'A', [
        [b64(10), 'a1'],
        [b64(11), 'a2'],
      ]),
      upsert(b, 'B', [[b64(20), 'b1']]),
    ]);
    expect(await view()).toEqual({ headers: ['A', 'B'], lines: ['a1', 'a2', 'b1'] });
    // A loses a line (found by its binary key), B is deleted with its lines
    await send(2, [upsert(a, 'A2', [[b64(10), 'a1']]), { op: 'delete', key: [b] }]);
    expect(await view()).toEqual({ headers: ['A2'], lines: ['a1'] });
  });

  it('an older batch arriving after a newer one changes nothing', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101);
    const ch = await world.rawChannel();
    const acksIn = await siteQueueCollector(world, ch, 101);
    const send = async (version: number, value: string, resultIds: number[]): Promise<BatchAck> => {
      const m = encode('batch', labBatch(101, [{ orderId: 1, value, resultIds }], { version }), { siteId: 101 });
      const before = acksIn.messages.length;
      await publishRaw(ch, world.topology.up, m);
      const acks = decodeAll((await acksIn.waitForCount(before + 1, 20_000)).slice(before), ['batch.ack']);
      expect(acks, `batch.ack of version ${version}`).toHaveLength(1);
      const ack = acks[0]!.body as BatchAck;
      expect(ack.batchMessageId).toBe(m.options.messageId);
      return ack;
    };

    expect(await send(5, 'A', [100, 101])).toMatchObject({ status: 'applied', headers: 1, details: 2, stale: 0 });
    const a = { headers: ['1:A'], details: ['100/1:A', '101/1:A'] };
    expect(await centralView(db, 101)).toEqual(a);

    expect(await send(3, 'B', [100, 102])).toMatchObject({ status: 'applied', headers: 0, details: 0, stale: 1 });
    expect(await centralView(db, 101), 'version 3 after version 5 changes nothing').toEqual(a);
    expect(Number((await siteState(db, 101)).last_version), 'EstadoSyncGeneral keeps the newest version').toBe(5);

    expect(await send(7, 'C', [100, 103])).toMatchObject({ status: 'applied', headers: 1, details: 2, stale: 0 });
    expect(await centralView(db, 101), 'version 7 wins').toEqual({ headers: ['1:C'], details: ['100/1:C', '103/1:C'] });
    expect(Number((await siteState(db, 101)).last_version)).toBe(7);
  });

  it('within one session version, a deletion wins over an upsert of the same header in either order', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const db = central.database!;
    await world.registerSite(db, 101);
    const ch = await world.rawChannel();
    const acksIn = await siteQueueCollector(world, ch, 101);
    const sessionId = randomUUID();
    const upsert = (orderId: number) =>
      encode('batch', labBatch(101, [{ orderId }], { version: 9, sessionId }), { siteId: 101 });
    const remove = (orderId: number) =>
      encode(
        'batch',
        {
          ...labBatch(101, [{ orderId }], { version: 9, sessionId, seq: 1 }),
          changes: [{ op: 'delete', key: [orderId] }],
        },
        { siteId: 101 },
      );
    // Order 1: upsert then delete (the usual order). Order 2: the delete overtakes the upsert.
    for (const m of [upsert(1), remove(1), remove(2), upsert(2)]) await publishRaw(ch, world.topology.up, m);
    await acksIn.waitForCount(4, 20_000);
    expect(await centralView(db, 101)).toEqual({ headers: [], details: [] });
  });
});
