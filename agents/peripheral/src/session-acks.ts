import { decodeKey, type DecodedMessage, type SessionAck } from '@sitesync/protocol';
import type { Database, Queryable, ResolvedPipeline } from '@sitesync/db';
import type { PipelineCache } from './pipeline-cache';
import { ROW_STATE_TABLE, RUN_LOG_TABLE } from '@sitesync/db';

/** The metric the ack path reports (PeripheralMetrics has it). */
export interface AckMetrics {
  readonly ackLatency: { observe(seconds: number): void };
}

interface OpenSession {
  /** Distinct batches whose ack was applied (a redelivered ack counts once). */
  appliedBatches: Set<string>;
  ack?: SessionAck;
  done?: (ack: SessionAck) => void;
  abort?: () => void;
}

/**
 * The site's side of the central's acknowledgements, end to end: a `batch.ack` sets the row state
 * (TargetHash := the hash sent) and counts the headers in the run log in one transaction; a
 * `session.ack` resolves the session waiting in this process, or is recorded in the run log when
 * none waits. A session is confirmed when its `session.ack` arrived AND every `batch.ack` it counts
 * has been applied locally: batch acks are applied concurrently and, with several central
 * consumers, may even arrive after it.
 */
export class SessionAcks {
  private readonly open = new Map<string, OpenSession>();

  constructor(
    private readonly db: Database,
    private readonly pipelines: PipelineCache,
    private readonly metrics?: AckMetrics,
  ) {}

  /** Applies a `batch.ack`: row state and run log in one transaction, then tells the waiting session. */
  async onBatchAck(m: DecodedMessage<'batch.ack'>): Promise<void> {
    const { batchMessageId, sessionId, pipeline, headers, deletions } = m.body;
    await this.db.transaction(async (tx) => {
      const changed = await applyBatchAckToRowState(tx, batchMessageId, this.pipelines.get(pipeline));
      // Counted in the ack's own transaction; a redelivered ack finds nothing pending any more,
      // so it is counted once.
      if (changed > 0) await addAcked(tx, sessionId, headers + deletions);
    });
    this.batchAckApplied(sessionId, batchMessageId);
    if (m.timestamp) this.metrics?.ackLatency.observe(Math.max(0, Date.now() / 1000 - m.timestamp));
  }

  /** Resolves the waiting session, or records the outcome of one that no longer waits here. */
  async onSessionAck(m: DecodedMessage<'session.ack'>): Promise<void> {
    const ack = m.body;
    if (!this.sessionAck(ack))
      await confirmLate(
        this.db,
        ack.sessionId,
        ack.refused ? 'refused' : ack.status === 'complete' ? 'ok' : 'incomplete',
      );
  }

  /** The central's refusal of a session followed here, once it arrived (the session stops sending). */
  refusal(sessionId: string): SessionAck['refused'] {
    return this.open.get(sessionId)?.ack?.refused;
  }

  /** Starts following a session; call before its first batch is published. */
  begin(sessionId: string): void {
    this.open.set(sessionId, { appliedBatches: new Set() });
  }

  end(sessionId: string): void {
    this.open.delete(sessionId);
  }

  /** True when the session is followed here (its acks go to the waiting session). */
  has(sessionId: string): boolean {
    return this.open.has(sessionId);
  }

  /** Resolves with the session.ack once all its batch acks are applied, or undefined after `timeoutMs`. */
  wait(sessionId: string, timeoutMs: number): Promise<SessionAck | undefined> {
    const s = this.open.get(sessionId);
    if (!s) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        s.done = undefined;
        resolve(undefined);
      }, timeoutMs);
      s.done = (ack) => {
        clearTimeout(t);
        s.abort = undefined;
        resolve(ack);
      };
      s.abort = () => {
        clearTimeout(t);
        resolve(undefined);
      };
      this.check(s);
    });
  }

  /** Stops every wait now (shutdown): the sessions end as unconfirmed; late acks are still applied. */
  abortAll(): void {
    for (const s of this.open.values()) {
      const done = s.abort;
      s.done = undefined;
      s.abort = undefined;
      done?.();
    }
  }

  private batchAckApplied(sessionId: string, batchMessageId: string): void {
    const s = this.open.get(sessionId);
    if (!s) return;
    s.appliedBatches.add(batchMessageId);
    this.check(s);
  }

  private sessionAck(ack: SessionAck): boolean {
    const s = this.open.get(ack.sessionId);
    if (!s) return false;
    s.ack = ack;
    this.check(s);
    return true;
  }

  private check(s: OpenSession): void {
    if (s.ack && s.done && s.appliedBatches.size >= s.ack.received.batches) {
      const done = s.done;
      s.done = undefined;
      done(s.ack);
    }
  }
}

/**
 * TargetHash := the hash the batch sent. Rows re-sent by a later batch meanwhile carry that batch's
 * message id and are left for its own ack. Acked deletions disappear. Returns the rows it changed
 * (0 for an ack applied before).
 */
async function applyBatchAckToRowState(
  tx: Queryable,
  batchMessageId: string,
  pipeline: ResolvedPipeline | undefined,
): Promise<number> {
  const d = tx.dialect;
  const q = (c: string) => d.quote(c);
  if (pipeline && (pipeline.inTable.target || pipeline.inTable.sync)) {
    const acked = await tx.query<{ header_key: string; pending_hash: string }>(
      `SELECT header_key, pending_hash FROM ${q(ROW_STATE_TABLE)} WHERE pending_batch = ? AND pending_delete = ?`,
      [batchMessageId, d.bool(false)],
    );
    await writeInTableTargetHash(tx, pipeline, acked);
  }
  const updated = await tx.execute(
    `UPDATE ${q(ROW_STATE_TABLE)} SET ${q('TargetHash')} = pending_hash, ` +
      `${q('IsSync')} = CASE WHEN pending_hash = ${q('SourceHash')} THEN ${d.boolLiteral(true)} ELSE ${d.boolLiteral(false)} END, ` +
      `pending_hash = NULL, pending_batch = NULL, updated_at = ? WHERE pending_batch = ? AND pending_delete = ?`,
    [d.now(), batchMessageId, d.bool(false)],
  );
  const deleted = await tx.execute(`DELETE FROM ${q(ROW_STATE_TABLE)} WHERE pending_batch = ? AND pending_delete = ?`, [
    batchMessageId,
    d.bool(true),
  ]);
  return updated + deleted;
}

/** After an ack: TargetHash := the hash sent, IsSync := (SourceHash = TargetHash), in the base table. */
async function writeInTableTargetHash(
  tx: Queryable,
  p: ResolvedPipeline,
  acked: ReadonlyArray<{ header_key: string; pending_hash: string }>,
): Promise<void> {
  const { source, target, sync } = p.inTable;
  if (!target && !sync) return;
  const d = tx.dialect;
  const q = (c: string) => d.quote(c);
  const where = p.header.key.map((k) => `${q(k)} = ?`).join(' AND ');
  for (const r of acked) {
    const sets: string[] = [];
    const params: unknown[] = [];
    if (target) {
      sets.push(`${q(target)} = ?`);
      params.push(r.pending_hash);
    }
    if (sync) {
      if (source) {
        sets.push(
          `${q(sync)} = CASE WHEN ${q(source)} = ? THEN ${d.boolLiteral(true)} ELSE ${d.boolLiteral(false)} END`,
        );
        params.push(r.pending_hash);
      } else {
        sets.push(`${q(sync)} = ?`);
        params.push(d.bool(true));
      }
    }
    await tx.execute(`UPDATE ${q(p.header.table)} SET ${sets.join(', ')} WHERE ${where}`, [
      ...params,
      ...decodeKey(r.header_key),
    ]);
  }
}

/** Counts acknowledged headers in the run log, in the transaction that applied the ack. */
async function addAcked(tx: Queryable, sessionId: string, headers: number): Promise<void> {
  await tx.execute(
    `UPDATE ${tx.dialect.quote(RUN_LOG_TABLE)} SET headers_acked = headers_acked + ? WHERE session_id = ?`,
    [headers, sessionId],
  );
}

/**
 * A `session.ack` for a session not waiting in this process (it timed out, or it is a `--once`
 * run beside this agent, which holds the site queue): record the outcome in the run log.
 */
async function confirmLate(db: Database, sessionId: string, status: 'ok' | 'incomplete' | 'refused'): Promise<void> {
  await db.execute(
    `UPDATE ${db.dialect.quote(RUN_LOG_TABLE)} SET status = ? WHERE session_id = ? AND status IN (?, ?)`,
    [status, sessionId, 'unconfirmed', 'running'],
  );
}
