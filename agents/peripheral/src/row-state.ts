import type { Database, Queryable, ResolvedPipeline } from '@sitesync/db';
import { decodeKey } from '@sitesync/protocol';

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
  const text = d.textType();
  const types = [text, text, text, d.booleanType(), text, text, d.booleanType(), d.timestampType()];
  const chunk = d.writeManyChunk(STATE_COLUMNS.length);
  for (let i = 0; i < rows.length; i += chunk) {
    const values = rows
      .slice(i, i + chunk)
      .map((r) => [pipeline, r.headerKey, r.hash, d.bool(false), r.hash, batchId, d.bool(r.hash === null), now]);
    // Every column but the key is rewritten (updated_at changes anyway): no "only if changed" test.
    await tx.run(d.writeMany(ROW_STATE_TABLE, STATE_COLUMNS, types, values, ['pipeline', 'header_key'], false));
  }
}

/**
 * Applies the central's `batch.ack`: TargetHash := the hash that batch sent. Rows re-sent by a later
 * batch meanwhile carry that batch's id and are left for its own ack. Acked deletions disappear.
 * `andThen` runs in the same transaction with the number of rows the ack changed (0 for an ack
 * applied before).
 */
export async function applyBatchAck(
  db: Database,
  batchId: string,
  pipeline: ResolvedPipeline | undefined,
  andThen?: (tx: Queryable, changed: number) => Promise<void>,
): Promise<number> {
  return db.transaction(async (tx) => {
    const d = tx.dialect;
    const q = (c: string) => d.quote(c);
    if (pipeline && (pipeline.inTable.target || pipeline.inTable.sync)) {
      const acked = await tx.query<{ header_key: string; pending_hash: string }>(
        `SELECT header_key, pending_hash FROM ${q(ROW_STATE_TABLE)} WHERE pending_batch = ? AND pending_delete = ?`,
        [batchId, d.bool(false)],
      );
      await writeInTableTargetHash(tx, pipeline, acked);
    }
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
    await andThen?.(tx, updated + deleted);
    return updated + deleted;
  });
}

/**
 * Where the base table itself carries SourceHash/TargetHash/IsSync columns (the seed document's
 * "hashing key" custom attributes), they are kept there too, for the site's own reports.
 */
export async function writeInTableSourceHash(
  tx: Queryable,
  p: ResolvedPipeline,
  rows: readonly PendingRow[],
): Promise<void> {
  const { source, sync } = p.inTable;
  if (!source && !sync) return;
  const d = tx.dialect;
  const q = (c: string) => d.quote(c);
  const sets = [...(source ? [`${q(source)} = ?`] : []), ...(sync ? [`${q(sync)} = ?`] : [])].join(', ');
  for (const r of rows) {
    if (r.hash === null) continue;
    const key = decodeKey(r.headerKey);
    await tx.execute(
      `UPDATE ${q(p.header.table)} SET ${sets} WHERE ${p.header.key.map((k) => `${q(k)} = ?`).join(' AND ')}`,
      [...(source ? [r.hash] : []), ...(sync ? [d.bool(false)] : []), ...key],
    );
  }
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
