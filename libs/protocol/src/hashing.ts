import { createHash, hash } from 'node:crypto';
import type { HashAlgorithm } from './pipeline';

/** A column value as it travels on the wire: JSON scalars only. */
export type WireValue = string | number | boolean | null;
/** One table row on the wire: column name -> value. */
export type WireRow = Record<string, WireValue>;

/** The wire forms of the doubles JSON cannot carry as numbers. */
export const FLOAT_NAMES: ReadonlySet<string> = new Set(['NaN', 'Infinity', '-Infinity', '-0']);

/**
 * Turns a value read by any database driver into its wire form, the same way on every side:
 * Date -> ISO-8601 UTC, bigint -> decimal string, Buffer -> `base64:` string, undefined -> null,
 * NaN / ±Infinity / -0 -> `'NaN'`, `'Infinity'`, `'-Infinity'`, `'-0'`.
 */
export function toWireValue(value: unknown): WireValue {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // JSON has no NaN, no infinities and no negative zero: a double holding one travels as its
      // name (the central stores it where its database can, and refuses the batch where not).
      if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
      if (value === 0 && 1 / value < 0) return '-0';
      return value;
    case 'bigint':
      return value.toString();
  }
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return `base64:${value.toString('base64')}`;
  throw new TypeError(`unsupported column value of type ${Object.prototype.toString.call(value)}`);
}

/** Converts a driver row into a wire row holding only `columns`, in that order. */
export function toWireRow(row: Record<string, unknown>, columns: readonly string[]): WireRow {
  const out: WireRow = {};
  for (const c of columns) out[c] = toWireValue(row[c]);
  return out;
}

/**
 * A row as its values in a fixed column order (the pipeline shape's): how the site reads rows and
 * how a batch carries them (schema version 2). Cheaper than a {@link WireRow} at both ends: no
 * object per row, and no column names in the message.
 */
export type WireValues = WireValue[];

/** Converts a driver row read as an array into its wire values, in place. */
export function toWireValues(values: unknown[]): WireValues {
  for (let i = 0; i < values.length; i++) values[i] = toWireValue(values[i]);
  return values as WireValues;
}

/**
 * A column set in canonical (sorted) order: where each sorted name sits in the given order, the
 * sorted names' `"name":` prefixes (`,`-led after the first), and the same with the opening quote
 * of a string value.
 */
interface Layout {
  order: number[];
  prefixes: string[];
  quoted: string[];
}

function layoutFor(columns: readonly string[]): Layout {
  const keys = [...columns].sort();
  const prefixes = keys.map((k, i) => (i > 0 ? ',' : '') + JSON.stringify(k) + ':');
  return { order: keys.map((k) => columns.indexOf(k)), prefixes, quoted: prefixes.map((p) => p + '"') };
}

/**
 * Whether `JSON.stringify` writes the string as itself between quotes: it holds no `"`, no `\\`,
 * no control character U+0000-U+001F and no UTF-16 surrogate (a lone one is written `\\uXXXX`; a
 * pair is written as is, but is left to `JSON.stringify` here). Every other code unit, U+007F,
 * U+2028 and U+2029 included, JSON writes as is (ES2019 well-formed JSON.stringify).
 */
function plainString(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

/**
 * Exactly `JSON.stringify(value)`, written directly for the usual wire values: a finite number as
 * `Number::toString` (what JSON writes; -0 is "0" both ways), true, false and null as their names.
 * Anything else (a string needing escapes, NaN, ±Infinity, undefined) goes to `JSON.stringify`.
 */
function jsonValue(value: WireValue): string {
  switch (typeof value) {
    case 'string':
      return plainString(value) ? '"' + value + '"' : JSON.stringify(value);
    case 'number':
      // v - v is 0 for every finite number, NaN for NaN and ±Infinity (which JSON writes as null)
      return value - value === 0 ? '' + value : JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
  }
  return value === null ? 'null' : JSON.stringify(value);
}

/**
 * `[` + `"column":value` pairs in column-name order, comma-separated, + `]`, of a row given as
 * values; each value as `JSON.stringify` writes it (see {@link jsonValue}).
 */
function canonicalValues(values: readonly WireValue[], { order, prefixes, quoted }: Layout): string {
  let s = '[';
  for (let i = 0; i < order.length; i++) {
    const v = values[order[i]!]!;
    // The common case, a string needing no escape, with one concatenation fewer.
    if (typeof v === 'string' && plainString(v)) s += quoted[i]! + v + '"';
    else s += prefixes[i]! + jsonValue(v);
  }
  return s + ']';
}

/** Lines up to which an insertion sort beats the built-in one; above it, its n² would not. */
const INSERTION_SORT_MAX = 16;

/**
 * Sorts strings in place in the order `Array.prototype.sort()` gives them (by UTF-16 code units,
 * which `>` compares the same way): an insertion sort for the few detail lines of a usual header,
 * cheaper than the built-in (and for equal strings the order cannot show); the built-in sort for
 * more, so that a header with very many lines (a batch is untrusted input) costs n log n.
 */
function sortLines(lines: string[]): void {
  if (lines.length > INSERTION_SORT_MAX) {
    lines.sort();
    return;
  }
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    let j = i - 1;
    while (j >= 0 && lines[j]! > line) {
      lines[j + 1] = lines[j]!;
      j--;
    }
    lines[j + 1] = line;
  }
}

/** A row given as an object, in canonical form (its columns sorted for this row alone). */
function canonicalRow(row: WireRow): string {
  return canonicalValues(Object.values(row), layoutFor(Object.keys(row)));
}

/** `h<header>` then `\nd<line>` per detail line in sorted order: the text a header's hash is taken of. */
function headerText(header: string, lines: string[]): string {
  let text = 'h' + header;
  if (lines.length > 1) sortLines(lines);
  for (let i = 0; i < lines.length; i++) text += '\nd' + lines[i]!;
  return text;
}

/**
 * The canonical hash of one header with its detail set, the definition both sides follow (the
 * peripheral to find what changed, the central to verify what arrived), on rows as objects:
 * column order and detail order do not matter. The text hashed is `h<header>` then `\nd<line>`
 * per detail line in sorted order, in one `crypto.hash`. The agents hash with
 * {@link HeaderHasher}, which gives the same digest for rows as value arrays.
 */
export function hashHeader(algorithm: HashAlgorithm, header: WireRow, details: readonly WireRow[] = []): string {
  return hashText(algorithm, headerText(canonicalRow(header), details.map(canonicalRow)));
}

/**
 * {@link hashHeader} for rows given as {@link WireValues} in a pipeline's column orders, with the
 * same digest as the same rows given as objects. The columns are sorted once, here, not per row.
 */
export class HeaderHasher {
  private readonly header: Layout;
  private readonly detail: Layout;

  constructor(
    readonly algorithm: HashAlgorithm,
    headerColumns: readonly string[],
    detailColumns: readonly string[] = [],
  ) {
    this.header = layoutFor(headerColumns);
    this.detail = layoutFor(detailColumns);
  }

  hash(header: readonly WireValue[], details: ReadonlyArray<readonly WireValue[]> = []): string {
    let text = 'h' + canonicalValues(header, this.header);
    const n = details.length;
    // headerText, without the array of lines when there is none or one to sort.
    if (n === 1) text += '\nd' + canonicalValues(details[0]!, this.detail);
    else if (n > 1) {
      const lines = new Array<string>(n);
      for (let i = 0; i < n; i++) lines[i] = canonicalValues(details[i]!, this.detail);
      sortLines(lines);
      for (let i = 0; i < n; i++) text += '\nd' + lines[i]!;
    }
    return hashText(this.algorithm, text);
  }
}

/** One-shot `crypto.hash` where Node has it (20.12+), else a Hash object: the same digest. */
const hashText: (algorithm: HashAlgorithm, text: string) => string =
  typeof hash === 'function'
    ? (algorithm, text) => hash(algorithm, text, 'hex')
    : (algorithm, text) => createHash(algorithm).update(text).digest('hex');

/** Longest encoded header key the side table and the ledger hold (varchar(400); 255 on MySQL). */
export const MAX_HEADER_KEY_LENGTH = 255;

/**
 * Canonical text form of a key (list of key values), used as the ledger/side-table key. Numbers
 * are written as strings, so a driver returning an integer column as a number and a bigint as a
 * string (pg, tedious), or a column widened from int to bigint, give the same key.
 */
export function encodeKey(values: readonly WireValue[]): string {
  // JSON.stringify of the array with numbers as String(v), written directly: a number's text never
  // needs an escape. A value that is no wire scalar (as undefined, which an array writes as null)
  // takes the plain path.
  let s = '[';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) s += ',';
    if (typeof v === 'number') s += '"' + v + '"';
    else if (typeof v === 'string' || typeof v === 'boolean' || v === null) s += jsonValue(v);
    else return JSON.stringify(values.map((x) => (typeof x === 'number' ? String(x) : x)));
  }
  return s + ']';
}

export function decodeKey(key: string): WireValue[] {
  const parsed: unknown = JSON.parse(key);
  if (!Array.isArray(parsed)) throw new TypeError(`key ${key} is not a JSON array`);
  return parsed as WireValue[];
}

/** sha256 of the exact body bytes; carried in the `x-sitesync-checksum` header. */
export function bodyChecksum(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** Fingerprint of an intervention's content: the source deletes it only if this is unchanged since sent. */
export function interventionHash(i: {
  guid: string;
  procedure: { code: string; version: number };
  finished: boolean;
  payload: string;
}): string {
  return createHash('sha256')
    .update(JSON.stringify([i.guid, i.procedure.code, i.procedure.version, i.finished, i.payload]))
    .digest('hex');
}
