/**
 * How a text column compares keys, beyond exact equality. Both MariaDB's and SQL Server's usual
 * default collations ignore case, and pad trailing spaces: 'abc', 'ABC' and 'abc ' are one key to
 * them, where a site keeps three. PostgreSQL and SQLite compare exactly by default, but a legacy
 * table can say otherwise: a `citext` or nondeterministic column, SQLite's NOCASE or RTRIM.
 */
export interface KeyComparison {
  ignoresCase: boolean;
  /** Only A-Z and a-z are one (SQLite's NOCASE): 'É' and 'é' stay two. */
  asciiCaseOnly?: boolean;
  ignoresAccents: boolean;
  ignoresTrailingSpaces: boolean;
  /** Canonically equivalent texts are one ('é' precomposed and 'e' + U+0301): ICU nondeterministic collations. */
  ignoresNormalization?: boolean;
}

export const EXACT_COMPARISON: KeyComparison = Object.freeze({
  ignoresCase: false,
  ignoresAccents: false,
  ignoresTrailingSpaces: false,
});

export function isExactComparison(c: KeyComparison): boolean {
  return loosenings(c).length === 0;
}

/** What `c` merges that `than` keeps apart ('case', 'accents', ...); empty when nothing. */
export function loosenings(c: KeyComparison, than: KeyComparison = EXACT_COMPARISON): string[] {
  const out: string[] = [];
  if (c.ignoresCase && (!than.ignoresCase || (than.asciiCaseOnly && !c.asciiCaseOnly))) {
    out.push(c.asciiCaseOnly ? 'ASCII case' : 'case');
  }
  if (c.ignoresAccents && !than.ignoresAccents) out.push('accents');
  if (c.ignoresTrailingSpaces && !than.ignoresTrailingSpaces) out.push('trailing spaces');
  if (c.ignoresNormalization && !than.ignoresNormalization) out.push('Unicode normalization');
  return out;
}

/**
 * A value as `c` sees it: values with the same fold are one key under that comparison. An
 * approximation of the server's collation (it catches case, accents and trailing spaces, not every
 * expansion a linguistic collation makes): the server's own answer, rows it finds by a key that are
 * not exactly that key, backs it up where rows are stored.
 */
export function foldKeyValue(v: unknown, c: KeyComparison): unknown {
  if (typeof v !== 'string') return v;
  let s = v;
  if (c.ignoresTrailingSpaces) s = s.replace(/ +$/, '');
  if (c.ignoresAccents) s = s.normalize('NFD').replace(/\p{M}+/gu, '');
  else if (c.ignoresNormalization) s = s.normalize('NFC');
  if (c.ignoresCase) s = c.asciiCaseOnly ? s.replace(/[A-Z]+/g, (u) => u.toLowerCase()) : s.toLowerCase();
  return s;
}
