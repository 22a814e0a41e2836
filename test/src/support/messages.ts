import { randomUUID } from 'node:crypto';
import type * as amqp from 'amqplib';
import {
  HEADER_CHECKSUM,
  HEADER_SCHEMA,
  bodyChecksum,
  decodeMessage,
  encodeMessage,
  hashHeader,
  HeaderHasher,
  type DecodedMessage,
  type EncodedMessage,
  type HeaderBatch,
  type HeaderChange,
  type MessageType,
  type PipelineShape,
  type RawMessage,
  type WireRow,
  type WireValues,
  type Topology,
} from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import { registerSite, verifySender, type BatchMerger, type MergeResult } from '@sitesync/central';
import type { TestWorld } from './harness.js';
import { until } from './wait.js';

/** The lab pipeline's shape as a site would send it (a subset of the lab columns is enough). */
export const LAB_SHAPE: PipelineShape = {
  name: 'lab',
  algorithm: 'md5',
  header: {
    key: ['order_id'],
    columns: [
      { name: 'order_id', type: 'integer', nullable: false },
      { name: 'patient_id', type: 'text', nullable: false },
      { name: 'patient_name', type: 'text', nullable: true },
      { name: 'notes', type: 'text', nullable: true },
    ],
  },
  detail: {
    key: ['result_id'],
    join: { order_id: 'order_id' },
    columns: [
      { name: 'result_id', type: 'integer', nullable: false },
      { name: 'order_id', type: 'integer', nullable: false },
      { name: 'test_code', type: 'text', nullable: true },
      { name: 'value', type: 'text', nullable: true },
    ],
  },
};

export interface LabOrder {
  orderId: number;
  /** Goes into `patient_name` and every detail's `value`, so a test can tell versions apart. */
  value?: string;
  /** Result ids of the order's detail lines. @default [orderId * 100, orderId * 100 + 1] */
  resultIds?: number[];
}

/** A row object's values in the order of `columns` (a shape's), as a batch carries them. */
export function rowValues(row: WireRow, columns: ReadonlyArray<{ name: string }>): WireValues {
  return columns.map((c) => row[c.name] ?? null);
}

/**
 * One upsert change with a correct row hash. The hash is taken of the rows as objects
 * (`hashHeader`), so every test that merges one also checks that the value-array form the batch
 * carries hashes the same.
 */
export function labUpsert(o: LabOrder): Extract<HeaderChange, { op: 'upsert' }> {
  const value = o.value ?? 'A';
  const header: WireRow = {
    order_id: o.orderId,
    patient_id: `DNI${o.orderId}`,
    patient_name: value,
    notes: `order ${o.orderId}`,
  };
  const details: WireRow[] = (o.resultIds ?? [o.orderId * 100, o.orderId * 100 + 1]).map((rid) => ({
    result_id: rid,
    order_id: o.orderId,
    test_code: 'GLU',
    value,
  }));
  return {
    op: 'upsert',
    key: [o.orderId],
    hash: hashHeader('md5', header, details),
    header: rowValues(header, LAB_SHAPE.header.columns),
    details: details.map((d) => rowValues(d, LAB_SHAPE.detail!.columns)),
  };
}

/** A valid `batch` body (hashes correct) for `siteId` with one upsert per order. */
export function labBatch(
  siteId: number,
  orders: LabOrder[],
  opts: { version?: number; seq?: number; sessionId?: string } = {},
): HeaderBatch {
  return {
    sessionId: opts.sessionId ?? randomUUID(),
    siteId,
    pipeline: LAB_SHAPE,
    version: opts.version ?? 1,
    seq: opts.seq ?? 0,
    changes: orders.map(labUpsert),
  };
}

/**
 * A batch body as schema version 1 wrote it: each row an object of column -> value. `reversed`
 * names each row's columns last to first (the order of an object's keys must not matter).
 */
export function version1Body(
  b: HeaderBatch,
  opts: { reversed?: boolean } = {},
): { changes: Array<Record<string, unknown>> } & Omit<HeaderBatch, 'changes'> {
  const named = (row: readonly unknown[], cols: ReadonlyArray<{ name: string }>) => {
    const entries = cols.map((c, i) => [c.name, row[i]] as const);
    return Object.fromEntries(opts.reversed ? entries.reverse() : entries);
  };
  return {
    ...b,
    changes: b.changes.map((c) =>
      c.op === 'upsert'
        ? {
            ...c,
            header: named(c.header, b.pipeline.header.columns),
            details: c.details.map((d) => named(d, b.pipeline.detail?.columns ?? [])),
          }
        : c,
    ),
  };
}

/**
 * `msg` (an encoded batch, not gzipped) as a site of the previous release sends it: schema
 * version 1, each row an object of column -> value. `edit` may doctor the version-1 body.
 */
export function asVersion1(
  msg: EncodedMessage,
  edit: (body: { changes: Array<Record<string, unknown>> }) => void = () => undefined,
): EncodedMessage {
  const v1 = version1Body(JSON.parse(msg.content.toString('utf8')) as HeaderBatch);
  edit(v1);
  const content = Buffer.from(JSON.stringify(v1));
  return {
    ...msg,
    content,
    options: {
      ...msg.options,
      headers: { ...msg.options.headers, [HEADER_SCHEMA]: 1, [HEADER_CHECKSUM]: bodyChecksum(content) },
    },
  };
}

/** What a consumer receives for an encoded message: the same bytes and properties. */
export function asDelivered(m: EncodedMessage): RawMessage {
  return {
    content: m.content,
    properties: { ...m.options, headers: { ...m.options.headers } },
    fields: { routingKey: m.routingKey },
  };
}

/** A batch body as the central's consumer hands it on: published by site `body.siteId` (user `site-<id>`), decoded. */
export function deliveredBatch(body: HeaderBatch): DecodedMessage<'batch'> {
  const m = encodeMessage('batch', body, { siteId: body.siteId, appId: 'test', userId: `site-${body.siteId}` });
  return decodeMessage(asDelivered(m)) as DecodedMessage<'batch'>;
}

/** A merger driven as the central's consumer drives it: each batch's sender is checked first, then the batch merged. */
export interface SenderCheckedMerger {
  merge(m: DecodedMessage<'batch'>): Promise<MergeResult>;
}

/** `merger` behind the central's sender check against `db`'s `EstadoSyncGeneral` (see `verifySender`). */
export function senderChecked(db: Database, merger: BatchMerger): SenderCheckedMerger {
  return { merge: async (m) => merger.merge(await verifySender(db, m)) };
}

/** A batch of `shape` (no details) upserting `headers`, given as value rows, with their hashes. */
export function valueBatch(siteId: number, shape: PipelineShape, headers: WireValues[], version = 1): HeaderBatch {
  const columns = shape.header.columns.map((c) => c.name);
  const keyAt = shape.header.key.map((k) => columns.indexOf(k));
  const hasher = new HeaderHasher(shape.algorithm, columns);
  return {
    sessionId: randomUUID(),
    siteId,
    pipeline: shape,
    version,
    seq: 0,
    changes: headers.map((header) => ({
      op: 'upsert' as const,
      key: keyAt.map((i) => header[i]!),
      hash: hasher.hash(header),
      header,
      details: [],
    })),
  };
}

/** Publishes an encoded (possibly doctored) message and waits for the broker's confirm. */
export async function publishRaw(ch: amqp.ConfirmChannel, exchange: string, msg: EncodedMessage): Promise<void> {
  ch.publish(exchange, msg.routingKey, msg.content, msg.options);
  await ch.waitForConfirms();
}

/** Polls `fn` until it returns a value other than undefined/false, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Takes messages off `queue` (basic.get, auto-ack) until `count` were read or `timeoutMs` passed;
 * returns what was read (maybe fewer than `count`, so the caller's assertion says what is missing).
 */
export async function takeMessages(
  ch: amqp.Channel,
  queue: string,
  count: number,
  timeoutMs = 15_000,
): Promise<amqp.GetMessage[]> {
  const out: amqp.GetMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count && Date.now() < deadline) {
    const m = await ch.get(queue, { noAck: true });
    if (m) out.push(m);
    else await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

/** Decodes messages read from a site queue (acks from the central). */
export function decodeAll(msgs: Array<amqp.GetMessage | amqp.ConsumeMessage>, types?: MessageType[]): DecodedMessage[] {
  return msgs.map((m) => decodeMessage(m, types));
}

/** Rows of `table` (for `siteId` when given); a table that does not exist holds zero rows. */
export async function rowCount(db: Database, table: string, siteId?: number): Promise<number> {
  if (!(await db.describeTable(table))) return 0;
  const where = siteId === undefined ? '' : ' WHERE id_efector = ?';
  const r = await db.query<{ n: number | string }>(
    `SELECT COUNT(*) AS n FROM ${db.dialect.quote(table)}${where}`,
    siteId === undefined ? [] : [siteId],
  );
  return Number(r[0]!.n);
}

/** Rows of `table` as plain objects ordered by `order` (none when the table does not exist). */
export async function tableRows(
  db: Database,
  table: string,
  order: string,
  siteId?: number,
): Promise<Record<string, unknown>[]> {
  if (!(await db.describeTable(table))) return [];
  const q = (s: string) => db.dialect.quote(s);
  const where = siteId === undefined ? '' : ` WHERE ${q('id_efector')} = ?`;
  return db.query(`SELECT * FROM ${q(table)}${where} ORDER BY ${q(order)}`, siteId === undefined ? [] : [siteId]);
}

/**
 * Collects every message of `queue` through a consumer (auto-ack). Needed for queues that refuse
 * basic.get, such as the site queues (quorum with single active consumer).
 */
export class QueueCollector {
  readonly messages: amqp.ConsumeMessage[] = [];
  private tag: string | undefined;

  private constructor(private readonly ch: amqp.Channel) {}

  static async start(ch: amqp.Channel, queue: string): Promise<QueueCollector> {
    const c = new QueueCollector(ch);
    const ok = await ch.consume(
      queue,
      (m) => {
        if (m) c.messages.push(m);
      },
      { noAck: true },
    );
    c.tag = ok.consumerTag;
    return c;
  }

  /** Waits until at least `count` messages arrived (or the timeout passed); returns all of them. */
  async waitForCount(count: number, timeoutMs = 15_000): Promise<amqp.ConsumeMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return [...this.messages];
  }

  async stop(): Promise<void> {
    if (this.tag) await this.ch.cancel(this.tag).catch(() => undefined);
  }
}

/**
 * A dead letter to operate on: `siteId` is known centrally, but only with pipeline "other", so its
 * "lab" batch (with a patient's name in it) is dead-lettered as unknown-site until the operator
 * registers the pipeline. Returns the batch, the dead-letter queue and the channel that published it.
 */
/**
 * Declares the queues of what the central rejects from `sites`, as the central does on its first
 * dead letter for each, so that a test polling them cannot hit a 404 (which closes its channel).
 */
export async function declareRejectQueues(ch: amqp.Channel, t: Topology, sites: number[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of sites) {
    out.push(
      (await ch.assertQueue(t.siteRejectsQueue(s), { durable: true, arguments: t.siteRejectsQueueArguments() })).queue,
    );
    await ch.bindQueue(t.siteRejectsQueue(s), t.dlx, t.siteRejectsRoute(s));
  }
  return out;
}

export async function plantUnknownPipelineDeadLetter(
  world: TestWorld,
  central: Database,
  siteId: number,
): Promise<{ batch: EncodedMessage; dlq: string; ch: amqp.ConfirmChannel }> {
  await registerSite(central, { siteId, pipeline: 'other', headerTable: 'x_orders', brokerUser: 'guest' });
  world.siteConfig(siteId, world.dbUrl('sqlite', `site${siteId}`)); // so that teardown removes its queues
  const ch = await world.rawChannel();
  await world.topology.declareSite(ch, siteId);
  const batch = encodeMessage('batch', labBatch(siteId, [{ orderId: 1, value: 'Pérez, Ana' }]), {
    siteId,
    appId: 'test',
    userId: 'guest',
  });
  const dlq = (await declareRejectQueues(ch, world.topology, [siteId]))[0]!;
  await publishRaw(ch, world.topology.up, batch);
  await until('the dead letter', async () => (await ch.checkQueue(dlq)).messageCount === 1);
  return { batch, dlq, ch };
}
