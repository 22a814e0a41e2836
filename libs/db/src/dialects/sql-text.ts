import type { ColumnKind, ColumnSpec } from '@sitesync/protocol';

/** `(?, ?), (?, ?), ...`: `rows` tuples of `width` placeholders. Merges ask for the same few again and again. */
const valuesLists = new Map<string, string>();

export function valuesList(width: number, rows: number): string {
  const key = `${width}x${rows}`;
  let text = valuesLists.get(key);
  if (text === undefined) {
    const tuple = `(${new Array<string>(width).fill('?').join(', ')})`;
    text = new Array<string>(rows).fill(tuple).join(', ');
    if (valuesLists.size >= 64) valuesLists.clear();
    valuesLists.set(key, text);
  }
  return text;
}

/** The rows' values in one list (`Array.prototype.flat` is several times slower on thousands of rows). */
export function flatten(rows: ReadonlyArray<readonly unknown[]>): unknown[] {
  const out: unknown[] = [];
  for (const r of rows) for (let i = 0; i < r.length; i++) out.push(r[i]);
  return out;
}

/** Opening quote character code -> the character that closes it (doubled, it stands for itself). */
const QUOTE_CLOSE: Record<number, string> = { 34: '"', 39: "'", 96: '`', 91: ']' };

/**
 * Replaces each `?` placeholder with `<sigil><n>`, numbered from `first`, leaving alone a `?`
 * inside a quoted identifier (`"a?b"`, `[a?b]`, `` `a?b` ``) or a string literal (`'?'`): a
 * column may be named with one. One pass over the characters with string appends: a merge
 * statement carries thousands of placeholders, and a regex with a callback per match cost ~9%
 * of the central's CPU in the initial-load profile.
 */
export function numberPlaceholders(sql: string, sigil: string, first: number): string {
  let out = '';
  let n = first;
  let from = 0;
  const len = sql.length;
  for (let i = 0; i < len;) {
    const c = sql.charCodeAt(i);
    if (c === 63) {
      out += sql.slice(from, i) + sigil + n++;
      from = ++i;
      continue;
    }
    const close = QUOTE_CLOSE[c];
    if (close === undefined) {
      i++;
      continue;
    }
    // Skip to the closing quote; a doubled closing quote is an escaped one inside.
    let j = i + 1;
    for (;;) {
      j = sql.indexOf(close, j);
      if (j < 0) {
        j = len;
        break;
      }
      if (sql[j + 1] !== close) break;
      j += 2;
    }
    i = j + 1;
  }
  return out + sql.slice(from);
}

/** `DECIMAL(p, s)` of the site's precision and scale when this database allows them, else undefined. */
export function decimalWithin(spec: ColumnSpec, maxPrecision: number, maxScale: number): string | undefined {
  const { precision, scale = 0 } = spec;
  return precision !== undefined && precision <= maxPrecision && scale <= maxScale && scale <= precision
    ? `DECIMAL(${precision}, ${scale})`
    : undefined;
}

/**
 * A kind's column type from a dialect's table (`kindType`): undefined for a spec without a kind
 * and for the kinds the table leaves to the coarse type (text, binary, boolean).
 */
export function kindTypeOf(
  spec: ColumnSpec,
  types: Partial<Record<ColumnKind, string | undefined>>,
): string | undefined {
  return spec.kind === undefined ? undefined : types[spec.kind];
}
