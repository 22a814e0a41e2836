import {
  FLOAT_NAMES,
  MAX_HEADER_KEY_LENGTH,
  MessageRejectedError,
  encodeKey,
  HeaderHasher,
  type ColumnSpec,
  type DecodedMessage,
  type HeaderBatch,
  type HeaderChange,
  type PipelineShape,
  type WireValue,
  type WireValues,
} from '@sitesync/protocol';
import {
  describeSite,
  foldKeyValue,
  isExactComparison,
  narrowValue,
  PIPELINE_SHAPE_COLUMN,
  type Database,
  type Dialect,
  type LiveColumnType,
  type Queryable,
} from '@sitesync/db';
import { columnCollations, SITE_COLUMN, type InexactKeyColumn, type TargetTables } from './target-tables';
import { expectedUser, findSiteRow, SITE_TABLE } from './site-registry';
import { TableStatistics } from './table-statistics';
import { ledgerReturnsWinners, upsertLedger } from './ledger-statements';

type DetailShape = NonNullable<PipelineShape['detail']>;

export const INBOX_TABLE = 'sync_inbox';
export const LEDGER_TABLE = 'sync_ledger';

export interface MergeResult {
  status: 'applied' | 'duplicate';
  headers: number;
  details: number;
  deletions: number;
  /** Headers skipped because the central already holds a newer version. */
  stale: number;
}

/** Rejects a message whose claimed site is not the one its authenticated broker user speaks for. */
export function checkSender(m: DecodedMessage, row: { broker_user: string | null; id_efector: number }): void {
  const expected = expectedUser(row);
  if (m.userId !== expected) {
    throw new MessageRejectedError(
      'forged-site',
      `message for site ${m.siteId} was published by broker user ${JSON.stringify(m.userId ?? null)}, expected ${JSON.stringify(expected)}`,
      { messageId: m.messageId, siteId: m.siteId, type: m.type },
    );
  }
}

/**
 * Checks every change against the pipeline's shape and recomputes every header hash (a mismatch
 * means the batch was corrupted or hand-edited); returns the changes by encoded header key, the
 * form the ledger keys them by. A key that appears twice in one batch is refused: the site never
 * sends one, and which of the two should win would be undefined.
 */
export function verifyHashes(batch: HeaderBatch, messageId: string): Map<string, HeaderChange> {
  const shape = batch.pipeline;
  const headerCols = shape.header.columns.map((c) => c.name);
  const hasher = new HeaderHasher(
    shape.algorithm,
    headerCols,
    shape.detail?.columns.map((c) => c.name),
  );
  const keyAt = positions(shape.header.key, headerCols);
  const ctx = { messageId, siteId: batch.siteId, type: 'batch' };
  const byKey = new Map<string, HeaderChange>();
  for (const c of batch.changes) {
    const key = encodeKey(c.key);
    if (byKey.has(key)) {
      throw new MessageRejectedError('bad-content', `key ${key.slice(0, 80)} appears twice in the batch`, ctx);
    }
    byKey.set(key, c);
    if (key.length > MAX_HEADER_KEY_LENGTH) {
      throw new MessageRejectedError(
        'bad-content',
        `key ${JSON.stringify(c.key).slice(0, 80)} is longer than ${MAX_HEADER_KEY_LENGTH} characters`,
        ctx,
      );
    }
    if (c.key.length !== batch.pipeline.header.key.length) {
      throw new MessageRejectedError(
        'bad-content',
        `key ${JSON.stringify(c.key)} does not match the pipeline key`,
        ctx,
      );
    }
    // (Each row holds one value per column of the shape: the batch schema checked that.)
    if (c.op !== 'upsert') continue;
    if (keyAt.some((at, i) => c.header[at] !== c.key[i])) {
      throw new MessageRejectedError('bad-content', `header ${JSON.stringify(c.key)} key does not match its row`, ctx);
    }
    if (hasher.hash(c.header, c.details) !== c.hash) {
      throw new MessageRejectedError('row-hash-mismatch', `row hash mismatch for header ${JSON.stringify(c.key)}`, ctx);
    }
  }
  return byKey;
}

/**
 * Why the central cannot store `v` in a column like `col` exactly, or undefined: a text with a
 * lone UTF-16 surrogate where text is UTF-8, or a NUL on PostgreSQL (its driver would store
 * something else, U+FFFD, without an error, or fail the batch on every delivery); a double sent by
 * name (NaN, an infinity, -0) where its columns cannot hold it; an integer as a JSON number beyond
 * ±(2^53 - 1) or not whole, rounded before it got here (a site of an earlier release reading an
 * int64 as a double: sites send such integers as decimal strings).
 */
function unstorable(col: ColumnSpec, v: WireValue, dialect: Dialect): string | undefined {
  switch (col.type) {
    case 'text': {
      const why = typeof v === 'string' && !dialect.holdsAnyText ? dialect.unstorableText(v) : undefined;
      return why && `${why} (the central's database is ${dialect.name})`;
    }
    case 'number': {
      const why = typeof v === 'string' && FLOAT_NAMES.has(v) ? dialect.unstorableFloat(v) : undefined;
      return why && `${why} (the central's database is ${dialect.name})`;
    }
    case 'integer':
      return typeof v === 'number' && !Number.isSafeInteger(v)
        ? `${v} as a JSON number: an integer beyond ±2^53 (or not whole) has lost its exact value; upgrade the site, which sends it as text`
        : undefined;
    default:
      return undefined;
  }
}

/** The columns of a batch's target tables that are narrower than the site's (see `TargetTables.narrowColumns`). */
export interface NarrowTargetColumns {
  table: string;
  header: ReadonlyMap<string, LiveColumnType>;
  detailTable?: string | null;
  detail?: ReadonlyMap<string, LiveColumnType>;
}

/**
 * Refuses, naming the column, a batch holding a value the central cannot store as it is (see
 * `unstorable`), or one that a narrow target column would change or refuse (`narrow`: a text
 * longer than it holds, a double with more decimals than a DECIMAL's scale; see `narrowValue`),
 * in one walk over the columns that can hold one. A deletion's key is checked too: a rounded one
 * would delete another header.
 */
export function checkStorableValues(
  batch: HeaderBatch,
  dialect: Dialect,
  messageId: string,
  narrow?: NarrowTargetColumns,
): void {
  const shape = batch.pipeline;
  const empty = new Map<string, LiveColumnType>();
  const checked = (cols: readonly ColumnSpec[], live: ReadonlyMap<string, LiveColumnType>) =>
    cols.flatMap((c, i) =>
      c.type === 'text' || c.type === 'number' || c.type === 'integer' || live.has(c.name) ? [i] : [],
    );
  const keyCols = shape.header.key.map((k) => shape.header.columns.find((c) => c.name === k)!);
  const liveOf = { header: narrow?.header ?? empty, detail: narrow?.detail ?? empty };
  const at = {
    header: checked(shape.header.columns, liveOf.header),
    detail: checked(shape.detail?.columns ?? [], liveOf.detail),
    key: checked(keyCols, liveOf.header),
  };
  const check = (
    row: readonly WireValue[],
    positions: readonly number[],
    cols: readonly ColumnSpec[],
    live: ReadonlyMap<string, LiveColumnType>,
    table: string | null | undefined,
    key: unknown,
  ) => {
    for (const i of positions) {
      const col = cols[i]!;
      const v = row[i]!;
      let why = unstorable(col, v, dialect);
      let name = col.name;
      const narrowCol = why ? undefined : live.get(col.name);
      const narrowWhy = narrowCol && narrowValue(dialect, narrowCol, v);
      if (narrowWhy) {
        why = `${narrowWhy}, where the site's column is ${describeSite(col)} (see syncctl db check: narrow-column)`;
        name = `${table ?? '?'}.${col.name}`;
      }
      if (why) {
        throw new MessageRejectedError(
          'bad-content',
          `column ${name} of header ${JSON.stringify(key).slice(0, 80)} holds ${why}`,
          { messageId, siteId: batch.siteId, type: 'batch' },
        );
      }
    }
  };
  for (const c of batch.changes) {
    if (c.op !== 'upsert') {
      check(c.key, at.key, keyCols, liveOf.header, narrow?.table, c.key);
      continue;
    }
    check(c.header, at.header, shape.header.columns, liveOf.header, narrow?.table, c.key);
    if (at.detail.length)
      for (const d of c.details) check(d, at.detail, shape.detail!.columns, liveOf.detail, narrow?.detailTable, c.key);
  }
}

/** Where each of `names` sits in `columns` (the shape's schema makes every key column one of them). */
function positions(names: readonly string[], columns: readonly string[]): number[] {
  return names.map((n) => columns.indexOf(n));
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

  async merge(m: DecodedMessage<'batch'>): Promise<MergeResult> {
    const batch = m.body;
    const pipeline = batch.pipeline.name;
    // Checks that need no transaction first: unknown or forged site, content, target tables.
    const row = await findSiteRow(this.db, batch.siteId, pipeline);
    if (!row) {
      throw new MessageRejectedError(
        'unknown-site',
        `no EstadoSyncGeneral row for site ${batch.siteId} pipeline ${JSON.stringify(pipeline)}`,
        { messageId: m.messageId, siteId: batch.siteId, type: 'batch' },
      );
    }
    checkSender(m, row);
    let byKey: Map<string, HeaderChange>;
    try {
      byKey = verifyHashes(batch, m.messageId);
      await this.targets.ensure(row.tabla_encabezado, row.tabla_detalle, batch.pipeline);
      checkStorableValues(batch, this.db.dialect, m.messageId, {
        table: row.tabla_encabezado,
        header: this.targets.narrowColumns(row.tabla_encabezado),
        detailTable: row.tabla_detalle,
        detail: row.tabla_detalle ? this.targets.narrowColumns(row.tabla_detalle) : undefined,
      });
      await this.recordShape(batch, row);
      await this.refuseCollidingKeys(batch, row.tabla_encabezado, row.tabla_detalle, m.messageId);
    } catch (err) {
      if (err instanceof MessageRejectedError) err.senderVerified = true;
      throw err;
    }

    const result = await this.db.transaction(async (tx): Promise<MergeResult> => {
      const counts = countChanges(batch.changes);
      const fresh = await claimInbox(tx, m, pipeline, counts);
      if (!fresh) return { status: 'duplicate', ...counts, stale: 0 };
      const won = await this.advanceLedger(tx, batch, byKey);
      await this.replaceRows(tx, batch, row.tabla_encabezado, row.tabla_detalle, won);
      const applied = countChanges(won);
      await recordProgress(tx, batch, counts);
      // A replayed dead letter no longer counts against its session.
      await tx.execute(`DELETE FROM sync_rejected WHERE message_id = ?`, [m.messageId]);
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
  private async recordShape(batch: HeaderBatch, row: { id_efector: number }): Promise<void> {
    const shape = JSON.stringify(batch.pipeline);
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

  /**
   * Writes the winners: deletions remove the header and its details; upserts delete the lines the
   * site no longer has, then update the header and each detail line in place (rows whose values did
   * not change are not written at all). Only the pages of rows that really changed get dirty,
   * which is what an incremental session's commit costs. A legacy target table without the
   * expected primary key takes delete + insert instead.
   */
  private async replaceRows(
    tx: Queryable,
    batch: HeaderBatch,
    headerTable: string,
    detailTable: string | null,
    won: HeaderChange[],
  ): Promise<void> {
    if (won.length === 0) return;
    const shape = batch.pipeline;
    const detail = shape.detail && detailTable ? { table: detailTable, shape: shape.detail } : undefined;
    const joinCols = detail
      ? shape.header.key.map((hk) => Object.entries(detail.shape.join).find(([, h]) => h === hk)![0])
      : [];
    const upserts = won.filter((c): c is Extract<HeaderChange, { op: 'upsert' }> => c.op === 'upsert');
    // Keys are bound as their columns hold them: a binary key is `base64:` text on the wire.
    const headerKey = tx.dialect.keyBinder(shape.header.columns, shape.header.key);
    const joinKey = detail ? tx.dialect.keyBinder(detail.shape.columns, joinCols) : headerKey;
    const inPlace =
      this.targets.keyedBy(headerTable, shape.header.key) &&
      (!detail || this.targets.keyedBy(detail.table, detail.shape.key));
    const site = batch.siteId;
    // A header whose new lines are too many to name in one "delete the others" statement is
    // replaced whole, like every header when the tables lack the key for in-place writes.
    const budget = tx.dialect.arrayParameters ? Infinity : tx.dialect.chunkSize(1, 20, 2000);
    const fitsBudget = (c: (typeof upserts)[number]) =>
      !detail || joinCols.length + c.details.length * detail.shape.key.length <= budget;
    const inPlaceUpserts = inPlace ? upserts.filter(fitsBudget) : [];
    // Rows removed first: those of deleted headers, and of every header replaced whole.
    const updatedInPlace = new Set<HeaderChange>(inPlaceUpserts);
    const cleared = won.filter((c) => !updatedInPlace.has(c)).map((c) => c.key);
    if (detail) await deleteByKeys(tx, detail.table, site, joinCols, cleared.map(joinKey));
    await deleteByKeys(tx, headerTable, site, shape.header.key, cleared.map(headerKey));
    // Then the lines these headers no longer have. Before the upserts, not after: the end state is
    // the same (a line another header of the batch now holds is kept and re-pointed below when both
    // headers are in one group of the delete, and deleted then written again when they are not:
    // non-array dialects take the headers in groups that fit their parameter limit), but a header
    // the central has never seen has no lines to look at, where after the upserts every line just
    // written would be found again (the whole detail set, on a first load).
    if (detail && inPlaceUpserts.length)
      await deleteVanishedDetails(tx, detail.table, site, joinCols, detail.shape, inPlaceUpserts, budget, joinKey);
    // In place: by the site column plus the key (only changed rows are written); else plain inserts.
    const by = (key: readonly string[]) => (inPlace ? [SITE_COLUMN, ...key] : undefined);
    // values are converted for the columns as they are (see TargetTables.liveSpec)
    const live = (table: string, specs: readonly ColumnSpec[]) => specs.map((s) => this.targets.liveSpec(table, s));
    await writeRows(
      tx,
      headerTable,
      site,
      shape.header.columns,
      upserts.map((c) => c.header),
      by(shape.header.key),
      live(headerTable, shape.header.columns),
    );
    if (!detail) return;
    const lines = upserts.flatMap((c) => c.details);
    await writeRows(
      tx,
      detail.table,
      site,
      detail.shape.columns,
      lines,
      by(detail.shape.key),
      live(detail.table, detail.shape.columns),
    );
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
  const err = new MessageRejectedError(
    'bad-content',
    `the ledger's stored key ${stored} is not a key of the batch but was found by one of them ` +
      `(${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}): ${LEDGER_TABLE}.header_key compares keys inexactly`,
    { siteId: batch.siteId, type: 'batch' },
  );
  err.senderVerified = true;
  return err;
}

/** Deletes the rows of `site` whose `columns` hold one of `keys`. */
async function deleteByKeys(
  tx: Queryable,
  table: string,
  site: number,
  columns: readonly string[],
  keys: ReadonlyArray<readonly unknown[]>,
): Promise<void> {
  const d = tx.dialect;
  const chunk = d.chunkSize(columns.length, 10, 500);
  for (let i = 0; i < keys.length; i += chunk) {
    const pred = d.keyPredicate(columns, keys.slice(i, i + chunk));
    await tx.execute(`DELETE FROM ${d.quote(table)} WHERE ${d.quote(SITE_COLUMN)} = ? AND ${pred.sql}`, [
      site,
      ...pred.params,
    ]);
  }
}

/**
 * Deletes the detail lines of these headers that their new detail set no longer has (run before
 * the upserts, see replaceRows). Headers are taken in groups whose parameters fit one statement
 * (all at once where key sets are array parameters); each group keeps only its own new lines, so a
 * line moving to a header of another group is deleted here and written again by the upsert.
 */
async function deleteVanishedDetails(
  tx: Queryable,
  table: string,
  site: number,
  joinCols: readonly string[],
  shape: DetailShape,
  upserts: ReadonlyArray<Extract<HeaderChange, { op: 'upsert' }>>,
  budget: number,
  joinKey: (key: readonly unknown[]) => unknown[],
): Promise<void> {
  const d = tx.dialect;
  const typeOf = (c: string) =>
    d.columnType(
      shape.columns.find((s) => s.name === c)!,
      true,
    );
  const cost = (c: (typeof upserts)[number]) => joinCols.length + c.details.length * shape.key.length;
  const keyAt = positions(
    shape.key,
    shape.columns.map((s) => s.name),
  );
  const lineKey = d.keyBinder(shape.columns, shape.key);
  let i = 0;
  while (i < upserts.length) {
    const headers: Array<readonly unknown[]> = [];
    const lines: Array<readonly unknown[]> = [];
    let params = 0;
    for (; i < upserts.length; i++) {
      const c = upserts[i]!;
      if (headers.length > 0 && params + cost(c) > budget) break;
      headers.push(joinKey(c.key));
      for (const line of c.details) lines.push(lineKey(keyAt.map((at) => line[at]!)));
      params += cost(c);
    }
    await tx.run(
      d.deleteUnlisted(
        table,
        [SITE_COLUMN, site],
        { columns: joinCols, sqlTypes: joinCols.map(typeOf), keys: headers },
        { columns: shape.key, sqlTypes: shape.key.map(typeOf), keys: lines },
      ),
    );
  }
}

/** Inserts rows of `site`, or upserts them by `upsertKey` (writing only rows whose values changed). */
async function writeRows(
  tx: Queryable,
  table: string,
  site: number,
  specs: ColumnSpec[],
  rows: WireValues[],
  upsertKey?: readonly string[],
  /** The columns' live types, which a dialect's statement may cast values to (default: `specs`). */
  liveSpecs: readonly ColumnSpec[] = specs,
): Promise<void> {
  if (rows.length === 0) return;
  const d = tx.dialect;
  const columns = [SITE_COLUMN, ...specs.map((s) => s.name)];
  const sqlTypes = [
    d.columnType({ name: SITE_COLUMN, type: 'integer', nullable: false }, true),
    ...liveSpecs.map((s) => d.columnType(s, false)),
  ];
  const chunk = d.writeManyChunk(columns.length);
  for (let i = 0; i < rows.length; i += chunk) {
    // each value bound for the column as it is (SQL Server: a DATE, DATETIME2 or DATETIMEOFFSET takes its own text)
    const values = rows
      .slice(i, i + chunk)
      .map((r) => [site, ...specs.map((s, j) => d.bindValue(r[j], s.type, liveSpecs[j]?.kind))]);
    await tx.run(d.writeMany(table, columns, sqlTypes, values, upsertKey));
  }
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

/**
 * Records the message id; false when it was already processed (redelivery or replay). A concurrent
 * duplicate waits on the first one's row lock and then sees it.
 */
export async function claimInbox(
  tx: Queryable,
  m: DecodedMessage,
  pipeline: string | null,
  counts: { headers: number; details: number; deletions: number },
): Promise<boolean> {
  const sessionId = (m.body as { sessionId?: string }).sessionId ?? null;
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
