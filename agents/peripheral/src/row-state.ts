import type { Database, Queryable } from '@sitesync/db';

/** The side table holding SourceHash/TargetHash/IsSync per pipeline and header key. */
export const ROW_STATE_TABLE = 'sync_row_state';

const STATE_COLUMNS = [
  'pipeline',
  'header_key',
  'SourceHash',
  'IsSync',
  'pending_hash',
  'pending_batch',
  'pending_delete',
  'updated_at',
] as const;

export interface PendingRow {
  headerKey: string;
  /** The hash sent; null for a deletion. */
  hash: string | null;
}

/**
 * Records what a batch is about to carry, BEFORE it is published, so an ack that arrives
 * immediately after the confirm always finds its rows.
 */
export async function markPending(
  tx: Queryable,
  pipeline: string,
  batchId: string,
  rows: readonly PendingRow[],
): Promise<void> {
  const d = tx.dialect;
  const now = d.now();
  const chunk = d.chunkSize(STATE_COLUMNS.length);
  for (let i = 0; i < rows.length; i += chunk) {
    const values = rows
      .slice(i, i + chunk)
      .map((r) => [pipeline, r.headerKey, r.hash, d.bool(false), r.hash, batchId, d.bool(r.hash === null), now]);
    await tx.run(d.upsert(ROW_STATE_TABLE, ['pipeline', 'header_key'], STATE_COLUMNS, values));
  }
}

/**
 * Applies the central's `batch.ack`: TargetHash := the hash that batch sent. Rows re-sent by a later
 * batch meanwhile carry that batch's id and are left for its own ack. Acked deletions disappear.
 */
export async function applyBatchAck(db: Database, batchId: string): Promise<number> {
  return db.transaction(async (tx) => {
    const d = tx.dialect;
    const q = (c: string) => d.quote(c);
    const updated = await tx.execute(
      `UPDATE ${q(ROW_STATE_TABLE)} SET ${q('TargetHash')} = pending_hash, ` +
        `${q('IsSync')} = CASE WHEN pending_hash = ${q('SourceHash')} THEN ${d.boolLiteral(true)} ELSE ${d.boolLiteral(false)} END, ` +
        `pending_hash = NULL, pending_batch = NULL, updated_at = ? WHERE pending_batch = ? AND pending_delete = ?`,
      [d.now(), batchId, d.bool(false)],
    );
    const deleted = await tx.execute(
      `DELETE FROM ${q(ROW_STATE_TABLE)} WHERE pending_batch = ? AND pending_delete = ?`,
      [batchId, tx.dialect.bool(true)],
    );
    return updated + deleted;
  });
}
