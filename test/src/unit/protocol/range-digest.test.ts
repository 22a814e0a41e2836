import { describe, expect, it } from 'vitest';
import { SortedHashes, encodeKey, inRange, type KeyRange } from '@sitesync/protocol';

const hashOf = (k: string) => k.length.toString(16).padStart(32, '0');

function sideOf(keys: string[]): SortedHashes {
  return new SortedHashes(new Map(keys.map((k) => [k, hashOf(k)])));
}

describe('range digests (verify over the broker)', () => {
  // Keys a case-blind, trailing-space-blind collation (MariaDB, SQL Server defaults) calls equal.
  const keys = ['a', 'A', 'a ', 'b', 'B', 'é', '10', '9', '2'].map((v) => encodeKey([v]));

  it('sort keys by code unit, so that keys a database collation calls equal stay apart', () => {
    const side = sideOf([...keys].reverse());
    expect(side.keys).toEqual([...keys].sort());
    expect(new Set(side.keys).size).toBe(keys.length);
    expect(side.keys.indexOf(encodeKey(['A']))).toBeLessThan(side.keys.indexOf(encodeKey(['a'])));
  });

  it('split a range into parts that cover it exactly, cut at the side own keys, with the same digests as asked alone', () => {
    const side = sideOf(keys);
    const whole: KeyRange = { lo: null, hi: null };
    const parts = side.split(whole, 4);
    expect(parts).toHaveLength(4);
    expect(parts[0]!.lo).toBeNull();
    expect(parts[3]!.hi).toBeNull();
    for (let i = 1; i < parts.length; i++) expect(parts[i]!.lo).toBe(parts[i - 1]!.hi);
    expect(parts.reduce((n, p) => n + p.count, 0)).toBe(keys.length);
    for (const p of parts) {
      expect(side.summary(p)).toEqual(p);
      for (const [k] of side.entries(p)) expect(inRange(k, p)).toBe(true);
    }
    // The other side computes the same for the same range whatever order it read its keys in.
    const other = sideOf([...keys].reverse());
    for (const p of parts) expect(other.summary(p)).toEqual(p);
  });

  it('tell apart sides that differ by one key, its hash, or a key of another case', () => {
    const site = sideOf(keys);
    const whole: KeyRange = { lo: null, hi: null };
    const lacking = sideOf(keys.filter((k) => k !== encodeKey(['a '])));
    expect(lacking.summary(whole).digest).not.toBe(site.summary(whole).digest);
    const changed = new SortedHashes(
      new Map(keys.map((k) => [k, k === encodeKey(['B']) ? 'f'.repeat(32) : hashOf(k)])),
    );
    expect(changed.summary(whole).count).toBe(site.summary(whole).count);
    expect(changed.summary(whole).digest).not.toBe(site.summary(whole).digest);
    const recased = sideOf(keys.map((k) => (k === encodeKey(['b']) ? encodeKey(['c']) : k)));
    expect(recased.summary(whole).digest).not.toBe(site.summary(whole).digest);
  });

  it('answer an empty range, and never split into more parts than keys', () => {
    const side = sideOf(keys);
    const none = side.summary({ lo: encodeKey(['ÿ']), hi: null });
    expect(none.count).toBe(0);
    expect(side.entries({ lo: encodeKey(['ÿ']), hi: null })).toEqual([]);
    expect(side.split({ lo: null, hi: encodeKey(['2']) }, 16).every((p) => p.count > 0)).toBe(true);
    expect(sideOf([]).summary({ lo: null, hi: null }).count).toBe(0);
  });
});
