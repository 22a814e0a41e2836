import { SESSION_TABLE, SITE_TABLE } from '@sitesync/db';
import { MessageRejectedError, type SessionAck, type SessionCompleted, type SessionStarted } from '@sitesync/protocol';
import type { Database, Queryable } from '@sitesync/db';
import { claimInbox, receivedBatches, recordRejectedBatch, rejectedBatches, type VerifiedMessage } from './inbox';

interface SessionRow {
  session_id: string;
  id_efector: number;
  version: number | string;
  site_finished_at: unknown;
  expected_batches: number | null;
  expected_headers: number | null;
  expected_details: number | null;
  expected_deletions: number | null;
  status: string;
  acked_at: unknown;
}

/** Says on `EstadoSyncGeneral` why a pipeline's row stopped syncing (see `closeOlderSessions`). */
const ABANDONED_ERROR =
  'the site abandoned its session (the agent stopped before finishing it) and its next session does not name this pipeline';
const MISSING_BATCHES_ERROR =
  'the site completed its session but not every batch it announced reached the central (see the dead-letter queues), ' +
  'and its next session does not name this pipeline';

/**
 * Per-session accounting: `session.started` opens it, batches are counted from the inbox,
 * `session.completed` states the totals, and the session is acknowledged once every batch is
 * merged or rejected, whatever order the messages arrived in. When a newer session of the site
 * starts, an older one still open is closed: `abandoned` if the site gave up on it, `incomplete` if
 * it completed but some of its batches never arrived.
 */
export class SessionTracker {
  constructor(private readonly db: Database) {}

  /**
   * Opens the session: the site's rows of the pipelines it names are reset for it, and the site's
   * older sessions still open are closed (see `closeOlderSessions`).
   */
  async started(m: VerifiedMessage<'session.started'>): Promise<void> {
    const s: SessionStarted = m.body;
    const rows = m.siteRows;
    const missing = s.pipelines.filter((p) => !rows.some((r) => r.pipeline === p.name)).map((p) => p.name);
    if (missing.length) {
      throw new MessageRejectedError(
        'unknown-site',
        `no EstadoSyncGeneral row for site ${m.siteId} pipeline(s) ${missing.join(', ')}`,
        { messageId: m.messageId, siteId: m.siteId, type: m.type },
      );
    }
    await this.db.transaction(async (tx) => {
      if (!(await claimInbox(tx, m, null, { headers: 0, details: 0, deletions: 0 }))) return;
      await ensureSession(tx, s.sessionId, s.siteId, s.version);
      await tx.execute(`UPDATE ${SESSION_TABLE} SET site_started_at = ? WHERE session_id = ?`, [
        toDb(tx, s.startedAt),
        s.sessionId,
      ]);
      const now = tx.dialect.now();
      const same = 'last_version = ?';
      for (const r of rows.filter((r) => s.pipelines.some((p) => p.name === r.pipeline))) {
        await tx.execute(
          `UPDATE ${tx.dialect.quote(SITE_TABLE)} SET ultimo_update_efector_inicio = ?, ultimo_update_efector_fin = NULL, ` +
            `header_count = CASE WHEN ${same} THEN header_count ELSE 0 END, ` +
            `detail_count = CASE WHEN ${same} THEN detail_count ELSE 0 END, ` +
            `deletion_count = CASE WHEN ${same} THEN deletion_count ELSE 0 END, ` +
            `ultimo_sync_registros = CASE WHEN ${same} THEN ultimo_sync_registros ELSE 0 END, ` +
            `ultimo_sync_fecha_inicio = CASE WHEN ${same} THEN ultimo_sync_fecha_inicio ELSE ? END, ` +
            `ultimo_sync_fecha_fin = NULL, status = ?, last_seen = ?, last_session_id = ?, last_version = ? ` +
            `WHERE id_efector = ? AND pipeline = ? AND (last_version IS NULL OR last_version <= ?)`,
          [
            toDb(tx, s.startedAt),
            s.version,
            s.version,
            s.version,
            s.version,
            s.version,
            now,
            'syncing',
            now,
            s.sessionId,
            s.version,
            s.siteId,
            r.pipeline,
            s.version,
          ],
        );
      }
      await closeOlderSessions(tx, s.siteId, s.version);
    });
  }

  /** Records the totals the site states for the session. */
  async completed(m: VerifiedMessage<'session.completed'>): Promise<void> {
    const s: SessionCompleted = m.body;
    await this.db.transaction(async (tx) => {
      if (!(await claimInbox(tx, m, null, { headers: 0, details: 0, deletions: 0 }))) return;
      await ensureSession(tx, s.sessionId, s.siteId, s.version);
      await tx.execute(
        `UPDATE ${SESSION_TABLE} SET site_started_at = ?, site_finished_at = ?, expected_batches = ?, expected_headers = ?, ` +
          `expected_details = ?, expected_deletions = ? WHERE session_id = ?`,
        [
          toDb(tx, s.startedAt),
          toDb(tx, s.finishedAt),
          s.totals.batches,
          s.totals.headers,
          s.totals.details,
          s.totals.deletions,
          s.sessionId,
        ],
      );
    });
  }

  /**
   * Counts a dead-lettered batch against its session, so the session can still be closed (as
   * incomplete). Idempotent per message id; a successful replay removes the mark.
   */
  async batchRejected(m: VerifiedMessage<'batch'>, reason: string): Promise<void> {
    const b = m.body;
    await this.db.transaction(async (tx) => {
      await ensureSession(tx, b.sessionId, b.siteId, b.version);
      await recordRejectedBatch(tx, m, reason);
    });
  }

  /**
   * Closes the session when every batch it announced is merged or rejected, and returns the
   * `session.ack` to publish. With `resend`, a session already closed returns its ack again
   * (the first publish may have been lost in a crash).
   */
  async tryComplete(sessionId: string, resend = false): Promise<SessionAck | undefined> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<SessionRow>(`SELECT * FROM ${SESSION_TABLE} WHERE session_id = ?`, [sessionId]);
      const s = rows[0];
      if (!s || s.expected_batches === null) return undefined;
      if (s.acked_at !== null && !resend) return undefined;
      const received = await receivedBatches(tx, sessionId);
      const expected = {
        batches: s.expected_batches,
        headers: s.expected_headers ?? 0,
        details: s.expected_details ?? 0,
        deletions: s.expected_deletions ?? 0,
      };
      const rejected = await rejectedBatches(tx, sessionId);
      if (received.batches + rejected < expected.batches) return undefined;
      const complete =
        rejected === 0 &&
        received.batches === expected.batches &&
        received.headers === expected.headers &&
        received.details === expected.details &&
        received.deletions === expected.deletions;
      const status = complete ? 'complete' : 'incomplete';
      if (s.acked_at === null) {
        const now = tx.dialect.now();
        const claimed = await tx.execute(
          `UPDATE ${SESSION_TABLE} SET acked_at = ?, status = ? WHERE session_id = ? AND acked_at IS NULL`,
          [now, status, sessionId],
        );
        if (claimed === 0 && !resend) return undefined;
        const error = complete
          ? null
          : `session ${sessionId}: expected ${JSON.stringify(expected)}, received ${JSON.stringify(received)}, rejected batches ${rejected}`;
        await tx.execute(
          `UPDATE ${tx.dialect.quote(SITE_TABLE)} SET ultimo_update_efector_fin = ?, ultimo_sync_fecha_fin = ?, status = ?, ` +
            `last_error = ?, last_seen = ? WHERE id_efector = ? AND last_session_id = ?`,
          [s.site_finished_at, now, complete ? 'ok' : 'error', error, now, s.id_efector, sessionId],
        );
      }
      return { sessionId, siteId: Number(s.id_efector), status, expected, received, rejectedBatches: rejected };
    });
  }
}

/**
 * A site runs one session at a time (its session lock), so an older session of the site still open
 * when a newer one starts will not be finished by the site:
 * - without its `session.completed`, the site gave up on it (its agent died or the session
 *   failed): it is closed `abandoned`;
 * - with it, some batch it announced never reached the central's accounting (a broker dead letter,
 *   or one refused before its sender was known): it is closed `incomplete`.
 *
 * `acked_at` stays empty in both. Batches that arrive later are still merged (the ledger keeps the
 * newer versions), and `tryComplete` still closes the session complete or incomplete once its
 * `session.completed` and every batch are in (a message only overtaken, with several central
 * consumers). The site's rows of pipelines the newer session does not name would otherwise say
 * `syncing` for good: they say `error`, with why.
 */
async function closeOlderSessions(tx: Queryable, siteId: number, version: number): Promise<void> {
  // The newest version started for the site, not only this one: a late `session.started` of an
  // older session (overtaken by a newer one) is closed at once.
  const newest = await tx.query<{ v: number | string | null }>(
    `SELECT MAX(last_version) AS v FROM ${tx.dialect.quote(SITE_TABLE)} WHERE id_efector = ?`,
    [siteId],
  );
  const v = Math.max(version, Number(newest[0]?.v ?? version));
  for (const [status, completed, error] of [
    ['abandoned', 'IS NULL', ABANDONED_ERROR],
    ['incomplete', 'IS NOT NULL', MISSING_BATCHES_ERROR],
  ] as const) {
    const closed = await tx.execute(
      `UPDATE ${SESSION_TABLE} SET status = ? WHERE id_efector = ? AND version < ? AND status = ? AND expected_batches ${completed}`,
      [status, siteId, v, 'open'],
    );
    if (closed === 0) continue;
    const now = tx.dialect.now();
    await tx.execute(
      `UPDATE ${tx.dialect.quote(SITE_TABLE)} SET status = ?, last_error = ?, ultimo_sync_fecha_fin = ?, last_seen = ? ` +
        `WHERE id_efector = ? AND status = ? AND last_session_id IN ` +
        `(SELECT session_id FROM ${SESSION_TABLE} WHERE id_efector = ? AND status = ? AND acked_at IS NULL)`,
      ['error', error, now, now, siteId, 'syncing', siteId, status],
    );
  }
}

async function ensureSession(tx: Queryable, sessionId: string, siteId: number, version: number): Promise<void> {
  await tx.run(
    tx.dialect.insertIgnore(
      SESSION_TABLE,
      ['session_id', 'id_efector', 'version', 'status', 'created_at'],
      [sessionId, siteId, version, 'open', tx.dialect.now()],
    ),
  );
}

function toDb(tx: Queryable, iso: string): unknown {
  return tx.dialect.name === 'sqlite' ? new Date(iso).toISOString() : new Date(iso);
}
