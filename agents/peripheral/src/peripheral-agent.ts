import { Cron } from 'croner';
import {
  BrokerConnection,
  brokerUserOf,
  type AgentState,
  type ConfigOrigin,
  MessageRejectedError,
  Topology,
  decodeMessage,
  errorInfo,
  isTransientError,
  runWithRetry,
  tlsSocketOptions,
  type DecodedMessage,
  type Delivery,
  type Logger,
} from '@sitesync/protocol';
import {
  Database,
  ROW_STATE_TABLE,
  TableStatistics,
  changeTrackingInstalled,
  installChangeTracking,
  uninstallChangeTracking,
} from '@sitesync/db';
import type { PeripheralConfig } from '@sitesync/protocol';
import { RunLog } from './run-log';
import { SyncSession, type SessionResult } from './sync-session';
import { PeripheralMetrics } from './metrics';
import { PipelineCache } from './pipeline-cache';
import { SessionAcks } from './session-acks';
import { encodeSiteMessage } from './site-message';
import { SiteInterventions } from './interventions/site-interventions';
import { SiteVerification } from './site-verification';

/** Sessions re-send the procedure catalogue and unanswered transfers at most this often (every (re)connect does too). */
export const RESUME_INTERVAL_MS = 60_000;

/** The row-state columns sessions filter on (see `ChangeScanner.unacknowledgedKeys`). */
const ROW_STATE_FILTER_COLUMNS = ['pipeline', 'pending_batch'];

/**
 * The site agent: owns the site database, the broker connection and the site queue consumer
 * (acks from the central), and runs sync sessions on a schedule or once.
 */
export class PeripheralAgent {
  state: AgentState = 'STARTING';
  readonly topology: Topology;
  readonly metrics = new PeripheralMetrics();
  private db: Database | undefined;
  private broker: BrokerConnection | undefined;
  private runLog: RunLog | undefined;
  private cron: Cron | undefined;
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<SessionResult> | undefined;
  /** Resolved at start; sessions re-resolve (staging tables may be recreated). */
  private pipelines: PipelineCache | undefined;
  private acks: SessionAcks | undefined;
  /** The row state's planner statistics, refreshed after sessions that marked many rows. */
  private rowStateStatistics: TableStatistics | undefined;
  private siteInterventions: SiteInterventions | undefined;
  private verification: SiteVerification | undefined;
  private transferTimer: NodeJS.Timeout | undefined;
  private interventionsResumedAt = 0;
  private closing: Promise<void> | undefined;

  constructor(
    readonly config: PeripheralConfig,
    private readonly log: Logger,
    /** Where the config's keys came from, for errors to name (`loadPeripheralConfigWithOrigin`). */
    private readonly origin?: ConfigOrigin,
  ) {
    this.topology = new Topology({ prefix: config.amqp.prefix, deliveryLimit: config.amqp.deliveryLimit });
  }

  /** The broker user stamped into `user_id`. */
  get userId(): string | undefined {
    return this.config.amqp.userId ?? brokerUserOf(this.config.amqp.url);
  }

  /**
   * Opens the database, validates every pipeline against the live schema (a bad table or column
   * fails here, before anything is sent), and connects to the broker.
   * With `requireBroker` false the agent starts without the broker and keeps retrying.
   */
  async start(opts: { requireBroker?: boolean } = {}): Promise<void> {
    try {
      this.db = await Database.open(this.config.db.url, { role: 'site', urlSource: this.origin?.whereSet('db.url') });
      this.pipelines = new PipelineCache(this.db, this.config.pipelines);
      this.acks = new SessionAcks(this.db, this.pipelines, this.metrics);
      this.rowStateStatistics = new TableStatistics(this.db, (table, err) =>
        this.log.warn({ table, err: errorInfo(err) }, 'could not refresh the planner statistics of the row state'),
      );
      for (const resolved of await this.pipelines.resolve(true)) {
        // (Re)creates the triggers at every start: a DBA may have dropped them; the next session
        // then runs a full scan if they are new.
        if (resolved.config.changeTracking === 'triggers') await installChangeTracking(this.db, resolved);
        // Tracking turned off: drop the triggers, or they would fill a queue no session empties.
        else if (await changeTrackingInstalled(this.db, resolved.name)) {
          await uninstallChangeTracking(this.db, resolved);
          this.log.info({ pipeline: resolved.name }, 'change tracking removed: sessions re-hash the whole table');
        }
      }
      this.runLog = new RunLog(this.db);
      this.metrics.lastCompleteStart = await this.runLog.lastCompleteStart();
      this.siteInterventions = new SiteInterventions(this.db, this.config.siteId, (type, body) =>
        this.broker!.publish(
          this.topology.up,
          encodeSiteMessage(type, body, { siteId: this.config.siteId, userId: this.userId }),
        ),
      );
      this.verification = new SiteVerification({
        db: this.db,
        pipelines: this.pipelines,
        sender: { siteId: this.config.siteId, userId: this.userId },
        log: this.log,
        publish: (m) => this.broker!.publish(this.topology.up, m),
        runSession: () => this.runSession(),
        currentSession: () => this.current,
      });
      this.broker = new BrokerConnection({
        url: this.config.amqp.urls,
        name: `sitesync-peripheral-${this.config.siteId}${this.config.amqp.prefix ? ` (${this.config.amqp.prefix})` : ''}`,
        log: this.log,
        confirmWindow: this.config.amqp.confirmWindow,
        socketOptions: tlsSocketOptions(this.config.amqp),
        setup: async (_ch, open) => {
          await this.topology.ensureSite(open, this.config.siteId);
        },
      });
      this.broker.on('disconnected', () => this.metrics.reconnects.inc());
      // On every (re)connect: tell the central what procedures this site holds, and resume transfers.
      this.broker.on('connected', () => void this.resumeInterventions());
      await this.broker.consume({
        queue: this.topology.siteQueue(this.config.siteId),
        prefetch: 32,
        handler: (d) => this.onSiteMessage(d),
      });
      if (opts.requireBroker === false) void this.broker.connectWithRetry().catch(() => undefined);
      else await this.broker.connect();
      this.state = 'RUNNING';
      this.transferTimer = setInterval(() => {
        if (this.broker?.connected) {
          this.siteInterventions!.publishTransfers().catch((err: unknown) =>
            this.log.warn({ err: errorInfo(err) }, 'sending transfers'),
          );
        }
      }, this.config.transferPollSeconds * 1000);
      this.transferTimer.unref();
    } catch (err) {
      this.state = 'FAILED';
      await this.close();
      throw err;
    }
  }

  private async resumeInterventions(): Promise<void> {
    this.interventionsResumedAt = Date.now();
    try {
      await this.siteInterventions!.sendCatalogue();
      await this.siteInterventions!.publishTransfers({ resendOpen: true });
    } catch (err) {
      this.log.warn({ err: errorInfo(err) }, 'sending catalogue and transfers after connect');
    }
  }

  /** Procedures and interventions of this site (also for `sync-peripheral transfer` and tests). */
  get interventions(): SiteInterventions | undefined {
    return this.siteInterventions;
  }

  /** Acks, procedures and interventions from the central. */
  private async onSiteMessage(d: Delivery): Promise<void> {
    const queue = this.topology.siteQueue(this.config.siteId);
    let m: DecodedMessage | undefined;
    try {
      m = decodeMessage(d.msg, [
        'batch.ack',
        'session.ack',
        'procedure.published',
        'intervention.accepted',
        'intervention.rejected',
        'intervention.deliver',
        'verify.request',
        'resync.request',
      ]);
      const decoded = m;
      await runWithRetry(() => this.applyCentralMessage(decoded), {
        isStopping: () => this.state === 'STOPPING' || this.state === 'STOPPED',
        log: this.log,
        context: { messageId: m.messageId, type: m.type },
      });
      d.settle('ack');
    } catch (err) {
      if (!(err instanceof MessageRejectedError) && (this.state !== 'RUNNING' || isTransientError(err))) {
        d.settle('requeue');
        return;
      }
      const reason = err instanceof MessageRejectedError ? err.reason : 'bad-content';
      const text = err instanceof Error ? err.message : String(err);
      // Rejected without requeue, the broker moves it to this site's dead-letter queue (its queue's
      // own dead-letter arguments): a site's user has no write on any dead-letter exchange.
      this.log.warn(
        { reason, err: text, messageId: d.msg.properties.messageId, type: m?.type, queue },
        'dead-lettering',
      );
      this.metrics.deadLetters.inc({ reason });
      d.settle('drop');
    }
  }

  /** Hands each message to the module that owns it: acks to the session's ack path, the rest to SiteInterventions. */
  private async applyCentralMessage(m: DecodedMessage): Promise<void> {
    switch (m.type) {
      case 'batch.ack':
        return this.acks!.onBatchAck(m);
      case 'session.ack':
        return this.acks!.onSessionAck(m);
      case 'procedure.published':
        return this.siteInterventions!.onProcedurePublished(m);
      case 'intervention.accepted':
        return this.siteInterventions!.onAccepted(m);
      case 'intervention.rejected':
        return this.siteInterventions!.onRejected(m);
      case 'intervention.deliver':
        return this.siteInterventions!.onDeliver(m);
      // syncctl verify --site / syncctl resync: answered, never retried (see SiteVerification)
      case 'verify.request':
        return this.verification!.onVerifyRequest(m);
      case 'resync.request':
        return this.verification!.onResyncRequest(m);
      default:
        throw new MessageRejectedError('unknown-type', `unexpected message type ${m.type}`, { messageId: m.messageId });
    }
  }

  /** Runs one session now. Concurrent calls share the running session. */
  runSession(): Promise<SessionResult> {
    if (!this.db || !this.broker || !this.runLog || !this.pipelines || !this.acks) {
      return Promise.reject(new Error('agent not started'));
    }
    if (!this.current && this.broker.connected && Date.now() - this.interventionsResumedAt >= RESUME_INTERVAL_MS) {
      // Each cycle also reports the procedure catalogue (the central re-sends what the site lacks)
      // and re-sends unanswered transfers (the central answers a repeat the same way); at most once
      // a minute, so that sessions on a short schedule do not repeat it every time.
      void this.resumeInterventions();
    }
    this.current ??= new SyncSession({
      config: this.config,
      db: this.db,
      broker: this.broker,
      topology: this.topology,
      log: this.log,
      runLog: this.runLog,
      userId: this.userId,
      acks: this.acks,
      pipelines: this.pipelines,
      metrics: this.metrics,
    })
      .run()
      .then((result) => {
        // Each header marked is written twice (pending, then acknowledged). Analyzed: the columns of
        // "rows not acknowledged yet" (ChangeScanner.unacknowledgedKeys), read by every session.
        const { headers, deletions } = result.totals;
        this.rowStateStatistics?.wrote(ROW_STATE_TABLE, 2 * (headers + deletions), ROW_STATE_FILTER_COLUMNS);
        return result;
      })
      .finally(() => {
        this.current = undefined;
      });
    return this.current;
  }

  /** Starts the configured schedule (cron or interval); the first session runs at once. */
  schedule(): void {
    const s = this.config.schedule;
    const tick = () => {
      if (this.state !== 'RUNNING' || this.current) return;
      this.runSession().catch((err: unknown) => this.log.warn({ err: errorInfo(err) }, 'session not run'));
    };
    if ('cron' in s) this.cron = new Cron(s.cron, { protect: true }, tick);
    else {
      const loop = () => {
        tick();
        this.timer = setTimeout(loop, s.intervalSeconds * 1000);
      };
      loop();
    }
  }

  get database(): Database | undefined {
    return this.db;
  }

  get brokerConnection(): BrokerConnection | undefined {
    return this.broker;
  }

  /** Stops the schedule, lets a running session finish, closes broker and database. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.state !== 'FAILED') this.state = 'STOPPING';
      this.cron?.stop();
      if (this.timer) clearTimeout(this.timer);
      if (this.transferTimer) clearInterval(this.transferTimer);
      // A session waiting for acks ends now as unconfirmed; its acks are applied by the next start.
      this.acks?.abortAll();
      try {
        await this.current;
      } catch {
        /* reported by the session */
      }
      try {
        await this.broker?.close();
      } catch (err) {
        this.log.warn({ err: errorInfo(err) }, 'closing broker connection');
      }
      await this.rowStateStatistics?.settled();
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
