import { MessageRejectedError, encodeKey, type HeaderBatch, type HeaderChange } from '@sitesync/protocol';
import {
  LEDGER_TABLE,
  foldKeyValue,
  isExactComparison,
  PIPELINE_SHAPE_COLUMN,
  type Database,
  type Queryable,
  SITE_TABLE,
  TableStatistics,
} from '@sitesync/db';
import { columnCollations, SITE_COLUMN, type InexactKeyColumn, type TargetTables } from './target-tables';
import { ledgerReturnsWinners, upsertLedger } from './ledger-statements';
import { checkStorableValues, positions, verifyHashes } from './batch-content';
import { replaceRows } from './replace-rows';
import { claimInbox, forgetRejectedBatch, type VerifiedMessage } from './inbox';

export interface MergeResult {
  status: 'applied' | 'duplicate';
  headers: number;
  details: number;
  deletions: number;
  /** Headers skipped because the central already holds a newer version. */
  stale: number;
}

/**
 * Refuses a batch no newer than a tombstone retention purged (`tombstone_floor`): it was written
 * before that deletion, and with the tombstone gone nothing would stop it from bringing the
 * deleted row back. Only a dead letter replayed long after can be that old; the site re-sent its
 * rows at its later sessions, so the batch is parked (`stale-batch`), to be discarded.
 */
function refuseOlderThanTombstones(batch: HeaderBatch, floor: number | null, messageId: string): void {
  if (floor === null || batch.version > floor) return;
  throw new MessageRejectedError(
    'stale-batch',
    `batch version ${batch.version} of site ${batch.siteId} pipeline ${JSON.stringify(batch.pipeline.name)} is not newer ` +
      `than the ledger tombstones retention purged (up to version ${floor}): merged, it could bring deleted rows back; ` +
      `discard it (the site has re-sent its rows since)`,
    { messageId, siteId: batch.siteId, type: 'batch' },
  );
}

/**
 * Merges header/detail batches into the central tables, one transaction per batch: inbox dedupe,
 * version-guarded ledger, header upsert by replace, detail set replacement, deletions, and the
 * site's `EstadoSyncGeneral` progress. Order-independent: an older version never overwrites a newer one.
 */
export class BatchMerger {
  /** How the ledger's `header_key` compares (exact once migrated; read once). */
  private ledgerKey: Promise<InexactKeyColumn[]> | undefined;
  /** The shape last recorded per `site|pipeline` (see recordShape). */
  private readonly recordedShapes = new Map<string, string>();

  constructor(
    private readonly db: Database,
    private readonly targets: TargetTables,
    private readonly statistics = new TableStatistics(db),
  ) {}

  /** Merges a batch whose sender was verified against its pipeline's row (see `verifySender`). */
  async merge(m: VerifiedMessage<'batch'>): Promise<MergeResult> {
    const batch = m.body;
    const pipeline = batch.pipeline.name;
    const [row] = m.siteRows;
    if (!row) throw new Error(`batch ${m.messageId} reached the merge without its site row`);
    refuseOlderThanTombstones(batch, row.tombstone_floor, m.messageId);
    // Checks that need no transaction first: content, target tables.
    const byKey = verifyHashes(batch, m.messageId);
    // The shape as JSON once a batch: both per-process caches below are keyed by it.
    const shapeText = JSON.stringify(batch.pipeline);
    await this.targets.ensure(row.tabla_encabezado, row.tabla_detalle, batch.pipeline, shapeText);
    checkStorableValues(batch, this.db.dialect, m.messageId, {
      table: row.tabla_encabezado,
      header: this.targets.narrowColumns(row.tabla_encabezado),
      detailTable: row.tabla_detalle,
      detail: row.tabla_detalle ? this.targets.narrowColumns(row.tabla_detalle) : undefined,
    });
    await this.recordShape(batch, row, shapeText);
    await this.refuseCollidingKeys(batch, row.tabla_encabezado, row.tabla_detalle, m.messageId);

    const result = await this.db.transaction(async (tx): Promise<MergeResult> => {
      const counts = countChanges(batch.changes);
      const fresh = await claimInbox(tx, m, pipeline, counts);
      if (!fresh) return { status: 'duplicate', ...counts, stale: 0 };
      const won = await this.advanceLedger(tx, batch, byKey);
      await replaceRows(tx, this.targets, batch, row.tabla_encabezado, row.tabla_detalle, won);
      const applied = countChanges(won);
      await recordProgress(tx, batch, counts);
      // A replayed dead letter no longer counts against its session.
      await forgetRejectedBatch(tx, m.messageId);
      return { status: 'applied', ...applied, stale: batch.changes.length - won.length };
    });
    if (result.status === 'applied') {
      // The columns the merge's statements filter on: the site's, the keys, the join.
      const shape = batch.pipeline;
      this.statistics.wrote(row.tabla_encabezado, result.headers, [SITE_COLUMN, ...shape.header.key]);
      if (row.tabla_detalle && shape.detail) {
        const d = shape.detail;
        this.statistics.wrote(row.tabla_detalle, result.details, [SITE_COLUMN, ...Object.keys(d.join), ...d.key]);
      }
    }
    return result;
  }

  /**
   * Refuses a batch whose keys are one key under a target table's collation (a legacy table whose
   * key columns ignore case or trailing spaces): among themselves, or with a row stored under
   * another spelling. Merged, it would write one row with one key's spelling and another's values.
   * Tables whose key columns compare exactly (all the central creates) cost nothing here.
   */
  private async refuseCollidingKeys(
    batch: HeaderBatch,
    headerTable: string,
    detailTable: string | null,
    messageId: string,
  ): Promise<void> {
    const shape = batch.pipeline;
    const headerKeys = batch.changes.map((c) => c.key);
    const groups: Array<{ table: string; columns: readonly string[]; keys: ReadonlyArray<readonly unknown[]> }> = [
      { table: headerTable, columns: shape.header.key, keys: headerKeys },
    ];
    const detail = shape.detail;
    if (detail && detailTable) {
      const joinCols = shape.header.key.map((hk) => Object.entries(detail.join).find(([, h]) => h === hk)![0]);
      const at = positions(
        detail.key,
        detail.columns.map((c) => c.name),
      );
      const lines = batch.changes.flatMap((c) => (c.op === 'upsert' ? c.details : []));
      groups.push(
        { table: detailTable, columns: joinCols, keys: headerKeys },
        { table: detailTable, columns: detail.key, keys: lines.map((l) => at.map((i) => l[i])) },
      );
    }
    const ctx = { messageId, siteId: batch.siteId, type: 'batch' };
    // A ledger not yet migrated to the binary key collation would merge encoded keys the same way.
    const ledger = await (this.ledgerKey ??= this.ledgerKeyColumn().catch((err: unknown) => {
      this.ledgerKey = undefined;
      throw err;
    }));
    if (ledger.length) {
      const fold = keyFolder(['header_key'], ledger);
      const seen = new Map<string, string>();
      for (const c of batch.changes) {
        const key = encodeKey(c.key);
        const other = seen.get(fold([key]));
        if (other !== undefined && other !== key) {
          throw new MessageRejectedError(
            'bad-content',
            `keys ${other} and ${key} are one key under ${describeColumns(ledger)}`,
            ctx,
          );
        }
        seen.set(fold([key]), key);
      }
    }
    for (const g of groups) {
      const inexact = this.targets.inexactColumns(g.table, g.columns);
      if (!inexact.length || !g.keys.length) continue;
      const fold = keyFolder(g.columns, inexact);
      const seen = new Map<string, readonly unknown[]>();
      for (const k of g.keys) {
        const f = fold(k);
        const other = seen.get(f);
        if (!other) seen.set(f, k);
        else if (JSON.stringify(other) !== JSON.stringify(k)) {
          throw new MessageRejectedError(
            'bad-content',
            `keys ${formatKeyValues(other)} and ${formatKeyValues(k)} are one key under ${describeColumns(inexact)}`,
            ctx,
          );
        }
      }
      // Rows stored by another spelling: the server finds them by the batch's keys.
      const d = this.db.dialect;
      const specs = g.table === headerTable ? shape.header.columns : (detail?.columns ?? []);
      const bind = d.keyBinder(specs, g.columns);
      const distinct = [...seen.values()];
      const chunk = d.chunkSize(g.columns.length, 10, 500);
      const textColumns = inexact.map((c) => g.columns.indexOf(c.column));
      for (let i = 0; i < distinct.length; i += chunk) {
        const part = distinct.slice(i, i + chunk);
        const pred = d.keyPredicate(g.columns, part.map(bind));
        const stored = await this.db.query<Record<string, unknown>>(
          `SELECT ${g.columns.map((c) => d.quote(c)).join(', ')} FROM ${d.quote(g.table)} WHERE ${d.quote(SITE_COLUMN)} = ? AND ${pred.sql}`,
          [batch.siteId, ...pred.params],
        );
        for (const r of stored) {
          const values = g.columns.map((c) => r[c]);
          const mine = seen.get(fold(values));
          // Only the text columns can differ in spelling; a row not paired (other value forms) is left alone.
          if (mine && textColumns.some((at) => mine[at] !== values[at])) {
            throw new MessageRejectedError(
              'bad-content',
              `key ${formatKeyValues(mine)} of the batch and the stored key ${formatKeyValues(values)} ` +
                `are one key under ${describeColumns(inexact)}`,
              ctx,
            );
          }
        }
      }
    }
  }

  /**
   * Records the pipeline shape a site sends in its `EstadoSyncGeneral` row, once per site, pipeline
   * and shape in the life of the process: `syncctl db check` compares the target tables with it.
   */
  private async recordShape(batch: HeaderBatch, row: { id_efector: number }, shape: string): Promise<void> {
    const key = `${row.id_efector}|${batch.pipeline.name}`;
    if (this.recordedShapes.get(key) === shape) return;
    await this.db.execute(
      `UPDATE ${this.db.dialect.quote(SITE_TABLE)} SET ${this.db.dialect.quote(PIPELINE_SHAPE_COLUMN)} = ? ` +
        `WHERE id_efector = ? AND pipeline = ?`,
      [shape, batch.siteId, batch.pipeline.name],
    );
    this.recordedShapes.set(key, shape);
  }

  private async ledgerKeyColumn(): Promise<InexactKeyColumn[]> {
    const collation = (await columnCollations(this.db, LEDGER_TABLE)).get('header_key')?.collation;
    if (collation === undefined) return [];
    const comparison = this.db.dialect.keyComparison(collation);
    // Encoded keys end in `]`: trailing spaces of a value never reach the end of one.
    const inexact = { ...comparison, ignoresTrailingSpaces: false };
    return isExactComparison(inexact)
      ? []
      : [{ table: LEDGER_TABLE, column: 'header_key', collation, comparison: inexact }];
  }

  /**
   * Raises each header's ledger version to this batch's; returns the changes for which this batch
   * is (now) the newest. `byKey`: the batch's changes by encoded key (see verifyHashes).
   */
  private async advanceLedger(
    tx: Queryable,
    batch: HeaderBatch,
    byKey: ReadonlyMap<string, HeaderChange>,
  ): Promise<HeaderChange[]> {
    const d = tx.dialect;
    // Sorted, so that concurrent batches of one site lock ledger rows in the same order.
    const keys = [...byKey.keys()].sort();
    const winners: HeaderChange[] = [];
    // The ledger holds this batch's version AND its operation: a same-version deletion beats an upsert.
    const take = (rows: ReadonlyArray<{ header_key: string; deleted: unknown }>) => {
      for (const r of rows) {
        const c = byKey.get(r.header_key);
        // A ledger that compares keys inexactly (one not yet migrated) found a row by another key.
        if (!c) throw ledgerCollision(batch, r.header_key, keys);
        if (Boolean(Number(r.deleted)) === (c.op === 'delete')) winners.push(c);
      }
    };
    const chunk = ledgerReturnsWinners(d) ? d.writeManyChunk(7) : d.chunkSize(7, 10, 500);
    for (let i = 0; i < keys.length; i += chunk) {
      const rows = keys.slice(i, i + chunk).map((k) => {
        const c = byKey.get(k)!;
        return [
          batch.siteId,
          batch.pipeline.name,
          k,
          batch.version,
          c.op === 'upsert' ? c.hash : null,
          c.op === 'delete',
        ] as const;
      });
      const stmt = upsertLedger(d, { table: LEDGER_TABLE, rows });
      if (ledgerReturnsWinners(d)) take(await tx.query(stmt.sql, stmt.params));
      else await tx.run(stmt);
    }
    if (ledgerReturnsWinners(d)) return winners;
    const sel = d.chunkSize(1, 10, 1000);
    for (let i = 0; i < keys.length; i += sel) {
      const part = keys.slice(i, i + sel);
      take(
        await tx.query<{ header_key: string; deleted: unknown }>(
          `SELECT header_key, deleted FROM ${d.quote(LEDGER_TABLE)} WHERE id_efector = ? AND pipeline = ? AND version = ? AND header_key IN (${part
            .map(() => '?')
            .join(', ')})`,
          [batch.siteId, batch.pipeline.name, batch.version, ...part],
        ),
      );
    }
    return winners;
  }
}

/** A key as the folding of `inexact` columns sees it (values of other columns as they are). */
function keyFolder(
  columns: readonly string[],
  inexact: readonly InexactKeyColumn[],
): (k: readonly unknown[]) => string {
  const cmp = columns.map((c) => inexact.find((x) => x.column === c)?.comparison);
  return (k) => JSON.stringify(k.map((v, i) => (cmp[i] ? foldKeyValue(v, cmp[i]) : String(v))));
}

/** `'abc'`, or `('abc', 7)` for a key of several columns: text quoted so trailing spaces show. */
function formatKeyValues(k: readonly unknown[]): string {
  const one = (v: unknown) => (typeof v === 'string' ? `'${v.replace(/'/g, "''")}'` : String(v));
  return k.length === 1 ? one(k[0]) : `(${k.map(one).join(', ')})`;
}

function describeColumns(cols: readonly InexactKeyColumn[]): string {
  const one = (c: InexactKeyColumn) => `${c.table}.${c.column} (collation ${c.collation})`;
  return cols.length === 1 ? `the central column ${one(cols[0]!)}` : `the central columns ${cols.map(one).join(', ')}`;
}

/** A ledger row found by a key of the batch that is not exactly one of its keys. */
function ledgerCollision(batch: HeaderBatch, stored: string, keys: readonly string[]): MessageRejectedError {
  return new MessageRejectedError(
    'bad-content',
    `the ledger's stored key ${stored} is not a key of the batch but was found by one of them ` +
      `(${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}): ${LEDGER_TABLE}.header_key compares keys inexactly`,
    { siteId: batch.siteId, type: 'batch' },
  );
}

function countChanges(changes: readonly HeaderChange[]): { headers: number; details: number; deletions: number } {
  let headers = 0;
  let details = 0;
  let deletions = 0;
  for (const c of changes) {
    if (c.op === 'upsert') {
      headers++;
      details += c.details.length;
    } else deletions++;
  }
  return { headers, details, deletions };
}

/** Progress of the site's current session in `EstadoSyncGeneral`; a batch of an older session does not reset it. */
async function recordProgress(
  tx: Queryable,
  batch: HeaderBatch,
  c: { headers: number; details: number; deletions: number },
): Promise<void> {
  const now = tx.dialect.now();
  const v = batch.version;
  const same = 'last_version = ?';
  await tx.execute(
    `UPDATE ${tx.dialect.quote(SITE_TABLE)} SET ` +
      `header_count = CASE WHEN ${same} THEN header_count + ? ELSE ? END, ` +
      `detail_count = CASE WHEN ${same} THEN detail_count + ? ELSE ? END, ` +
      `deletion_count = CASE WHEN ${same} THEN deletion_count + ? ELSE ? END, ` +
      `ultimo_sync_registros = CASE WHEN ${same} THEN COALESCE(ultimo_sync_registros, 0) + ? ELSE ? END, ` +
      `ultimo_sync_fecha_inicio = CASE WHEN ${same} THEN COALESCE(ultimo_sync_fecha_inicio, ?) ELSE ? END, ` +
      `ultimo_sync_fecha_fin = NULL, status = ?, last_seen = ?, last_session_id = ?, last_version = ? ` +
      `WHERE id_efector = ? AND pipeline = ? AND (last_version IS NULL OR last_version <= ?)`,
    [
      v,
      c.headers,
      c.headers,
      v,
      c.details,
      c.details,
      v,
      c.deletions,
      c.deletions,
      v,
      c.headers + c.details,
      c.headers + c.details,
      v,
      now,
      now,
      'syncing',
      now,
      batch.sessionId,
      v,
      batch.siteId,
      batch.pipeline.name,
      v,
    ],
  );
}
