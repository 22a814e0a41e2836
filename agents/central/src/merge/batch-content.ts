import {
  FLOAT_NAMES,
  MAX_HEADER_KEY_LENGTH,
  MessageRejectedError,
  encodeKey,
  HeaderHasher,
  type ColumnSpec,
  type HeaderBatch,
  type HeaderChange,
  type WireValue,
} from '@sitesync/protocol';
import { describeSite, narrowValue, type Dialect, type LiveColumnType } from '@sitesync/db';

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
export function positions(names: readonly string[], columns: readonly string[]): number[] {
  return names.map((n) => columns.indexOf(n));
}
