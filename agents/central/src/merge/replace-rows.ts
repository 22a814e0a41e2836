import type { ColumnSpec, HeaderBatch, HeaderChange, PipelineShape, WireValues } from '@sitesync/protocol';
import type { Queryable } from '@sitesync/db';
import { SITE_COLUMN, type TargetTables } from './target-tables';
import { positions } from './batch-content';

type DetailShape = NonNullable<PipelineShape['detail']>;

/**
 * Writes the winners: deletions remove the header and its details; upserts delete the lines the
 * site no longer has, then update the header and each detail line in place (rows whose values did
 * not change are not written at all). Only the pages of rows that really changed get dirty,
 * which is what an incremental session's commit costs. A legacy target table without the
 * expected primary key takes delete + insert instead.
 */
export async function replaceRows(
  tx: Queryable,
  targets: TargetTables,
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
    targets.keyedBy(headerTable, shape.header.key) && (!detail || targets.keyedBy(detail.table, detail.shape.key));
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
  const live = (table: string, specs: readonly ColumnSpec[]) => specs.map((s) => targets.liveSpec(table, s));
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
