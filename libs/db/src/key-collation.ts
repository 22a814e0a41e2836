/**
 * How a text column compares keys, beyond exact equality. Both MariaDB's and SQL Server's usual
 * default collations ignore case, and pad trailing spaces: 'abc', 'ABC' and 'abc ' are one key to
 * them, where a site (and PostgreSQL, SQLite) keeps three.
 */
export interface KeyComparison {
  ignoresCase: boolean;
  ignoresAccents: boolean;
  ignoresTrailingSpaces: boolean;
}

export const EXACT_COMPARISON: KeyComparison = Object.freeze({
  ignoresCase: false,
  ignoresAccents: false,
  ignoresTrailingSpaces: false,
});

export function isExactComparison(c: KeyComparison): boolean {
  return !c.ignoresCase && !c.ignoresAccents && !c.ignoresTrailingSpaces;
}

/** What `c` merges that `than` keeps apart ('case', 'accents', 'trailing spaces'); empty when nothing. */
export function loosenings(c: KeyComparison, than: KeyComparison = EXACT_COMPARISON): string[] {
  const out: string[] = [];
  if (c.ignoresCase && !than.ignoresCase) out.push('case');
  if (c.ignoresAccents && !than.ignoresAccents) out.push('accents');
  if (c.ignoresTrailingSpaces && !than.ignoresTrailingSpaces) out.push('trailing spaces');
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
  if (c.ignoresCase) s = s.toLowerCase();
  return s;
}
