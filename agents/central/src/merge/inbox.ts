import { INBOX_TABLE, REJECTED_TABLE } from '@sitesync/db';
import { MessageRejectedError, isDecoded, type DecodedMessage, type MessageType } from '@sitesync/protocol';
import type { Queryable } from '@sitesync/db';
import { expectedUser, findSiteRows, isSiteDisabled, type SiteRow } from './site-registry';

/**
 * A decoded message whose broker user was checked against the `EstadoSyncGeneral` row(s) of the
 * site it claims (see {@link verifySender}), with those rows.
 */
export type VerifiedMessage<T extends MessageType = MessageType> = DecodedMessage<T> & {
  /**
   * The rows its sender was checked against: a batch's, the one of its pipeline; any other
   * message's, all the site's. Empty only for an `intervention.transfer` from a site with no row
   * (there is no user to check; its handler refuses it).
   */
  readonly siteRows: readonly SiteRow[];
};

/**
 * Checks who sent `m` before anything else reads it: the site it claims must have a row (for a
 * batch, a row of its pipeline), every such row must name the broker user that published it, and
 * the site must not be disabled. Throws `unknown-site`, `forged-site` or `site-disabled` (only
 * once the sender is checked: a forger learns nothing of another site's state). The rows, and so
 * the disabled flag, are read for every message: `syncctl sites disable` acts without a restart.
 */
export async function verifySender<M extends DecodedMessage>(
  q: Queryable,
  m: M,
): Promise<M & Pick<VerifiedMessage, 'siteRows'>> {
  const ctx = { messageId: m.messageId, siteId: m.siteId, type: m.type };
  const all = await findSiteRows(q, m.siteId);
  let rows: SiteRow[];
  if (isDecoded(m, 'batch')) {
    const pipeline = m.body.pipeline.name;
    const row = all.find((r) => r.pipeline === pipeline);
    if (!row) {
      throw new MessageRejectedError(
        'unknown-site',
        `no EstadoSyncGeneral row for site ${m.siteId} pipeline ${JSON.stringify(pipeline)}`,
        ctx,
      );
    }
    rows = [row];
  } else {
    rows = all;
    // An unregistered site's transfer is answered (intervention.rejected), not dead-lettered.
    if (rows.length === 0 && m.type !== 'intervention.transfer') {
      throw new MessageRejectedError('unknown-site', `no EstadoSyncGeneral row for site ${m.siteId}`, ctx);
    }
  }
  for (const row of rows) {
    const expected = expectedUser(row);
    if (m.userId !== expected) {
      throw new MessageRejectedError(
        'forged-site',
        `message for site ${m.siteId} was published by broker user ${JSON.stringify(m.userId ?? null)}, expected ${JSON.stringify(expected)}`,
        ctx,
      );
    }
  }
  if (isSiteDisabled(all)) {
    throw new MessageRejectedError(
      'site-disabled',
      `site ${m.siteId} is disabled at the central (syncctl sites enable ${m.siteId} re-enables it)`,
      ctx,
    );
  }
  return { ...m, siteRows: rows };
}

/** What a message brought, as the inbox records it (sessions are closed by these sums). */
export interface InboxCounts {
  headers: number;
  details: number;
  deletions: number;
}

/**
 * Records the message id; false when it was already processed (redelivery or replay). A concurrent
 * duplicate waits on the first one's row lock and then sees it.
 */
export async function claimInbox(
  tx: Queryable,
  m: DecodedMessage<'batch' | 'session.started' | 'session.completed'>,
  pipeline: string | null,
  counts: InboxCounts,
): Promise<boolean> {
  const sessionId = m.body.sessionId;
  const inserted = await tx.run(
    tx.dialect.insertIgnore(
      INBOX_TABLE,
      [
        'message_id',
        'id_efector',
        'message_type',
        'session_id',
        'pipeline',
        'headers',
        'details',
        'deletions',
        'processed_at',
      ],
      [
        m.messageId,
        m.siteId,
        m.type,
        sessionId,
        pipeline,
        counts.headers,
        counts.details,
        counts.deletions,
        tx.dialect.now(),
      ],
    ),
  );
  if (inserted === 0) return false;
  return true;
}

/** The batches of a session the inbox holds, summed over its pipelines. */
export async function receivedBatches(tx: Queryable, sessionId: string): Promise<InboxCounts & { batches: number }> {
  const sums = await tx.query<{
    pipeline: string | null;
    b: number | string;
    h: number | string | null;
    d: number | string | null;
    x: number | string | null;
  }>(
    `SELECT pipeline, COUNT(*) AS b, SUM(headers) AS h, SUM(details) AS d, SUM(deletions) AS x FROM ${INBOX_TABLE} ` +
      `WHERE session_id = ? AND message_type = ? GROUP BY pipeline`,
    [sessionId, 'batch'],
  );
  const received = { batches: 0, headers: 0, details: 0, deletions: 0 };
  for (const r of sums) {
    received.batches += Number(r.b);
    received.headers += Number(r.h ?? 0);
    received.details += Number(r.d ?? 0);
    received.deletions += Number(r.x ?? 0);
  }
  return received;
}

/** Marks a dead-lettered batch as rejected; idempotent per message id. */
export async function recordRejectedBatch(
  tx: Queryable,
  batch: DecodedMessage<'batch'>,
  reason: string,
): Promise<void> {
  const b = batch.body;
  await tx.run(
    tx.dialect.insertIgnore(
      REJECTED_TABLE,
      ['message_id', 'session_id', 'id_efector', 'reason', 'rejected_at'],
      [batch.messageId, b.sessionId, b.siteId, reason, tx.dialect.now()],
    ),
  );
}

/** Removes the rejected mark of a batch now merged (a replayed dead letter no longer counts against its session). */
export async function forgetRejectedBatch(tx: Queryable, messageId: string): Promise<void> {
  await tx.execute(`DELETE FROM ${REJECTED_TABLE} WHERE message_id = ?`, [messageId]);
}

/** How many batches of a session were rejected. */
export async function rejectedBatches(tx: Queryable, sessionId: string): Promise<number> {
  const rej = await tx.query<{ n: number | string }>(
    `SELECT COUNT(*) AS n FROM ${REJECTED_TABLE} WHERE session_id = ?`,
    [sessionId],
  );
  return Number(rej[0]?.n ?? 0);
}
