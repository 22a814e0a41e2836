import { EventEmitter, once } from 'node:events';
import * as amqp from 'amqplib';
import type { Channel, ConfirmChannel, ChannelModel, ConsumeMessage } from 'amqplib';
import { TransientError, errorInfo, type SyncError } from './errors';
import type { EncodedMessage } from './envelope';
import {
  BROKER_FAILURE_LOG_INTERVAL_MS,
  BrokerRefusedError,
  UnroutableError,
  brokerAddressOf,
  brokerRefusalOf,
  brokerUserOf,
  brokerVhostOf,
} from './broker-failures';
import { brokerUrlsOf } from './broker-urls';

/** Minimal logger shape (pino satisfies it). */
export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface BrokerConnectionOptions {
  /**
   * The broker, or the nodes of a cluster: connects to the first that answers, and on a lost
   * connection or a failed connect moves on to the next (round-robin).
   */
  url: string | readonly string[];
  /** Shown in the management UI's connection list. */
  name: string;
  log: Log;
  /** Confirms outstanding at once per connection. @default 256 */
  confirmWindow?: number;
  /** Runs on every (re)connect before consumers start: declare topology here. */
  setup?: (ch: Channel, open: () => Promise<Channel>) => Promise<void>;
  /** Reconnect backoff bounds. @default 250 / 30000 ms */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Extra socket options (TLS ca/cert/key). */
  socketOptions?: Record<string, unknown>;
}

export type Settle = 'ack' | 'requeue' | 'drop';

/** One delivery, with settle functions bound to the channel it came on (a no-op once that channel is gone). */
export interface Delivery {
  msg: ConsumeMessage;
  /** Publishes on the same connection; use for dead-lettering before `ack`. */
  settle(how: Settle): void;
}

export interface ConsumerOptions {
  queue: string;
  prefetch: number;
  handler: (d: Delivery) => Promise<void>;
}

export type ConnectionState = 'IDLE' | 'CONNECTING' | 'CONNECTED' | 'RECONNECTING' | 'CLOSED';

/** A connection lost sooner than this after it opened is not reconnected at once (no storm). */
const STABLE_CONNECTION_MS = 10_000;

/** A mandatory publish awaiting its confirm; `returned` is set when a `basic.return` for it came first. */
interface PendingPublish {
  exchange: string;
  routingKey: string;
  messageId: string;
  returned?: string;
}

/**
 * An amqplib connection that comes back by itself: exponential backoff, topology re-declared and
 * consumers re-created on every reconnect. Publishes go through one ConfirmChannel with a bounded
 * window of unconfirmed messages and respect `drain`.
 */
export class BrokerConnection extends EventEmitter {
  state: ConnectionState = 'IDLE';
  reconnects = 0;
  private model: ChannelModel | undefined;
  private pubChannel: ConfirmChannel | undefined;
  private consumerChannels: Array<{ ch: Channel; tag: string }> = [];
  private readonly consumers: ConsumerOptions[] = [];
  private readonly inFlightHandlers = new Set<Promise<void>>();
  private inFlightPublishes = 0;
  /** Publish channels that closed: an unconfirmed publish on one was lost with it, not refused by the broker. */
  private readonly closedChannels = new WeakSet<ConfirmChannel>();
  /** Mandatory publishes in publish order (a return comes before its publish's confirm, on the same channel). */
  private pendingMandatory: PendingPublish[] = [];
  private readonly windowWaiters: Array<() => void> = [];
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** The wait between two attempts of `connectWithRetry`; `close()` ends it. */
  private retryWait: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  private closing: Promise<void> | undefined;
  private connecting: Promise<void> | undefined;
  /** The broker URLs (cluster nodes), tried in turn from `node`. */
  private readonly urls: readonly string[];
  /** Index in `urls` of the node connected to, or to try next. */
  private node = 0;
  /** The node of the last connection, to log a move to another one. */
  private lastConnectedNode: number | undefined;
  /** Failed attempts since the last connect. */
  private failures = 0;
  /** Rounds over every node that all failed, since the last connect: the backoff grows with them. */
  private failedRounds = 0;
  /** Connections in a row that were lost soon after they opened. */
  private shortLived = 0;
  private connectedAt = 0;
  private lastFailureReport = 0;
  private everConnected = false;
  private settleRefused!: (err: BrokerRefusedError) => void;
  /**
   * Settles when the broker refused this connection's user before it ever connected: retrying is
   * pointless, the process should stop. Pending otherwise (a refusal once it had run is retried,
   * for an operator may be re-granting the user).
   */
  readonly refused = new Promise<BrokerRefusedError>((resolve) => (this.settleRefused = resolve));
  private readonly window: number;
  /** Set while the publish channel's write buffer is full; publishes wait for 'drain'. */
  private drained: Promise<unknown> | undefined;

  constructor(private readonly opts: BrokerConnectionOptions) {
    super();
    this.window = opts.confirmWindow ?? 256;
    this.urls = brokerUrlsOf(opts.url);
  }

  /** `host:port` of the node connected to (or to be tried next). */
  get broker(): string {
    return brokerAddressOf(this.urls[this.node]!);
  }

  get connected(): boolean {
    return this.state === 'CONNECTED';
  }

  /**
   * Connects once, trying each node (from the current one) until one answers; rejects with a
   * TransientError when none can be reached.
   */
  connect(): Promise<void> {
    if (this.state === 'CONNECTED') return Promise.resolve();
    if (this.closing) return Promise.reject(new Error('connection closed'));
    this.connecting ??= this.doConnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Connects, retrying with backoff until it works or `close()` is called. Rejects at once with a
   * {@link BrokerRefusedError} when the broker refuses the user before it ever connected.
   */
  async connectWithRetry(): Promise<void> {
    for (;;) {
      try {
        await this.connect();
        return;
      } catch (err) {
        if (this.closing || err instanceof BrokerRefusedError) throw err;
        await this.sleep(this.backoff(this.failedRounds));
      }
    }
  }

  private backoff(failures: number): number {
    const min = this.opts.minBackoffMs ?? 250;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const ms = Math.min(max, min * 2 ** Math.min(failures, 16));
    return ms / 2 + Math.random() * (ms / 2);
  }

  /** A wait that keeps the process alive (an agent waiting for its broker is running) and that `close()` ends. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.retryWait = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.retryWait = { timer, wake };
    });
  }

  /**
   * Counts a failed attempt on `url` and says what it was: a refusal of the user (final before the
   * first connect, see `doConnect`), or a broker that cannot be reached or set up (retried). Reports
   * the first failure at once, then at most every {@link BROKER_FAILURE_LOG_INTERVAL_MS}, with the
   * number of attempts.
   */
  private attemptFailed(cause: unknown, during: 'connect' | 'setup', url: string): SyncError {
    this.failures++;
    const refusal = brokerRefusalOf(cause);
    const server = brokerAddressOf(url);
    const others = this.urls.length > 1 ? '; trying the next node' : '; retrying';
    let err: SyncError;
    let what: string;
    if (refusal) {
      const refused = new BrokerRefusedError(
        refusal.refusal,
        brokerUserOf(url) ?? 'guest',
        server,
        brokerVhostOf(url),
        refusal.replyText,
        { cause },
      );
      if (!this.everConnected) {
        // A virtual host "refused" by one node of several may be one that is down on that node only.
        if (refusal.refusal === 'vhost' && this.urls.length > 1)
          this.opts.log.warn(
            { broker: server, err: errorInfo(cause) },
            `broker at ${server} refused the virtual host${others}`,
          );
        return refused;
      }
      err = new TransientError(refused.message, 'BROKER_REFUSED', { cause: refused });
      what = `broker refused user ${refused.user} at ${server}`;
    } else if (during === 'connect') {
      err = new TransientError(
        `cannot connect to the broker: unreachable at ${server} (${errorInfo(cause).message})`,
        'BROKER_UNREACHABLE',
        { cause },
      );
      what = `broker unreachable at ${server}`;
    } else {
      err = new TransientError(`broker setup failed: ${errorInfo(cause).message}`, 'BROKER_SETUP', { cause });
      what = `broker setup failed at ${server}`;
    }
    const now = Date.now();
    if (this.failures === 1 || now - this.lastFailureReport >= BROKER_FAILURE_LOG_INTERVAL_MS) {
      this.lastFailureReport = now;
      this.opts.log.warn(
        { err: errorInfo(cause), attempts: this.failures, broker: server },
        this.failures === 1 ? `${what}${others}` : `${what}, still (${this.failures} attempts so far)${others}`,
      );
    }
    return err;
  }

  /**
   * One round: the current node, then each next one, until one connects. A refusal of the user's
   * credentials or of an operation is final before the first connect (a cluster's nodes share their
   * users and permissions, so one clear refusal is enough); a refused virtual host is final only when
   * every node that answered refused it (one node's virtual host may be down while the others run).
   */
  private async doConnect(): Promise<void> {
    const n = this.urls.length;
    let last: unknown;
    let vhostRefused: BrokerRefusedError | undefined;
    let answered = false;
    for (let i = 0; i < n; i++) {
      try {
        await this.connectTo(this.urls[this.node]!);
        this.failedRounds = 0;
        return;
      } catch (err) {
        last = err;
        if (err instanceof BrokerRefusedError) {
          if (err.refusal !== 'vhost' || n === 1) {
            this.settleRefused(err);
            throw err;
          }
          vhostRefused ??= err;
        } else if ((err as SyncError).code !== 'BROKER_UNREACHABLE') answered = true;
        if (this.closing) throw err;
        this.node = (this.node + 1) % n;
      }
    }
    if (vhostRefused && !answered) {
      this.settleRefused(vhostRefused);
      throw vhostRefused;
    }
    this.failedRounds++;
    throw vhostRefused ? new TransientError(vhostRefused.message, 'BROKER_REFUSED', { cause: vhostRefused }) : last;
  }

  private async connectTo(url: string): Promise<void> {
    this.state = this.reconnects > 0 || this.failures > 0 ? 'RECONNECTING' : 'CONNECTING';
    let model: ChannelModel;
    try {
      model = await amqp.connect(url, {
        noDelay: true, // without it, publish-then-confirm runs at ~23 msg/s (Nagle + delayed ACK)
        clientProperties: { connection_name: this.opts.name },
        ...this.opts.socketOptions,
      });
    } catch (cause) {
      throw this.attemptFailed(cause, 'connect', url);
    }
    model.on('error', (err: unknown) => this.opts.log.warn({ err: errorInfo(err) }, 'broker connection error'));
    model.on('close', () => this.onLost(model));
    model.on('blocked', (reason: unknown) => this.opts.log.warn({ reason }, 'broker blocked publishing'));
    try {
      const pub = await model.createConfirmChannel();
      pub.on('error', (err: unknown) => this.opts.log.warn({ err: errorInfo(err) }, 'publish channel error'));
      pub.on('close', () => {
        this.closedChannels.add(pub);
        if (this.model === model && this.state === 'CONNECTED' && !this.closing)
          void model.close().catch(() => undefined);
      });
      pub.on('drain', () => this.emit('drain'));
      pub.on('return', (msg: ConsumeMessage) => this.onReturn(msg));
      if (this.opts.setup) await this.opts.setup(pub, () => model.createChannel());
      this.model = model;
      this.pubChannel = pub;
      this.consumerChannels = [];
      for (const c of this.consumers) await this.startConsumer(model, c);
    } catch (err) {
      // Unset first: the close must not count as a lost connection (whose reconnect is immediate).
      if (this.model === model) {
        this.model = undefined;
        this.pubChannel = undefined;
        this.consumerChannels = [];
      }
      await model.close().catch(() => undefined);
      throw this.attemptFailed(err, 'setup', url);
    }
    const broker = brokerAddressOf(url);
    const node = this.urls.length > 1 ? `${this.node + 1}/${this.urls.length}` : undefined;
    if (this.lastConnectedNode !== undefined && this.lastConnectedNode !== this.node) {
      const was = brokerAddressOf(this.urls[this.lastConnectedNode]!);
      this.opts.log.warn(
        { broker, node, was, reconnects: this.reconnects, attempts: this.failures + 1 },
        `broker connected to another node: ${broker} (was ${was})`,
      );
    } else if (this.failures > 0 || this.reconnects > 0 || node)
      this.opts.log.info(
        { broker, node, reconnects: this.reconnects, attempts: this.failures + 1 },
        'broker connected',
      );
    this.lastConnectedNode = this.node;
    this.failures = 0;
    this.everConnected = true;
    this.connectedAt = Date.now();
    this.state = 'CONNECTED';
    this.emit('connected');
  }

  private onLost(model: ChannelModel): void {
    if (this.model !== model) return;
    this.model = undefined;
    this.pubChannel = undefined;
    this.consumerChannels = [];
    this.inFlightPublishes = 0;
    this.pendingMandatory = [];
    this.windowWaiters.splice(0).forEach((w) => w());
    if (this.closing) {
      this.state = 'CLOSED';
      return;
    }
    this.state = 'RECONNECTING';
    this.reconnects++;
    this.emit('disconnected');
    // At once after a connection that lasted; after a backoff when connections keep dropping soon
    // after they open (a refused operation, a broker that accepts and then closes).
    this.shortLived = Date.now() - this.connectedAt < STABLE_CONNECTION_MS ? this.shortLived + 1 : 0;
    const lost = this.broker;
    // A cluster: the next node first (the lost one may be going down); it comes round again last.
    if (this.urls.length > 1) this.node = (this.node + 1) % this.urls.length;
    this.opts.log.warn(
      { shortLived: this.shortLived || undefined, broker: lost },
      this.urls.length > 1
        ? `broker connection to ${lost} lost; reconnecting, next to ${this.broker}`
        : 'broker connection lost; reconnecting',
    );
    this.scheduleReconnect(this.shortLived > 0 ? this.backoff(this.shortLived) : 0);
  }

  private scheduleReconnect(delay: number): void {
    if (this.reconnectTimer || this.closing) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().catch(() => this.scheduleReconnect(this.backoff(this.failedRounds)));
    }, delay);
  }

  /** Registers a consumer; it is (re)started on every connect. */
  async consume(c: ConsumerOptions): Promise<void> {
    this.consumers.push(c);
    if (this.model && this.state === 'CONNECTED') await this.startConsumer(this.model, c);
  }

  private async startConsumer(model: ChannelModel, c: ConsumerOptions): Promise<void> {
    const ch = await model.createChannel();
    ch.on('error', (err: unknown) =>
      this.opts.log.warn({ err: errorInfo(err), queue: c.queue }, 'consumer channel error'),
    );
    await ch.prefetch(c.prefetch);
    let open = true;
    ch.on('close', () => {
      open = false;
      if (this.model === model && this.state === 'CONNECTED' && !this.closing)
        void model.close().catch(() => undefined);
    });
    const { consumerTag } = await ch.consume(c.queue, (msg) => {
      if (msg === null) {
        // The broker cancelled us (queue deleted): drop the connection so reconnect re-declares.
        this.opts.log.warn({ queue: c.queue }, 'consumer cancelled by broker');
        void model.close().catch(() => undefined);
        return;
      }
      let settled = false;
      const delivery: Delivery = {
        msg,
        settle: (how) => {
          if (settled || !open) return;
          settled = true;
          if (how === 'ack') ch.ack(msg);
          else ch.nack(msg, false, how === 'requeue');
        },
      };
      const p = c.handler(delivery).catch((err: unknown) => {
        this.opts.log.error({ err: errorInfo(err), queue: c.queue }, 'consumer handler failed; requeueing');
        delivery.settle('requeue');
      });
      this.inFlightHandlers.add(p);
      void p.finally(() => this.inFlightHandlers.delete(p));
    });
    this.consumerChannels.push({ ch, tag: consumerTag });
  }

  /**
   * Stops deliveries (basic.cancel). The channels stay open, so in-flight handlers can still ack
   * what they were given; `close()` closes the channels after they finished.
   */
  async cancelConsumers(): Promise<void> {
    this.consumers.length = 0;
    await Promise.allSettled(this.consumerChannels.map(({ ch, tag }) => ch.cancel(tag)));
  }

  /** Resolves when all handlers started so far have finished. */
  async drainHandlers(): Promise<void> {
    await Promise.allSettled([...this.inFlightHandlers]);
  }

  /** Marks the oldest matching pending mandatory publish as returned. */
  private onReturn(msg: ConsumeMessage): void {
    const f = msg.fields as unknown as { exchange: string; routingKey: string; replyText?: string };
    const id = typeof msg.properties.messageId === 'string' ? msg.properties.messageId : '';
    const p = this.pendingMandatory.find(
      (x) => !x.returned && x.exchange === f.exchange && x.routingKey === f.routingKey && x.messageId === id,
    );
    if (p) p.returned = f.replyText ?? 'NO_ROUTE';
    else
      this.opts.log.warn({ exchange: f.exchange, routingKey: f.routingKey, messageId: id }, 'unmatched basic.return');
  }

  /**
   * Resolves true once connected (at once when it is), false after `timeoutMs` or when the
   * connection is closed: for a sender that lost a publish with the connection and wants to send it
   * again once the reconnect (to this node, or the next one of a cluster) is done.
   */
  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.state === 'CONNECTED') return Promise.resolve(true);
    if (this.closing) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('connected', onConnected);
        resolve(ok);
      };
      const onConnected = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('connected', onConnected);
    });
  }

  /**
   * Publishes and resolves once the broker confirmed it. Mandatory by default: a message no queue
   * takes is returned by the broker and rejects with {@link UnroutableError}, so its sender keeps
   * its source. Rejects (TransientError) if not confirmed.
   */
  async publish(exchange: string, m: EncodedMessage, mandatory = true): Promise<void> {
    while (this.inFlightPublishes >= this.window) {
      await new Promise<void>((resolve) => this.windowWaiters.push(resolve));
    }
    if (this.drained) await this.drained;
    const ch = this.pubChannel;
    if (!ch || this.state !== 'CONNECTED') {
      throw new TransientError('not connected to the broker', 'BROKER_DISCONNECTED');
    }
    this.inFlightPublishes++;
    const pending: PendingPublish | undefined = mandatory
      ? { exchange, routingKey: m.routingKey, messageId: m.options.messageId }
      : undefined;
    if (pending) this.pendingMandatory.push(pending);
    try {
      await new Promise<void>((resolve, reject) => {
        let ok: boolean;
        try {
          ok = ch.publish(exchange, m.routingKey, m.content, { ...m.options, mandatory }, (err) => {
            if (err) {
              // amqplib fails the callbacks of a closing channel before our own 'close' listener
              // runs: look once the close has been handled, to tell a broker's basic.nack (the
              // queue refused it, e.g. full with reject-publish) from a publish lost with its channel.
              setImmediate(() =>
                reject(
                  this.closedChannels.has(ch)
                    ? new TransientError('publish not confirmed: the channel closed', 'BROKER_DISCONNECTED')
                    : new TransientError(`publish refused by the broker (basic.nack): ${String(err)}`, 'BROKER_NACK'),
                ),
              );
            } else if (pending?.returned) reject(new UnroutableError(exchange, m.routingKey, pending.returned));
            else resolve();
          });
        } catch (err) {
          reject(
            new TransientError(`publish failed: ${(err as Error).message}`, 'BROKER_DISCONNECTED', { cause: err }),
          );
          return;
        }
        if (!ok && !this.drained) {
          this.drained = Promise.race([once(this, 'drain'), once(this, 'disconnected')]).finally(() => {
            this.drained = undefined;
          });
        }
      });
    } finally {
      if (pending) {
        const i = this.pendingMandatory.indexOf(pending);
        if (i >= 0) this.pendingMandatory.splice(i, 1);
      }
      this.inFlightPublishes = Math.max(0, this.inFlightPublishes - 1);
      this.windowWaiters.shift()?.();
    }
  }

  /** Opens a channel on the current connection; the caller closes it. A failed passive check closes it too. */
  async openChannel(): Promise<Channel> {
    if (!this.model) throw new TransientError('not connected to the broker', 'BROKER_DISCONNECTED');
    const ch = await this.model.createChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  /** Runs `fn` on a short-lived channel (queue inspection, purge, get). */
  async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    if (!this.model) throw new TransientError('not connected to the broker', 'BROKER_DISCONNECTED');
    const ch = await this.model.createChannel();
    ch.on('error', () => undefined);
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Closes consumers, waits for their handlers, then the connection. Safe to call many times. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.retryWait?.wake();
      try {
        await this.cancelConsumers();
      } catch {
        /* channel already gone */
      }
      await this.drainHandlers();
      try {
        await this.pubChannel?.waitForConfirms();
      } catch {
        /* unconfirmed publishes are reported to their callers */
      }
      await Promise.allSettled(this.consumerChannels.map(({ ch }) => ch.close()));
      try {
        await this.model?.close();
      } catch {
        /* already closed */
      }
      this.state = 'CLOSED';
    })();
    return this.closing;
  }
}
