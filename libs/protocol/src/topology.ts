import type { Channel } from 'amqplib';
import { TransientError } from './errors';
import { queueNodeDownOf } from './broker-failures';

/** Delivery attempts before the broker dead-letters a message (quorum queues; set explicitly, 3.10 has no default). */
export const DEFAULT_DELIVERY_LIMIT = 5;
/** Dead letters the central keeps per site (its own queue), before it refuses that site's next one. */
export const DEFAULT_SITE_DEAD_LETTER_MAX_MESSAGES = 10_000;
/** Bytes of dead letters the central keeps per site. */
export const DEFAULT_SITE_DEAD_LETTER_MAX_BYTES = 256 * 1024 * 1024;

export interface TopologyOptions {
  /** Prepended to every exchange and queue name, so several environments (or tests) share one broker. @default '' */
  prefix?: string;
  /** @default 5 */
  deliveryLimit?: number;
  /** Cap of each site's dead-letter queue at the central, in messages. @default 10000 */
  siteDeadLetterMaxMessages?: number;
  /** Cap of each site's dead-letter queue at the central, in bytes. @default 256 MiB */
  siteDeadLetterMaxBytes?: number;
}

/** Routing-key patterns (site id first) that the central sync queue consumes from `sync.up`. */
export const CENTRAL_SYNC_BINDINGS = ['*.session.started', '*.session.completed', '*.batch'] as const;
/** Routing-key patterns of the central's procedure/intervention queue. */
export const CENTRAL_INTERVENTION_BINDINGS = ['*.procedure.*', '*.intervention.*'] as const;

/** Opens a short-lived channel on the current connection. */
export type ChannelOpener = () => Promise<Channel>;

/** Whether an exchange or queue exists (a passive declare; it needs no permission). */
export async function brokerEntityExists(
  open: ChannelOpener,
  kind: 'queue' | 'exchange',
  name: string,
): Promise<boolean> {
  return (await brokerEntityState(open, kind, name)) !== 'missing';
}

/**
 * `present`, `missing`, or `unavailable`: a queue that exists on a cluster node that is down (a
 * classic dead-letter queue whose node stopped). Declaring or binding an unavailable queue fails, and
 * it needs no declaring: it is back with its node.
 */
export async function brokerEntityState(
  open: ChannelOpener,
  kind: 'queue' | 'exchange',
  name: string,
): Promise<'present' | 'missing' | 'unavailable'> {
  const ch = await open();
  ch.on('error', () => undefined); // a 404 closes the channel: expected here
  try {
    if (kind === 'queue') await ch.checkQueue(name);
    else await ch.checkExchange(name);
    await ch.close().catch(() => undefined);
    return 'present';
  } catch (err) {
    return queueNodeDownOf(err) ? 'unavailable' : 'missing';
  }
}

/** All broker names, derived from one prefix. */
export class Topology {
  readonly prefix: string;
  readonly deliveryLimit: number;
  readonly siteDeadLetterMaxMessages: number;
  readonly siteDeadLetterMaxBytes: number;
  /** topic; site -> central */
  readonly up: string;
  /** topic; central -> site */
  readonly down: string;
  /** direct; dead letters, routed by the name of the queue they died in */
  readonly dlx: string;
  /** the central's header/detail work queue */
  readonly centralSyncQueue: string;
  /** the central's procedure and intervention queue (kept apart so a bulk load never delays a transfer) */
  readonly centralInterventionQueue: string;

  constructor(opts: TopologyOptions = {}) {
    this.prefix = opts.prefix ?? '';
    this.deliveryLimit = opts.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT;
    this.siteDeadLetterMaxMessages = opts.siteDeadLetterMaxMessages ?? DEFAULT_SITE_DEAD_LETTER_MAX_MESSAGES;
    this.siteDeadLetterMaxBytes = opts.siteDeadLetterMaxBytes ?? DEFAULT_SITE_DEAD_LETTER_MAX_BYTES;
    this.up = `${this.prefix}sync.up`;
    this.down = `${this.prefix}sync.down`;
    this.dlx = `${this.prefix}sync.dlx`;
    this.centralSyncQueue = `${this.prefix}central.sync`;
    this.centralInterventionQueue = `${this.prefix}central.interventions`;
  }

  siteQueue(siteId: number): string {
    return `${this.prefix}site.${siteId}`;
  }

  /** The dead-letter queue beside a work queue. */
  deadLetterQueue(queue: string): string {
    return `${queue}.dlq`;
  }

  /**
   * The dead-letter route of what the central rejects from one site: a queue of its own (this
   * name + `.dlq`, bound to the dead-letter exchange by this name), capped, so one site's dead
   * letters can never crowd out another's. Not a work queue: nothing consumes it.
   */
  siteRejectsRoute(siteId: number): string {
    return `${this.prefix}central.site-${siteId}`;
  }

  /** The dead-letter queue of what the central rejects from one site. */
  siteRejectsQueue(siteId: number): string {
    return this.deadLetterQueue(this.siteRejectsRoute(siteId));
  }

  /** Arguments of a site's rejects queue: a dead-letter queue with its own caps; past them, publishes are refused. */
  siteRejectsQueueArguments(): Record<string, unknown> {
    return {
      ...this.deadLetterQueueArguments(),
      'x-max-length': this.siteDeadLetterMaxMessages,
      'x-max-length-bytes': this.siteDeadLetterMaxBytes,
      'x-overflow': 'reject-publish',
    };
  }

  /**
   * Makes sure a dead-letter queue exists and is bound under `route`, checking on a scratch channel
   * first (a queue that exists keeps its arguments). Run before every dead letter the central
   * publishes: a queue deleted while the central runs is back before the message goes out.
   */
  async ensureDeadLetterQueue(
    ch: Channel,
    open: ChannelOpener,
    route: string,
    args: Record<string, unknown> = this.deadLetterQueueArguments(),
  ): Promise<string> {
    const dlq = this.deadLetterQueue(route);
    if (!(await brokerEntityExists(open, 'exchange', this.dlx))) await this.declareExchanges(ch);
    const state = await brokerEntityState(open, 'queue', dlq);
    // Checked before `ch` is used: a failed declare would close it (the publish channel, often).
    if (state === 'unavailable')
      throw new TransientError(`dead-letter queue ${dlq} is on a cluster node that is down`, 'BROKER_QUEUE_DOWN');
    if (state === 'missing') await ch.assertQueue(dlq, { durable: true, arguments: args });
    await ch.bindQueue(dlq, this.dlx, route);
    return dlq;
  }

  /** The queue (or rejects route) a dead-letter queue belongs to: its name without `.dlq`. */
  workQueueOf(dlq: string): string | undefined {
    return dlq.endsWith('.dlq') ? dlq.slice(0, -'.dlq'.length) : undefined;
  }

  /** Arguments of every work queue: quorum, explicit delivery limit, its own dead-letter queue, at-least-once. */
  workQueueArguments(queue: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      'x-queue-type': 'quorum',
      'x-delivery-limit': this.deliveryLimit,
      'x-dead-letter-exchange': this.dlx,
      'x-dead-letter-routing-key': queue,
      // at-least-once dead-lettering (3.10+) needs reject-publish overflow.
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
      ...extra,
    };
  }

  async declareExchanges(ch: Channel): Promise<void> {
    await ch.assertExchange(this.up, 'topic', { durable: true });
    await ch.assertExchange(this.down, 'topic', { durable: true });
    await ch.assertExchange(this.dlx, 'direct', { durable: true });
  }

  /**
   * Arguments of a dead-letter queue: a durable classic queue. Not quorum: a quorum queue counts
   * every return of a message towards a delivery limit (RabbitMQ 4.x defaults it to 20), so
   * browsing dead letters with `syncctl dlq list` would in the end drop them.
   */
  deadLetterQueueArguments(): Record<string, unknown> {
    return { 'x-queue-type': 'classic' };
  }

  /**
   * Declares a work queue and its dead-letter queue. With `open`, a queue that exists already is left
   * as it is (checked on a scratch channel): one declared earlier with other arguments (say, a
   * quorum dead-letter queue of an older release) keeps working instead of failing the connection.
   */
  private async declareWorkQueue(
    ch: Channel,
    queue: string,
    extra: Record<string, unknown> = {},
    open?: ChannelOpener,
  ): Promise<void> {
    const missing = async (q: string) => !open || !(await brokerEntityExists(open, 'queue', q));
    const dlq = this.deadLetterQueue(queue);
    // A classic dead-letter queue whose cluster node is down exists, bound, and cannot be declared or
    // bound now: the work queue goes on without it (the broker keeps its dead letters until it is back).
    const dlqState = open ? await brokerEntityState(open, 'queue', dlq) : 'missing';
    if (dlqState === 'missing')
      await ch.assertQueue(dlq, { durable: true, arguments: this.deadLetterQueueArguments() });
    if (dlqState !== 'unavailable') await ch.bindQueue(dlq, this.dlx, queue);
    if (await missing(queue))
      await ch.assertQueue(queue, { durable: true, arguments: this.workQueueArguments(queue, extra) });
  }

  /** One peripheral process applies a site's messages at a time. */
  siteQueueExtraArguments(): Record<string, unknown> {
    return { 'x-single-active-consumer': true };
  }

  /** What binds a site's queue to the down exchange: every routing key that starts with its id. */
  siteRoutingPattern(siteId: number): string {
    return `${siteId}.#`;
  }

  /** Every queue of one site: its work queue and its dead-letter queue. */
  siteQueues(siteId: number): string[] {
    const q = this.siteQueue(siteId);
    return [q, this.deadLetterQueue(q)];
  }

  /** Declares everything the central consumes. Idempotent. */
  async declareCentral(ch: Channel, open?: ChannelOpener): Promise<void> {
    await this.declareExchanges(ch);
    await this.declareWorkQueue(ch, this.centralSyncQueue, {}, open);
    for (const key of CENTRAL_SYNC_BINDINGS) await ch.bindQueue(this.centralSyncQueue, this.up, key);
    await this.declareWorkQueue(ch, this.centralInterventionQueue, {}, open);
    for (const key of CENTRAL_INTERVENTION_BINDINGS) await ch.bindQueue(this.centralInterventionQueue, this.up, key);
  }

  /**
   * Makes sure a site's exchanges and queues exist, declaring them only when one is missing: a site
   * whose broker user may not configure anything (see `deploy/rabbitmq/definitions.json`) finds
   * them provisioned by the central and only checks. Each check runs on its own short-lived channel
   * (a failed passive check closes its channel).
   */
  async ensureSite(open: ChannelOpener, siteId: number): Promise<'present' | 'declared'> {
    const exchanges = [this.up, this.down, this.dlx];
    const present =
      (await Promise.all(exchanges.map((e) => brokerEntityExists(open, 'exchange', e)))).every(Boolean) &&
      (await Promise.all(this.siteQueues(siteId).map((q) => brokerEntityExists(open, 'queue', q)))).every(Boolean);
    if (present) return 'present';
    const ch = await open();
    try {
      await this.declareSite(ch, siteId, open);
    } finally {
      await ch.close().catch(() => undefined);
    }
    return 'declared';
  }

  /** Declares one site's queue (acks and orders from the central). Idempotent. */
  async declareSite(ch: Channel, siteId: number, open?: ChannelOpener): Promise<void> {
    await this.declareExchanges(ch);
    const q = this.siteQueue(siteId);
    await this.declareWorkQueue(ch, q, this.siteQueueExtraArguments(), open);
    await ch.bindQueue(q, this.down, this.siteRoutingPattern(siteId));
  }
}
