import {
  type AgentState,
  type ConfigOrigin,
  BrokerConnection,
  MessageRejectedError,
  Topology,
  decodeMessage,
  encodeMessage,
  errorInfo,
  isTransientError,
  runWithRetry,
  tlsSocketOptions,
  isDecoded,
  UnroutableError,
  type SessionRefusalReason,
  type DecodedMessage,
  type Delivery,
  type Logger,
  type MessageType,
} from '@sitesync/protocol';
import { Database, SITE_TABLE, TableStatistics } from '@sitesync/db';
import type { CentralConfig } from './config';
import { BatchMerger } from './merge/batch-merger';
import { SessionTracker } from './merge/session-tracker';
import { TargetTables } from './merge/target-tables';
import { CentralMetrics } from './metrics';
import { CentralInterventions } from './interventions/central-interventions';
import { verifySender, type VerifiedMessage } from './merge/inbox';
import { findSiteRows } from './merge/site-registry';
import { readSiteStatus } from './status/site-status';
import type { HandlerContext } from './handlers/handler-context';
import { handleRejectedBatch } from './handlers/batch-handler';
import { handleMessage, INTERVENTION_MESSAGE_TYPES, SYNC_MESSAGE_TYPES } from './handlers/message-handlers';
import type { Outgoing } from './handlers/outgoing';
import { MessageSigner } from './dlq/message-signer';
import { loadSitesOfUser, type DeadLetterContext } from './dlq/dead-letters';
import { publishDeadLetter, routedSite, senderOf, SiteDeadLettersFullError, type Sender } from './dlq/dead-lettering';
import { outgoing, type Outgoing as OutgoingMessage } from './handlers/outgoing';
import { RetentionPurge } from './retention/retention-purge';

export const APP_ID = 'sitesync-central';

/**
 * The central agent: consumes the central sync queue with manual acks, merges each batch in one
 * transaction, dead-letters bad messages with a reason, and publishes acknowledgements.
 */
export class CentralAgent {
  state: AgentState = 'STARTING';
  readonly topology: Topology;
  readonly metrics = new CentralMetrics();
  private db: Database | undefined;
  private broker: BrokerConnection | undefined;
  private interventions: CentralInterventions | undefined;
  /** What the handlers work with; set once started. */
  private handlers: HandlerContext | undefined;
  private signer: MessageSigner | undefined;
  /** The target tables' planner statistics (refreshed beside the merges). */
  private statistics: TableStatistics | undefined;
  private dispatchTimer: NodeJS.Timeout | undefined;
  private dispatching: Promise<void> | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private purging: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Per site, the end of its intervention messages in hand (see `onInterventionMessage`). */
  private readonly siteTails = new Map<string, Promise<void>>();

  constructor(
    readonly config: CentralConfig,
    private readonly log: Logger,
    /** Where the config's keys came from, for errors to name (`loadCentralConfigWithOrigin`). */
    private readonly origin?: ConfigOrigin,
  ) {
    this.topology = new Topology({
      prefix: config.amqp.prefix,
      deliveryLimit: config.amqp.deliveryLimit,
      siteDeadLetterMaxMessages: config.limits.siteDeadLetterMaxMessages,
      siteDeadLetterMaxBytes: config.limits.siteDeadLetterMaxBytes,
    });
  }

  /** What reading and replaying dead letters needs (the key and the sites are in the database): only once started. */
  async deadLetterContext(): Promise<DeadLetterContext> {
    if (!this.signer || !this.db) throw new Error('the central agent is not started');
    return { topology: this.topology, signer: this.signer, sitesOfUser: await loadSitesOfUser(this.db) };
  }

  get database(): Database | undefined {
    return this.db;
  }

  get brokerConnection(): BrokerConnection | undefined {
    return this.broker;
  }

  /**
   * Opens the database (running migrations), connects, declares the topology and starts consuming.
   * Waits for the broker (retrying) unless `requireBroker` is false: then it connects in the
   * background, and a broker that refuses the user settles `brokerConnection.refused`.
   */
  async start(opts: { requireBroker?: boolean } = {}): Promise<void> {
    try {
      this.db = await Database.open(this.config.db.url, {
        role: 'central',
        urlSource: this.origin?.whereSet('db.url'),
      });
      this.signer = await MessageSigner.forDatabase(this.db);
      this.statistics = new TableStatistics(this.db, (table, err) =>
        this.log.warn({ table, err: errorInfo(err) }, 'could not refresh the planner statistics of a target table'),
      );
      const targets = new TargetTables(
        this.db,
        (table, index, err) =>
          this.log.warn({ table, index, err: errorInfo(err) }, 'could not add its index to a target table'),
        (table, columns, err) =>
          err === undefined
            ? this.log.info({ table, columns }, 'widened target table columns to the site types')
            : this.log.warn(
                { table, columns, err: errorInfo(err) },
                'could not widen target table columns to the site types (values they cannot hold are refused)',
              ),
      );
      this.interventions = new CentralInterventions(this.db, this.config.resendAfterSeconds * 1000);
      this.handlers = {
        merger: new BatchMerger(this.db, targets, this.statistics),
        sessions: new SessionTracker(this.db),
        interventions: this.interventions,
        metrics: this.metrics,
      };
      const a = this.config.amqp;
      this.broker = new BrokerConnection({
        url: a.urls,
        name: `sitesync-central${a.prefix ? ` (${a.prefix})` : ''}`,
        log: this.log,
        confirmWindow: a.confirmWindow,
        socketOptions: tlsSocketOptions(a),
        setup: (ch, open) => this.topology.declareCentral(ch, open),
      });
      this.broker.on('disconnected', () => this.metrics.reconnects.inc());
      await this.broker.consume({
        queue: this.topology.centralSyncQueue,
        prefetch: this.config.prefetch,
        handler: (d) => this.onMessage(d),
      });
      await this.broker.consume({
        queue: this.topology.centralInterventionQueue,
        prefetch: this.config.prefetch,
        handler: (d) => this.onInterventionMessage(d),
      });
      const consuming = () => this.log.info({ queue: this.topology.centralSyncQueue }, 'central agent consuming');
      if (opts.requireBroker === false) void this.broker.connectWithRetry().then(consuming, () => undefined);
      else await this.broker.connectWithRetry().then(consuming);
      this.state = 'RUNNING';
      this.metrics.source = {
        siteStatus: () => readSiteStatus(this.db!, { staleAfterSeconds: this.config.staleAfterSeconds }),
        queueDepths: () => this.queueDepths(),
      };
      this.dispatchTimer = setInterval(() => void this.dispatchNow(), this.config.dispatchIntervalMs);
      this.dispatchTimer.unref();
      void this.purgeNow();
      this.retentionTimer = setInterval(() => void this.purgeNow(), this.config.retention.intervalMinutes * 60_000);
      this.retentionTimer.unref();
    } catch (err) {
      this.state = 'FAILED';
      await this.close();
      throw err;
    }
  }

  /** Ready messages in the central's queues and in each registered site's queues (dead-letter queues too). */
  async queueDepths(): Promise<Map<string, number>> {
    const t = this.topology;
    const sites = await this.db!.query<{ id_efector: number }>(
      `SELECT DISTINCT id_efector FROM ${this.db!.dialect.quote(SITE_TABLE)}`,
    );
    const work = [
      t.centralSyncQueue,
      t.centralInterventionQueue,
      ...sites.map((s) => t.siteQueue(Number(s.id_efector))),
    ];
    const depths = new Map<string, number>();
    for (const q of work.flatMap((w) => [w, t.deadLetterQueue(w)])) {
      // A site registered but not provisioned has no queue yet: leave it out.
      const n = await this.broker!.withChannel((ch) => ch.checkQueue(q)).then(
        (r) => r.messageCount,
        () => undefined,
      );
      if (n !== undefined) depths.set(q, n);
    }
    return depths;
  }

  private get stopping(): boolean {
    return this.state === 'STOPPING' || this.state === 'STOPPED';
  }

  /**
   * Decodes, checks the sender, hands the message to the handler of its type and publishes what it
   * returns (with retries), then settles the delivery: ack on success; dead-letter (with a reason) a
   * bad message or one that cannot be applied; requeue only when shutting down.
   */
  private async process(d: Delivery, queue: string, expected: readonly MessageType[]): Promise<void> {
    let m: DecodedMessage | undefined;
    /** Set once the sender was checked: only then does a rejection count against the sender's session. */
    let verified: VerifiedMessage | undefined;
    // A dead letter replayed with the central's credentials speaks for its original sender, when the
    // central's own signature on the replay says so; never on a header alone.
    const sender = senderOf(d.msg, this.signer!);
    try {
      m = decodeMessage(d.msg, expected, this.config.limits);
      if (sender.user !== m.userId) m = { ...m, userId: sender.user };
      const decoded = m;
      await runWithRetry(
        async () => {
          verified = undefined;
          const v = await verifySender(this.db!, decoded);
          verified = v;
          await this.publishAll(await handleMessage(v, this.handlers!));
        },
        {
          isStopping: () => this.stopping,
          log: this.log,
          onRetry: () => this.metrics.retries.inc(),
          context: { messageId: m.messageId, type: m.type, siteId: m.siteId },
        },
      );
      d.settle('ack');
    } catch (err) {
      if (err instanceof MessageRejectedError) {
        if (await this.deadLetter(d, queue, err, verified, sender)) await this.refuseSession(d, m, err, sender);
      } else if (this.stopping || isTransientError(err)) {
        d.settle('requeue');
      } else {
        // Not transient and not going away on retry (a constraint the data violates, a key too long
        // for the central's column...): park it with the reason instead of looping.
        this.log.error({ err: errorInfo(err), messageId: m?.messageId, type: m?.type }, 'message cannot be applied');
        const rejected = new MessageRejectedError('bad-content', `cannot be applied: ${(err as Error).message}`, {
          ...(m ? { messageId: m.messageId, siteId: m.siteId, type: m.type } : {}),
        });
        await this.deadLetter(d, queue, rejected, verified, sender);
      }
    }
  }

  private onMessage(d: Delivery): Promise<void> {
    return this.process(d, this.topology.centralSyncQueue, SYNC_MESSAGE_TYPES);
  }

  /**
   * Parks a message the central cannot use in its sender's dead-letter queue, then acks it. If the
   * copy is not routed (or not confirmed), the original is requeued: it is never acked unparked. A
   * site whose own dead-letter queue is full has its message dropped and counted instead: its cap
   * bounds what it can park, and it keeps its rows until they are acknowledged. `verified`: the
   * message, if its sender was checked before it was rejected. True once the original is acked.
   */
  private async deadLetter(
    d: Delivery,
    queue: string,
    err: MessageRejectedError,
    verified: VerifiedMessage | undefined,
    sender: Sender,
  ): Promise<boolean> {
    const ctx = {
      reason: err.reason,
      err: err.message,
      messageId: d.msg.properties.messageId,
      routingKey: d.msg.fields.routingKey,
    };
    this.log.warn(ctx, 'dead-lettering message');
    try {
      const dlq = await publishDeadLetter(
        this.broker!,
        this.topology,
        this.signer!,
        { queue, msg: d.msg, sender },
        err.reason,
        err.message,
      );
      this.metrics.deadLetters.inc({ reason: err.reason });
      this.log.debug({ ...ctx, queue: dlq }, 'dead-lettered');
    } catch (e) {
      if (e instanceof SiteDeadLettersFullError) {
        this.log.error(
          { ...ctx, site: e.site, queue: e.queue },
          "the site's dead-letter queue is full: message dropped",
        );
        this.metrics.deadLettersDropped.inc({ site: String(e.site), reason: err.reason });
      } else {
        this.log.warn({ ...ctx, err: errorInfo(e) }, 'could not dead-letter the message; redelivering');
        // Not at once: whatever kept the copy from landing (a queue being re-created, a broker alarm) needs a moment.
        await new Promise((r) => setTimeout(r, 1000));
        d.settle('requeue');
        return false;
      }
    }
    // A rejected batch counts against its session (so the site learns the session is incomplete),
    // recorded before the ack: a crash in between redelivers it, and recording is idempotent.
    // Only once the sender is verified: a forged batch must not touch the victim's session.
    if (verified?.type === 'batch') {
      try {
        await this.publishAll(await handleRejectedBatch(verified, err.reason, this.handlers!));
      } catch (e) {
        this.log.warn({ err: errorInfo(e) }, 'could not record rejected batch; redelivering');
        d.settle('requeue');
        return false;
      }
    }
    d.settle('ack');
    return true;
  }

  /**
   * Tells a site that its session is refused as a whole (it is not registered, or disabled), so that
   * it logs what to do instead of waiting for an ack that never comes. Answers only a site's own,
   * first-hand `session.started`: the routing key (which the broker lets a site publish only with its
   * own id) must name the site the body claims, and a replay is not answered. Best effort after the
   * dead letter is parked: a site whose queue does not exist (not provisioned) makes the publish
   * unroutable, which is logged and dropped, never retried.
   */
  private async refuseSession(
    d: Delivery,
    m: DecodedMessage | undefined,
    err: MessageRejectedError,
    sender: Sender,
  ): Promise<void> {
    const reason = err.reason;
    if (reason !== 'unknown-site' && reason !== 'site-disabled') return;
    if (!m || !isDecoded(m, 'session.started') || sender.replays > 0) return;
    if (routedSite(d.msg, this.topology) !== m.siteId || m.body.siteId !== m.siteId) return;
    // A registered site that names a pipeline it has no row for is told which one.
    const known = reason === 'unknown-site' ? await findSiteRows(this.db!, m.siteId).catch(() => []) : [];
    const missing = known.length
      ? m.body.pipelines.map((p) => p.name).filter((name) => !known.some((r) => r.pipeline === name))
      : [];
    const zero = { batches: 0, headers: 0, details: 0, deletions: 0 };
    const refusal: OutgoingMessage = outgoing(
      m.siteId,
      'session.ack',
      {
        sessionId: m.body.sessionId,
        siteId: m.siteId,
        status: 'incomplete',
        expected: zero,
        received: zero,
        rejectedBatches: 0,
        refused: {
          reason: reason satisfies SessionRefusalReason,
          message: err.message.slice(0, 1000),
          ...(missing.length ? { pipelines: missing } : {}),
        },
      },
      m.body.sessionId,
    );
    const ctx = { siteId: m.siteId, sessionId: m.body.sessionId, reason };
    try {
      await this.publishAll([refusal]);
      this.log.info(ctx, 'session refused: the site was told');
    } catch (e) {
      if (e instanceof UnroutableError)
        this.log.warn({ ...ctx, routingKey: e.routingKey }, 'session refused; the site has no queue to be told in');
      else this.log.warn({ ...ctx, err: errorInfo(e) }, 'session refused; could not tell the site');
    }
  }

  /** The central's procedure/intervention service (operator actions go through it too). */
  get interventionService(): CentralInterventions | undefined {
    return this.interventions;
  }

  private onInterventionMessage(d: Delivery): Promise<void> {
    // One site's messages are handled one at a time, in the order the queue delivered them: the
    // transfer gate reads what the site's catalogue recorded, so a catalogue followed by a transfer on
    // a version it lists must be judged in that order, which concurrent handlers (prefetch) would not
    // guarantee. The key (the routing key's site part) only orders; `process` authenticates the sender.
    const key = d.msg.fields.routingKey.split('.', 1)[0] ?? '';
    const run = (this.siteTails.get(key) ?? Promise.resolve()).then(() =>
      this.process(d, this.topology.centralInterventionQueue, INTERVENTION_MESSAGE_TYPES),
    );
    const tail: Promise<void> = run
      .catch(() => undefined)
      .then(() => {
        if (this.siteTails.get(key) === tail) this.siteTails.delete(key);
      });
    this.siteTails.set(key, tail);
    return run;
  }

  /** Runs the transfer/procedure dispatcher once (also on a timer); never two at once. */
  dispatchNow(): Promise<void> {
    // Without the broker nothing could be sent: wait for it rather than fail (and log) every interval.
    if (!this.interventions || this.state !== 'RUNNING' || !this.broker?.connected) return Promise.resolve();
    this.dispatching ??= this.interventions
      .dispatch()
      .then((out) => this.publishAll(out))
      .catch((err: unknown) => this.log.warn({ err: errorInfo(err) }, 'dispatch failed; will retry'))
      .finally(() => {
        this.dispatching = undefined;
      });
    return this.dispatching;
  }

  /**
   * Removes the control tables' old rows (see retention/retention-purge.ts), at start and on a timer;
   * never two at once here, and only one central of several (the others find its lock and skip).
   */
  purgeNow(): Promise<void> {
    if (!this.db || this.state !== 'RUNNING') return Promise.resolve();
    const purge = new RetentionPurge(this.db, this.config.retention, () => this.stopping);
    this.purging ??= purge
      .run()
      .then((removed) => {
        if (!removed) this.log.debug('retention purge skipped: another central is running it');
        else if (Object.values(removed).some((n) => n > 0))
          this.log.info({ removed }, 'retention purge removed old rows');
        else this.log.debug({ removed }, 'retention purge found nothing to remove');
      })
      .catch((err: unknown) => this.log.warn({ err: errorInfo(err) }, 'retention purge failed; will retry'))
      .finally(() => {
        this.purging = undefined;
      });
    return this.purging;
  }

  /** Publishes what a handler returned, in order, each confirmed. */
  private async publishAll(out: readonly Outgoing[]): Promise<void> {
    for (const o of out) {
      await this.broker!.publish(
        this.topology.down,
        encodeMessage(o.type, o.body, { siteId: o.siteId, appId: APP_ID, correlationId: o.correlationId }),
      );
    }
  }

  /** Stops consuming, lets open transactions finish, closes channels, connection and database. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.state !== 'FAILED') this.state = 'STOPPING';
      if (this.dispatchTimer) clearInterval(this.dispatchTimer);
      if (this.retentionTimer) clearInterval(this.retentionTimer);
      await this.dispatching;
      await this.purging;
      try {
        await this.broker?.close();
      } catch (err) {
        this.log.warn({ err: errorInfo(err) }, 'closing broker connection');
      }
      await this.statistics?.settled();
      try {
        await this.db?.close();
      } catch (err) {
        this.log.warn({ err: errorInfo(err) }, 'closing database');
      }
      if (this.state !== 'FAILED') this.state = 'STOPPED';
    })();
    return this.closing;
  }
}
