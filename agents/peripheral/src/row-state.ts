import { ROW_STATE_TABLE } from '@sitesync/db';
import type { Database, Queryable, ResolvedPipeline } from '@sitesync/db';
import { decodeKey } from '@sitesync/protocol';

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

/**
 * SQL types of a row-state write's columns: {@link STATE_COLUMNS} and `RESEND_COLUMNS` alike
 * (pipeline, key, a hash, IsSync, pending hash and batch, pending_delete, updated_at).
 */
function rowStateTypes(d: Queryable['dialect']): string[] {
  const text = d.textType();
  return [text, text, text, d.booleanType(), text, text, d.booleanType(), d.timestampType()];
}

/** What the side table says of one header: the hash acknowledged, and the send not acknowledged yet. */
export interface RowState {
  /** TargetHash: the hash the central acknowledged. */
  target: string | null;
  pendingHash: string | null;
  /** The message id of the batch carrying this header and not acknowledged yet (column `pending_batch`). */
  pendingBatchMessageId: string | null;
  pendingDelete: boolean;
}

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
  batchMessageId: string,
  rows: readonly PendingRow[],
): Promise<void> {
  const d = tx.dialect;
  const now = d.now();
  const types = rowStateTypes(d);
  const chunk = d.writeManyChunk(STATE_COLUMNS.length);
  for (let i = 0; i < rows.length; i += chunk) {
    const values = rows
      .slice(i, i + chunk)
      .map((r) => [pipeline, r.headerKey, r.hash, d.bool(false), r.hash, batchMessageId, d.bool(r.hash === null), now]);
    // Every column but the key is rewritten (updated_at changes anyway): no "only if changed" test.
    await tx.run(d.writeMany(ROW_STATE_TABLE, STATE_COLUMNS, types, values, ['pipeline', 'header_key'], false));
  }
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

/** The row state of `headerKeys` of one pipeline; keys the side table does not know are absent. */
export async function readRowState(
  db: Database,
  pipeline: string,
  headerKeys: readonly string[],
): Promise<Map<string, RowState>> {
  const out = new Map<string, RowState>();
  const d = db.dialect;
  const chunk = d.chunkSize(1);
  for (let i = 0; i < headerKeys.length; i += chunk) {
    const stmt = d.selectByKeys(
      ROW_STATE_TABLE,
      ['header_key', 'TargetHash', 'pending_hash', 'pending_batch', 'pending_delete'],
      ['pipeline', pipeline],
      { column: 'header_key', sqlType: d.textType(400), values: headerKeys.slice(i, i + chunk) },
    );
    const rows = await db.query<{
      header_key: string;
      TargetHash: string | null;
      pending_hash: string | null;
      pending_batch: string | null;
      pending_delete: unknown;
    }>(stmt.sql, stmt.params);
    for (const r of rows) {
      out.set(r.header_key, {
        target: r.TargetHash,
        pendingHash: r.pending_hash,
        pendingBatchMessageId: r.pending_batch,
        pendingDelete: Boolean(Number(r.pending_delete)),
      });
    }
  }
  return out;
}

const RESEND_COLUMNS = [
  'pipeline',
  'header_key',
  'TargetHash',
  'IsSync',
  'pending_hash',
  'pending_batch',
  'pending_delete',
  'updated_at',
] as const;

/**
 * Forgets what the central acknowledged for `keys` of a pipeline (or every key the side table
 * knows), so that the next session sends each again: TargetHash is cleared, so the scan finds the
 * header dirty; a key the side table did not know is entered as held centrally, so a key the site
 * does not have goes out as a deletion. `pending_batch` is set to `mark` (a request id no ack
 * carries): a session reading only tracked changes takes unacknowledged keys too. Returns the
 * number of keys marked.
 */
export async function markForResend(
  db: Database,
  pipeline: string,
  keys: readonly string[] | 'all',
  mark: string,
): Promise<number> {
  const d = db.dialect;
  const q = (c: string) => d.quote(c);
  if (keys === 'all') {
    return db.transaction(async (tx) =>
      tx.execute(
        `UPDATE ${q(ROW_STATE_TABLE)} SET ${q('TargetHash')} = NULL, ${q('IsSync')} = ?, pending_hash = NULL, ` +
          `pending_batch = ?, pending_delete = ?, updated_at = ? WHERE pipeline = ?`,
        [d.bool(false), mark, d.bool(false), d.now(), pipeline],
      ),
    );
  }
  const unique = [...new Set(keys)];
  const types = rowStateTypes(d);
  const chunk = d.writeManyChunk(RESEND_COLUMNS.length);
  await db.transaction(async (tx) => {
    const now = d.now();
    for (let i = 0; i < unique.length; i += chunk) {
      const values = unique
        .slice(i, i + chunk)
        .map((k) => [pipeline, k, null, d.bool(false), null, mark, d.bool(false), now]);
      await tx.run(d.writeMany(ROW_STATE_TABLE, RESEND_COLUMNS, types, values, ['pipeline', 'header_key'], false));
    }
  });
  return unique.length;
}
