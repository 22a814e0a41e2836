import type * as amqp from 'amqplib';
import {
  decodeMessage,
  type DecodedMessage,
  type MessageBody,
  type MessageType,
  type PeripheralConfigInput,
} from '@sitesync/protocol';
import type { Database, InterventionRow as DbInterventionRow } from '@sitesync/db';
import type { CentralAgent, TransferRow } from '@sitesync/central';
import type { PeripheralAgent } from '@sitesync/peripheral';
import type { DbKind, TestWorld } from '../support/harness.js';
import { waitFor } from '../support/messages.js';

/** Shared helpers of the intervention suites (rejections, replays, crashes). */

export const A1 = {
  code: 'A',
  version: 1,
  name: 'Hemograma completo',
  definition: '{"steps":["extracción","conteo"]}',
};

/** A row of `intervention` as `SELECT *` returns it (the site's table also has `transfer_requested`). */
export type InterventionRow = DbInterventionRow & { transfer_requested: unknown };

export interface SiteTransferRow {
  transfer_id: string;
  guid: string;
  direction: string;
  state: string;
  local_id: number | null;
  reason: string | null;
}

export type CentralTransferRow = TransferRow;

/** A boolean column as read back from any dialect (true/false, 0/1, '0'/'1'). */
export const flag = (v: unknown): boolean => Boolean(Number(v));

export function interventions(db: Database, guid: string): Promise<InterventionRow[]> {
  return db.query<InterventionRow>(`SELECT * FROM intervention WHERE guid = ?`, [guid]);
}

/** The site's own record of its transfers of `guid`. */
export function siteTransfers(db: Database, guid: string): Promise<SiteTransferRow[]> {
  return db.query<SiteTransferRow>(`SELECT * FROM intervention_transfer WHERE guid = ? ORDER BY created_at`, [guid]);
}

/** The central's transfer log for `guid`, oldest first. */
export function centralLog(db: Database, guid: string): Promise<CentralTransferRow[]> {
  return db.query<CentralTransferRow>(
    `SELECT * FROM intervention_transfer WHERE guid = ? ORDER BY created_at, transfer_id`,
    [guid],
  );
}

export async function holds(db: Database, code: string, version: number): Promise<boolean> {
  return (
    (await db.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [code, version])).length === 1
  );
}

/** Inserts a procedure version straight into a database (one the central never published, for instance). */
export async function insertProcedure(
  db: Database,
  p: { code: string; version: number; name: string; definition: string },
): Promise<void> {
  await db.execute(
    `INSERT INTO procedure_version (code, version, name, definition, created_at) VALUES (?, ?, ?, ?, ?)`,
    [p.code, p.version, p.name, p.definition, db.dialect.now()],
  );
}

/**
 * The harness's teardown deletes the central sync queue but not the central intervention queue:
 * call first thing after creating a world so it is removed too (it runs after the agents closed).
 */
export function removeInterventionQueuesAtTeardown(world: TestWorld): void {
  world.onTeardown(async () => {
    const { connect } = await import('amqplib');
    const conn = await connect(world.amqpUrl).catch(() => undefined);
    if (!conn) return;
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const q = world.topology.centralInterventionQueue;
      for (const name of [q, world.topology.deadLetterQueue(q)]) await ch.deleteQueue(name).catch(() => undefined);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });
}

export interface Started {
  central: CentralAgent;
  centralUrl: string;
  cdb: Database;
  sites: Map<number, PeripheralAgent>;
  inputs: Map<number, PeripheralConfigInput>;
}

/**
 * A central and registered sites (all on `kind`), procedure A.1 published to every registered site
 * and confirmed in their catalogues. `unregistered` sites run too but have no EstadoSyncGeneral row.
 */
export async function startWorld(
  world: TestWorld,
  kind: DbKind,
  registered: number[],
  opts: { unregistered?: number[]; centralOverrides?: Record<string, unknown> } = {},
): Promise<Started> {
  const centralUrl = world.dbUrl(kind, 'central');
  const central = await world.startCentral(centralUrl, { dispatchIntervalMs: 100, ...opts.centralOverrides });
  const cdb = central.database!;
  for (const s of registered) await world.registerSite(cdb, s);
  const sites = new Map<number, PeripheralAgent>();
  const inputs = new Map<number, PeripheralConfigInput>();
  for (const s of [...registered, ...(opts.unregistered ?? [])]) {
    const input: PeripheralConfigInput = {
      ...(await world.prepareSite(s, world.dbUrl(kind, `site${s}`))),
      transferPollSeconds: 0.2,
    };
    inputs.set(s, input);
    sites.set(s, await world.startSite(input));
  }
  if (registered.length) {
    await central.interventionService!.publishProcedure(A1, 'all');
    await waitFor('every registered site to hold A.1 and the central to know it', async () => {
      for (const s of registered) if (!(await holds(sites.get(s)!.database!, 'A', 1))) return false;
      const held = await cdb.query(
        `SELECT id_efector FROM site_procedure WHERE code = ? AND version = ? AND state = ?`,
        ['A', 1, 'held'],
      );
      return held.length === registered.length;
    });
  }
  return { central, centralUrl, cdb, sites, inputs };
}

/**
 * Everything published to `exchange` under `patterns`, seen through an exclusive queue of the test's
 * own (the agents' queues are left alone).
 */
export class Observer {
  readonly messages: amqp.ConsumeMessage[] = [];

  private constructor(private readonly ch: amqp.Channel) {}

  static async start(ch: amqp.Channel, exchange: string, patterns: string[]): Promise<Observer> {
    const o = new Observer(ch);
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    for (const p of patterns) await ch.bindQueue(queue, exchange, p);
    await ch.consume(queue, (m) => void (m && o.messages.push(m)), { noAck: true });
    return o;
  }

  /** Decoded messages of `type` (in arrival order), optionally filtered. */
  of<T extends MessageType>(type: T, where: (b: MessageBody<T>) => boolean = () => true): DecodedMessage<T>[] {
    return this.messages
      .filter((m) => m.properties.type === type)
      .map((m) => decodeMessage(m) as DecodedMessage<T>)
      .filter((m) => where(m.body));
  }

  raw(type: MessageType, where: (b: Record<string, unknown>) => boolean = () => true): amqp.ConsumeMessage[] {
    return this.messages.filter(
      (m) => m.properties.type === type && where(decodeMessage(m).body as unknown as Record<string, unknown>),
    );
  }

  async waitForCount<T extends MessageType>(
    type: T,
    count: number,
    where: (b: MessageBody<T>) => boolean = () => true,
    timeoutMs = 15_000,
  ): Promise<DecodedMessage<T>[]> {
    await waitFor(`${count} ${type} message(s)`, async () => this.of(type, where).length >= count, timeoutMs, 50);
    return this.of(type, where);
  }
}

/** Publishes a captured message again, byte for byte, with the same properties (same message id). */
export async function republish(
  ch: amqp.ConfirmChannel,
  exchange: string,
  m: Pick<amqp.Message, 'content' | 'fields' | 'properties'>,
): Promise<void> {
  const p = m.properties as amqp.MessageProperties;
  const headers = { ...(p.headers ?? {}) };
  delete headers['x-delivery-count'];
  ch.publish(exchange, m.fields.routingKey, m.content, {
    persistent: true,
    messageId: p.messageId as string,
    type: p.type as string,
    appId: p.appId as string,
    ...(p.userId ? { userId: p.userId as string } : {}),
    timestamp: p.timestamp as number,
    contentType: p.contentType as string,
    ...(p.contentEncoding ? { contentEncoding: p.contentEncoding as string } : {}),
    ...(p.correlationId ? { correlationId: p.correlationId as string } : {}),
    headers,
  });
  await ch.waitForConfirms();
}

/** Ready messages in a queue. */
export async function readyCount(ch: amqp.Channel, queue: string): Promise<number> {
  return (await ch.checkQueue(queue)).messageCount;
}
