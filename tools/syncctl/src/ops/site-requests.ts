import { randomUUID } from 'node:crypto';
import {
  decodeMessage,
  encodeMessage,
  MessageRejectedError,
  replyRoutingKey,
  SyncError,
  UnroutableError,
  type BrokerConnection,
  type MessageBody,
  type Topology,
} from '@sitesync/protocol';

type Channel = Awaited<ReturnType<BrokerConnection['openChannel']>>;
type ConsumeMessage = NonNullable<Parameters<Parameters<Channel['consume']>[1]>[0]>;

/** How long syncctl waits for each answer of a site, by default. */
export const DEFAULT_SITE_TIMEOUT_MS = 30_000;
/** A site's reply larger than this on the wire is refused unread. */
export const MAX_REPLY_WIRE_BYTES = 2 * 1024 * 1024;
/** ... and one inflating past this. */
export const MAX_REPLY_INFLATED_BYTES = 8 * 1024 * 1024;

/** The site cannot be asked: no agent consumes its queue, or it did not answer in time. */
export class SiteNotConnectedError extends SyncError {
  override name = 'SiteNotConnectedError';
  constructor(
    message: string,
    readonly siteId: number,
  ) {
    super(message, 'SITE_NOT_CONNECTED');
  }
}

/** A site answered with something syncctl refuses: too large, not the schema, another request, another user. */
export class SiteReplyError extends SyncError {
  override name = 'SiteReplyError';
  constructor(
    message: string,
    readonly siteId: number,
    options?: { cause?: unknown },
  ) {
    super(message, 'SITE_REPLY_REFUSED', options);
  }
}

type RequestType = 'verify.request' | 'resync.request';
type ReplyType = 'verify.reply' | 'resync.reply';

export interface SiteRequesterOptions {
  broker: BrokerConnection;
  topology: Topology;
  siteId: number;
  /** The broker user the site publishes as (its EstadoSyncGeneral `broker_user`); replies from any other are refused. */
  siteUser: string;
  /** How long one answer may take; also the requests' TTL. */
  timeoutMs: number;
}

/**
 * One conversation of syncctl with a site agent through the broker: requests go down to the site's
 * queue with a TTL; answers come back on `sync.up` under `<siteId>.reply.<requestId>` into an
 * exclusive, auto-delete queue bound to exactly that key, and each is checked (size before
 * decoding, envelope, schema, request id, round, the site's own broker user) before it is used.
 */
export class SiteRequester {
  readonly requestId = randomUUID();
  /** Bytes of the replies received, as they came over the wire. */
  replyBytes = 0;
  replies = 0;
  private ch: Channel | undefined;
  private queue = '';
  private readonly arrived: ConsumeMessage[] = [];
  private waiter: (() => void) | undefined;

  private constructor(private readonly opts: SiteRequesterOptions) {}

  /** Checks that an agent consumes the site's queue, then opens the reply queue. */
  static async open(opts: SiteRequesterOptions): Promise<SiteRequester> {
    const r = new SiteRequester(opts);
    await r.checkConsumer();
    await r.openReplyQueue();
    return r;
  }

  private async checkConsumer(): Promise<void> {
    const { siteId, topology, broker } = this.opts;
    const queue = topology.siteQueue(siteId);
    const consumers = await broker
      .withChannel(async (ch) => (await ch.checkQueue(queue)).consumerCount)
      .catch(() => undefined);
    if (consumers === undefined)
      throw new SiteNotConnectedError(`site ${siteId} is not connected: its queue ${queue} does not exist`, siteId);
    if (consumers === 0)
      throw new SiteNotConnectedError(
        `site ${siteId} is not connected: no agent consumes its queue ${queue} (is sync-peripheral running there?)`,
        siteId,
      );
  }

  private async openReplyQueue(): Promise<void> {
    const { broker, topology, siteId } = this.opts;
    const ch = await broker.openChannel();
    this.ch = ch;
    // Named under the topology's prefix: the central's broker user may configure only such names
    // (a server-named `amq.gen-…` queue would be refused where the prefix is not empty).
    this.queue = `${topology.prefix}syncctl.reply.${this.requestId}`;
    await ch.assertQueue(this.queue, { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(this.queue, topology.up, replyRoutingKey(siteId, this.requestId));
    await ch.consume(
      this.queue,
      (msg) => {
        if (!msg) return;
        this.arrived.push(msg);
        this.waiter?.();
      },
      { noAck: true },
    );
  }

  /** Sends `body` and waits for its answer of `replyType`; `matches` checks that the answer is to this request. */
  async ask<R extends ReplyType>(
    type: RequestType,
    body: MessageBody<RequestType>,
    replyType: R,
    matches: (reply: MessageBody<R>) => string | undefined,
  ): Promise<MessageBody<R>> {
    const { broker, topology, siteId, timeoutMs } = this.opts;
    const m = encodeMessage(type, body, { siteId, appId: 'syncctl' });
    // Not persistent, and dropped by the broker unread when nobody asked for it in time: a site
    // that reconnects hours later finds no stale request.
    m.options.expiration = String(timeoutMs);
    try {
      await broker.publish(topology.down, m);
    } catch (err) {
      if (err instanceof UnroutableError)
        throw new SiteNotConnectedError(`site ${siteId} is not connected: nothing takes its messages`, siteId);
      throw err;
    }
    const msg = await this.next(timeoutMs);
    this.replies++;
    this.replyBytes += msg.content.length;
    let decoded;
    try {
      decoded = decodeMessage(msg, [replyType], {
        maxWireBytes: MAX_REPLY_WIRE_BYTES,
        maxInflatedBytes: MAX_REPLY_INFLATED_BYTES,
      });
    } catch (err) {
      const why = err instanceof MessageRejectedError ? `${err.reason}: ${err.message}` : String(err);
      throw new SiteReplyError(`site ${siteId}: reply refused (${why})`, siteId, { cause: err });
    }
    if (decoded.userId !== this.opts.siteUser) {
      throw new SiteReplyError(
        `site ${siteId}: reply refused: published by broker user ${JSON.stringify(decoded.userId ?? null)}, not the site's ${JSON.stringify(this.opts.siteUser)}`,
        siteId,
      );
    }
    if (decoded.siteId !== siteId)
      throw new SiteReplyError(`site ${siteId}: reply refused: it names site ${decoded.siteId}`, siteId);
    const reply = decoded.body as MessageBody<R>;
    const requestId = (reply as { requestId: string }).requestId;
    if (requestId !== this.requestId) {
      throw new SiteReplyError(
        `site ${siteId}: reply refused: it answers request ${requestId}, not ${this.requestId}`,
        siteId,
      );
    }
    const wrong = matches(reply);
    if (wrong) throw new SiteReplyError(`site ${siteId}: reply refused: ${wrong}`, siteId);
    return reply;
  }

  /** The next reply, or SiteNotConnectedError after `timeoutMs`. */
  private async next(timeoutMs: number): Promise<ConsumeMessage> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const msg = this.arrived.shift();
      if (msg) return msg;
      const left = end - Date.now();
      if (left <= 0) {
        throw new SiteNotConnectedError(
          `site ${this.opts.siteId} did not answer within ${Math.round(timeoutMs / 1000)} s (not connected, or busy)`,
          this.opts.siteId,
        );
      }
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.waiter = undefined;
    }
  }

  async close(): Promise<void> {
    const ch = this.ch;
    this.ch = undefined;
    if (ch) {
      await ch.deleteQueue(this.queue).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
  }
}
