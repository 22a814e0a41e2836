/**
 * A batch at the site, from the row to the central's ack, in four files:
 *
 * 1. change-scanner.ts: reads a pipeline's headers a page at a time, hashes each with its details and
 *    compares with the row state (row-state.ts): changed, new and deleted headers come out dirty.
 * 2. this file: packs dirty headers into bounded batches; for each, marks its rows pending under the
 *    batch's message id (`markPending`, row-state.ts), then publishes it with a confirm; each confirmed
 *    batch is counted in the run log's sent columns (`SentCounts`, run-log.ts). At the end it
 *    publishes `session.completed`, waits for every confirm (no publish waits for the one before
 *    it: `PendingConfirms`), then for the acks.
 * 3. session-acks.ts: the agent hands it every `batch.ack` and `session.ack` from the site queue. A
 *    batch ack sets TargetHash := the hash sent and counts the headers in the run log (run-log.ts),
 *    in one transaction; the session ack, once every batch it counts is applied, resolves the
 *    waiting session.
 * 4. the session then runs the `after` hook and writes its outcome into the run log.
 *
 * The batch's message id is the envelope's `message_id`, the `batchMessageId` of its ack and the
 * `pending_batch` column of the row state; the code calls it `batchMessageId` throughout.
 */
import { randomUUID } from 'node:crypto';
import {
  encodeKey,
  errorInfo,
  type BrokerConnection,
  type EncodedMessage,
  type HeaderChange,
  type Logger,
  type MessageBody,
  type SessionAck,
  type SessionRefusalReason,
  type SessionTotals,
  SyncError,
  type Topology,
} from '@sitesync/protocol';
import {
  claimChangedKeys,
  lastFullScan,
  recordFullScan,
  releaseChangedKeys,
  type Database,
  type ResolvedPipeline,
} from '@sitesync/db';
import { ChangeScanner, type DirtyHeader } from './change-scanner';
import { markPending, writeInTableSourceHash } from './row-state';
import { SentCounts, SessionLockedError, type RunLog, type SessionStatus } from './run-log';
import { encodeSiteMessage } from './site-message';
import type { PeripheralConfig } from '@sitesync/protocol';
import type { SessionAcks } from './session-acks';
import type { PipelineCache } from './pipeline-cache';

/**
 * The central refused the whole session: the site is not registered there, or disabled. The message
 * says what the operator has to run at the central.
 */
export class SessionRefusedError extends SyncError {
  override name = 'SessionRefusedError';
  readonly reason: SessionRefusalReason;
  /** The central's own explanation. */
  readonly centralMessage: string;
  constructor(siteId: number, refused: NonNullable<SessionAck['refused']>) {
    super(
      refused.reason === 'unknown-site'
        ? refused.pipelines?.length
          ? `site ${siteId} has no pipeline ${refused.pipelines.join(', ')} registered at the central: run ` +
            refused.pipelines
              .map((p) => `"syncctl sites add ${siteId} --pipeline ${p} --header-table <table>"`)
              .join(', ') +
            ` there; the session was refused and nothing of it was merged`
          : `site ${siteId} is not registered at the central: run "syncctl sites add ${siteId}" there; the session was refused and nothing of it was merged`
        : `site ${siteId} is disabled at the central: the session was refused and nothing of it was merged; "syncctl sites enable ${siteId}" at the central re-enables it`,
      'SESSION_REFUSED',
    );
    this.reason = refused.reason;
    this.centralMessage = refused.message;
  }
}

/**
 * How long a session waits for the broker to come back when it loses the connection while
 * publishing (a broker restart, a cluster node stopping): past it, the session fails and the next
 * one sends what is still pending.
 */
export const RECONNECT_WAIT_MS = 30_000;
/** Pause before publishing again after a reconnect. */
const RECONNECT_PAUSE_MS = 100;

/**
 * Rows of a pipeline's first batch in a session; each next batch may hold twice as many, up to
 * `batch.maxRows`. Over a hospital link the central starts merging once the first small batch has
 * crossed, instead of the first 5,000 rows, and merges while the rest is still on the wire; a large
 * load reaches full batches after a few.
 */
const FIRST_BATCH_ROWS = 500;

/** Messages published but not yet confirmed, per session: bounds memory whatever the table size. */
const MAX_BATCHES_IN_FLIGHT = 4;

/**
 * A session's publishes whose confirm has not come yet. A session does not stop for each confirm
 * (over a hospital link every wait is a round trip): `session.started`, the batches and
 * `session.completed` go out one after the other on the channel, in that order, and their
 * confirms are awaited together before the session waits for its acknowledgement. Every row a
 * batch carries was marked pending before it was published, so a publish that fails leaves its
 * rows to the next session. The first failure stops the session: `check` throws it, and so does
 * `settle` once every confirm is in.
 */
class PendingConfirms {
  private readonly open = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;

  add(publish: Promise<void>): void {
    const tracked: Promise<void> = publish
      .then(
        () => undefined,
        (err: unknown) => {
          this.failure ??= { err };
        },
      )
      .finally(() => this.open.delete(tracked));
    this.open.add(tracked);
  }

  get size(): number {
    return this.open.size;
  }

  check(): void {
    if (this.failure) throw this.failure.err;
  }

  /** Until one more confirm (or failure) came in. */
  async one(): Promise<void> {
    if (this.open.size > 0) await Promise.race(this.open);
  }

  async settle(): Promise<void> {
    await Promise.all([...this.open]);
    this.check();
  }
}

export interface SessionResult {
  sessionId: string;
  version: number;
  status: SessionStatus;
  /** What the session published; the run log holds what the broker confirmed (the same unless it failed). */
  totals: SessionTotals;
  /** Per pipeline: how it was read (`full` re-hash, or only the `changes` change tracking queued) and what it found. */
  scans: Array<{ pipeline: string; mode: 'full' | 'changes'; scanned: number; dirty: number; deleted: number }>;
  ack?: SessionAck;
  error?: string;
  durationMs: number;
}

/** What a session reports (PeripheralMetrics does it). */
export interface SessionMetrics {
  batchSent(pipeline: string, headers: number, rows: number, bytes: number): void;
  sessionFinished(r: SessionResult): void;
}

export interface SessionDeps {
  config: PeripheralConfig;
  db: Database;
  broker: BrokerConnection;
  topology: Topology;
  log: Logger;
  runLog: RunLog;
  userId: string | undefined;
  /** Applies the central's acks and resolves this session's wait for them. */
  acks: SessionAcks;
  /** The pipelines resolved against the live schema; told how the session ended. */
  pipelines: PipelineCache;
  metrics?: SessionMetrics;
}

/** One sync cycle of a site: steps 1-12 of docs/architecture.md "One session, end to end". */
export class SyncSession {
  readonly sessionId = randomUUID();
  private readonly totals: SessionTotals = { batches: 0, headers: 0, details: 0, deletions: 0 };
  /** The run log's sent counts, written as the broker confirms each batch. */
  private readonly sent: SentCounts;
  private readonly scans: SessionResult['scans'] = [];
  private readonly confirms = new PendingConfirms();
  /** Set when another agent took the lock (this one stalled past its TTL): stop before sending more. */
  private lockLost = false;

  /** Throws when the session must stop sending: its lock was taken, or the central refused it. */
  private assertMaySend(): void {
    if (this.lockLost)
      throw new SessionLockedError('the session lock expired and was taken by another agent; stopping');
    // The central refused the session already: sending the rest would only fill the site's rejects queue.
    const refused = this.deps.acks.refusal(this.sessionId);
    if (refused) throw new SessionRefusedError(this.deps.config.siteId, refused);
  }

  constructor(private readonly deps: SessionDeps) {
    this.sent = new SentCounts(deps.runLog, this.sessionId, (err) =>
      deps.log.warn({ err: errorInfo(err), sessionId: this.sessionId }, 'writing sent counts to the run log'),
    );
  }

  async run(): Promise<SessionResult> {
    const result = await this.runLocked();
    this.deps.pipelines.sessionFinished(result.status);
    this.deps.metrics?.sessionFinished(result);
    return result;
  }

  private async runLocked(): Promise<SessionResult> {
    const { config, runLog, log } = this.deps;
    const started = Date.now();
    const ttlMs = config.lockTtlSeconds * 1000;
    if (!(await runLog.acquireLock(ttlMs))) throw new SessionLockedError();
    // Renew the lock while the session runs; if this process dies, it expires after ttlMs.
    const heartbeat = setInterval(
      () => {
        runLog
          .acquireLock(ttlMs)
          .then((held) => {
            if (!held) this.lockLost = true;
          })
          .catch((err: unknown) => log.warn({ err: errorInfo(err) }, 'renewing session lock'));
      },
      Math.max(250, ttlMs / 3),
    );
    heartbeat.unref();
    let version = 0;
    try {
      const abandoned = await runLog.markAbandoned();
      if (abandoned > 0) log.warn({ abandoned }, 'earlier session(s) ended without finishing (agent stopped)');
      version = await runLog.nextVersion();
      const startedAt = new Date();
      await runLog.start(this.sessionId, version, startedAt);
      const slog = log.child({ sessionId: this.sessionId, version });
      slog.info('session started');
      let status: SessionStatus = 'failed';
      let ack: SessionAck | undefined;
      let error: string | undefined;
      this.deps.acks.begin(this.sessionId);
      try {
        await this.deps.broker.connect();
        await this.hook('before');
        await this.hook('legacy');
        const pipelines = await this.deps.pipelines.resolve();
        this.confirms.add(
          this.publish('session.started', {
            sessionId: this.sessionId,
            siteId: config.siteId,
            version,
            startedAt: startedAt.toISOString(),
            pipelines: pipelines.map((p) => p.shape),
          }),
        );
        for (const p of pipelines) await this.sendPipeline(p, version, slog);
        this.assertMaySend();
        this.confirms.add(
          this.publish('session.completed', {
            sessionId: this.sessionId,
            siteId: config.siteId,
            version,
            startedAt: startedAt.toISOString(),
            finishedAt: new Date().toISOString(),
            totals: this.totals,
          }),
        );
        await this.confirms.settle();
        ack = await this.deps.acks.wait(this.sessionId, config.ackTimeoutSeconds * 1000);
        if (ack?.refused) throw new SessionRefusedError(config.siteId, ack.refused);
        status = !ack ? 'unconfirmed' : ack.status === 'complete' ? 'ok' : 'incomplete';
        await this.hook('after');
      } catch (err) {
        error = (err as Error).message;
        if (err instanceof SessionRefusedError) {
          status = 'refused';
          // Not retried: the next scheduled session asks again (an operator has to act first).
          slog.error({ reason: err.reason, central: err.centralMessage }, err.message);
        } else {
          status = 'failed';
          slog.error({ err: errorInfo(err) }, 'session failed');
        }
      } finally {
        this.deps.acks.end(this.sessionId);
      }
      await this.sent.finish(status, error);
      slog.info({ status, ...this.totals, ms: Date.now() - started }, 'session finished');
      return {
        sessionId: this.sessionId,
        version,
        status,
        totals: { ...this.totals },
        scans: [...this.scans],
        ...(ack ? { ack } : {}),
        ...(error ? { error } : {}),
        durationMs: Date.now() - started,
      };
    } finally {
      clearInterval(heartbeat);
      await runLog.releaseLock().catch(() => undefined);
    }
  }

  private async hook(name: 'before' | 'legacy' | 'after'): Promise<void> {
    const sql = this.deps.config.hooks[name];
    if (!sql) return;
    try {
      await this.deps.db.query(sql);
    } catch (err) {
      throw new Error(`hook "${name}" failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private publish<T extends 'session.started' | 'session.completed' | 'batch'>(
    type: T,
    body: MessageBody<T>,
    batchMessageId?: string,
  ): Promise<void> {
    const m = encodeSiteMessage(
      type,
      body,
      { siteId: this.deps.config.siteId, userId: this.deps.userId },
      { ...(batchMessageId ? { messageId: batchMessageId } : {}), validate: type !== 'batch' },
    );
    // Counted now, so that nothing keeps the batch's rows alive while the publish waits for its
    // confirm: only the encoded buffer stays in flight (the rows would be promoted to the old
    // generation and make the heap grow with the size of the site).
    // (No closure may name `body`: V8 would keep it in the context the `then` callback shares.)
    const sent = type === 'batch' ? batchSummary(body as HeaderBatchBody, m.content.length) : undefined;
    return this.publishAcrossReconnects(m).then(() => {
      if (sent) this.deps.metrics?.batchSent(sent.pipeline, sent.headers, sent.rows, sent.bytes);
    });
  }

  /**
   * Publishes `m` and waits for its confirm; a publish lost with its connection (the broker, or a
   * cluster node, went away mid-session) is sent again, the same message with the same id, once
   * the connection is back within {@link RECONNECT_WAIT_MS}. Sending twice is harmless: the
   * central's inbox takes a message id once. The session was connected when it started
   * (`runLocked`), so a broker down from the start still fails it at once.
   */
  private async publishAcrossReconnects(m: EncodedMessage): Promise<void> {
    const broker = this.deps.broker;
    const deadline = Date.now() + RECONNECT_WAIT_MS;
    for (;;) {
      try {
        await broker.publish(this.deps.topology.up, m);
        return;
      } catch (err) {
        if (!(err instanceof SyncError) || err.code !== 'BROKER_DISCONNECTED') throw err;
        if (!(await broker.waitConnected(deadline - Date.now()))) throw err;
        // Connected already (only a channel was lost): let the connection settle, never spin.
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_PAUSE_MS));
        this.assertMaySend();
        this.deps.log.info(
          { sessionId: this.sessionId, messageId: m.options.messageId },
          'publishing again after a reconnect',
        );
      }
    }
  }

  /**
   * What a session reads of a pipeline: with change tracking, the keys its triggers queued plus the
   * keys not acknowledged yet; a full re-hash when tracking is off, was just installed, or the last
   * full scan is older than `fullScanHours`.
   */
  private async scanPlan(
    p: ResolvedPipeline,
    scanner: ChangeScanner,
    version: number,
  ): Promise<{ changes: AsyncGenerator<DirtyHeader>; tracked: boolean; full: boolean }> {
    if (p.config.changeTracking !== 'triggers') return { changes: scanner.scan(), tracked: false, full: true };
    const db = this.deps.db;
    // Claimed first, so that what changes during a full scan stays queued for the next session.
    const queued = await claimChangedKeys(db, p, version);
    const last = await lastFullScan(db, p.name);
    const hours = p.config.fullScanHours;
    const full = !last || (hours > 0 && Date.now() - last.getTime() > hours * 3_600_000);
    if (full) return { changes: scanner.scan(), tracked: true, full };
    const keys = new Map(queued.map((k) => [encodeKey(k), k]));
    for (const k of await scanner.unacknowledgedKeys()) keys.set(encodeKey(k), k);
    return { changes: scanner.scanKeys([...keys.values()]), tracked: true, full };
  }

  /**
   * Streams dirty headers into bounded batches (growing from {@link FIRST_BATCH_ROWS} rows to
   * `batch.maxRows`); each batch is marked pending, then published with confirms.
   */
  private async sendPipeline(p: ResolvedPipeline, version: number, log: Logger): Promise<void> {
    const { maxRows, maxBytes, pageSize } = this.deps.config.batch;
    const scanner = new ChangeScanner(this.deps.db, p, pageSize);
    const plan = await this.scanPlan(p, scanner, version);
    let changes: DirtyHeader[] = [];
    let rows = 0;
    let bytes = 0;
    let seq = 0;
    let batchRows = Math.min(maxRows, FIRST_BATCH_ROWS);

    const flush = async () => {
      if (changes.length === 0) return;
      const batch = changes;
      changes = [];
      rows = 0;
      bytes = 0;
      const batchMessageId = randomUUID();
      this.assertMaySend();
      const pending = batch.map((c) => ({ headerKey: c.headerKey, hash: c.op === 'upsert' ? c.hash : null }));
      await this.deps.db.transaction(async (tx) => {
        await markPending(tx, p.name, batchMessageId, pending);
        await writeInTableSourceHash(tx, p, pending);
      });
      const body = {
        sessionId: this.sessionId,
        siteId: this.deps.config.siteId,
        pipeline: p.shape,
        version,
        seq: seq++,
        changes: batch.map(stripDirty),
      };
      const counts = { headers: 0, details: 0, deletions: 0 };
      for (const c of batch) {
        if (c.op === 'upsert') {
          counts.headers++;
          counts.details += c.details.length;
        } else counts.deletions++;
      }
      this.totals.batches++;
      this.totals.headers += counts.headers;
      this.totals.details += counts.details;
      this.totals.deletions += counts.deletions;
      this.confirms.add(this.publish('batch', body, batchMessageId).then(() => this.sent.add(counts)));
      // Let the event loop write the batch to the broker now. With a synchronous driver
      // (better-sqlite3) the scan goes on as a chain of already-resolved promises, which starves
      // amqplib's stream piping: batches left the process four at a time, when the window was
      // full, and the central waited ~150 ms for the first one of a session.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.confirms.size >= MAX_BATCHES_IN_FLIGHT) await this.confirms.one();
      this.confirms.check();
    };

    for await (const change of plan.changes) {
      // A header deleted while this scan ran comes back as a deletion: it replaces its upsert if
      // that is still in the open batch (a batch never carries one key twice).
      const twin = change.op === 'delete' ? changes.findIndex((c) => c.headerKey === change.headerKey) : -1;
      if (twin >= 0) {
        rows -= changes[twin]!.rows;
        changes.splice(twin, 1);
      }
      const size = estimateBytes(change);
      if (changes.length > 0 && (rows + change.rows > batchRows || bytes + size > maxBytes)) {
        await flush();
        batchRows = Math.min(maxRows, batchRows * 2);
      }
      changes.push(change);
      rows += change.rows;
      bytes += size;
    }
    await flush();
    // Not waiting for the confirms (see PendingConfirms): the rows are marked pending already.
    this.confirms.check();
    // Everything the queue named is now marked pending (or was clean): its entries can go.
    if (plan.tracked) {
      await this.deps.db.transaction(async (tx) => {
        await releaseChangedKeys(tx, p);
        if (plan.full) await recordFullScan(tx, p.name);
      });
    }
    const scan = { pipeline: p.name, mode: plan.full ? ('full' as const) : ('changes' as const), ...scanner.stats };
    this.scans.push(scan);
    log.info(scan, 'pipeline scanned');
  }
}

type HeaderBatchBody = { pipeline: { name: string }; changes: HeaderChange[] };

function batchSummary(b: HeaderBatchBody, bytes: number) {
  let rows = 0;
  for (const c of b.changes) rows += 1 + (c.op === 'upsert' ? c.details.length : 0);
  return { pipeline: b.pipeline.name, headers: b.changes.length, rows, bytes };
}

function stripDirty(c: DirtyHeader): HeaderChange {
  return c.op === 'upsert'
    ? { op: 'upsert', key: c.key, hash: c.hash, header: c.header, details: c.details }
    : { op: 'delete', key: c.key };
}

/** Cheap upper-bound estimate of a change's JSON size (avoids serialising twice). */
function estimateBytes(c: DirtyHeader): number {
  if (c.op === 'delete') return 64 + JSON.stringify(c.key).length;
  let n = 120;
  const row = (r: readonly unknown[]) => {
    for (const v of r) n += typeof v === 'string' ? v.length + 4 : 24;
  };
  row(c.header);
  for (const d of c.details) row(d);
  return n;
}
