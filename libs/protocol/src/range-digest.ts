import { createHash } from 'node:crypto';

/** Sub-ranges a site splits a differing range into (verify over the broker). */
export const DEFAULT_VERIFY_FANOUT = 16;
/** A range of at most this many headers (on either side) is answered with its (key, hash) list. */
export const DEFAULT_VERIFY_LEAF_SIZE = 32;
/** Most sub-ranges a request may ask a site to split a range into. */
export const MAX_VERIFY_FANOUT = 64;
/** Most (key, hash) entries a leaf answer may carry. */
export const MAX_VERIFY_LEAF_SIZE = 512;
/** Most ranges one verify request (and its reply) may carry. */
export const MAX_VERIFY_RANGES = 256;

/**
 * A key range `[lo, hi)` over encoded header keys, compared as JavaScript strings (UTF-16 code
 * units), never by a database collation: MariaDB's and SQL Server's usual collations ignore case
 * and trailing spaces. `null` is an open end.
 */
export interface KeyRange {
  lo: string | null;
  hi: string | null;
}

/** What one side holds in a range: how many headers and a digest of their sorted `(key, hash)` lines. */
export interface RangeSummary extends KeyRange {
  count: number;
  /** sha256 over `<key> <hash>\n` per header in key order; equal digests mean equal data. */
  digest: string;
}

/** Whether `key` lies in `range`. */
export function inRange(key: string, range: KeyRange): boolean {
  return (range.lo === null || key >= range.lo) && (range.hi === null || key < range.hi);
}

/** JavaScript's default string order (code units), spelt out so that no locale ever creeps in. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * One side's header hashes sorted by key: the digests, splits and leaf lists of key ranges that
 * `syncctl verify` and the site agent compute identically.
 */
export class SortedHashes {
  readonly keys: string[];
  private readonly hashes: string[];

  constructor(byKey: ReadonlyMap<string, string>) {
    this.keys = [...byKey.keys()].sort(compareKeys);
    this.hashes = this.keys.map((k) => byKey.get(k)!);
  }

  get size(): number {
    return this.keys.length;
  }

  /** The first index whose key is >= `bound` (`null`: the end when `end`, else 0). */
  private index(bound: string | null, end: boolean): number {
    if (bound === null) return end ? this.keys.length : 0;
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid]! < bound) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The index span `[from, to)` of `range`. */
  private span(range: KeyRange): [number, number] {
    const from = this.index(range.lo, false);
    return [from, Math.max(from, this.index(range.hi, true))];
  }

  private digestOf(from: number, to: number): string {
    const h = createHash('sha256');
    for (let i = from; i < to; i++) h.update(`${this.keys[i]} ${this.hashes[i]}\n`);
    return h.digest('hex');
  }

  /** Count and digest of `range`. */
  summary(range: KeyRange): RangeSummary {
    const [from, to] = this.span(range);
    return { lo: range.lo, hi: range.hi, count: to - from, digest: this.digestOf(from, to) };
  }

  count(range: KeyRange): number {
    const [from, to] = this.span(range);
    return to - from;
  }

  /** The `(key, hash)` pairs of `range`, in key order. */
  entries(range: KeyRange): Array<[string, string]> {
    const [from, to] = this.span(range);
    const out: Array<[string, string]> = [];
    for (let i = from; i < to; i++) out.push([this.keys[i]!, this.hashes[i]!]);
    return out;
  }

  /**
   * `range` cut into at most `parts` contiguous sub-ranges by this side's own keys, each with its
   * summary: the first starts at `range.lo`, the last ends at `range.hi`, so together they cover it.
   */
  split(range: KeyRange, parts: number): RangeSummary[] {
    const [from, to] = this.span(range);
    const n = to - from;
    const k = Math.max(1, Math.min(parts, n));
    const starts: number[] = [];
    for (let i = 0; i < k; i++) starts.push(from + Math.floor((i * n) / k));
    return starts.map((start, i) => {
      const end = i + 1 < k ? starts[i + 1]! : to;
      return {
        lo: i === 0 ? range.lo : this.keys[start]!,
        hi: i + 1 < k ? this.keys[end]! : range.hi,
        count: end - start,
        digest: this.digestOf(start, end),
      };
    });
  }
}
