import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  bodyChecksum,
  decodeKey,
  encodeKey,
  HeaderHasher,
  hashHeader,
  toWireRow,
  toWireValue,
  toWireValues,
  type WireRow,
} from '@sitesync/protocol';

const HEADER: WireRow = {
  id: 1,
  patient: 'Ana',
  total: 12.5,
  paid: true,
  note: null,
  created: '2024-05-01T10:00:00.000Z',
};
const DETAILS: WireRow[] = [
  { order_id: 1, line: 1, product: 'glucose', qty: 2 },
  { order_id: 1, line: 2, product: 'insulin', qty: 1 },
  { order_id: 1, line: 3, product: 'saline', qty: 5 },
];

/** Same columns and values, keys inserted in the reverse order. */
function reversed(row: WireRow): WireRow {
  return Object.fromEntries(Object.entries(row).reverse());
}

describe('header hash', () => {
  it('is md5 unless the pipeline says otherwise, and sha1 / sha256 are selectable', () => {
    expect(hashHeader('md5', HEADER, DETAILS)).toMatch(/^[0-9a-f]{32}$/);
    expect(hashHeader('sha1', HEADER, DETAILS)).toMatch(/^[0-9a-f]{40}$/);
    expect(hashHeader('sha256', HEADER, DETAILS)).toMatch(/^[0-9a-f]{64}$/);
    const all = new Set(['md5', 'sha1', 'sha256'].map((a) => hashHeader(a as 'md5', HEADER, DETAILS)));
    expect(all.size).toBe(3);
  });

  it('really is the named algorithm over a canonical text', () => {
    // The canonical form is an implementation detail, but it must be a digest of the named algorithm:
    // recompute it from the documented shape ("h" + sorted header, then "\nd" + each sorted detail line).
    const canon = (r: WireRow) =>
      '[' +
      Object.keys(r)
        .sort()
        .map((k) => JSON.stringify(k) + ':' + JSON.stringify(r[k]))
        .join(',') +
      ']';
    const text =
      'h' +
      canon(HEADER) +
      DETAILS.map(canon)
        .sort()
        .map((l) => '\nd' + l)
        .join('');
    for (const alg of ['md5', 'sha1', 'sha256'] as const) {
      expect(hashHeader(alg, HEADER, DETAILS)).toBe(createHash(alg).update(text).digest('hex'));
    }
  });

  it('is deterministic', () => {
    expect(hashHeader('md5', HEADER, DETAILS)).toBe(
      hashHeader(
        'md5',
        { ...HEADER },
        DETAILS.map((d) => ({ ...d })),
      ),
    );
  });

  it('does not depend on column order (header or detail)', () => {
    const h = hashHeader('md5', HEADER, DETAILS);
    expect(hashHeader('md5', reversed(HEADER), DETAILS.map(reversed))).toBe(h);
  });

  it('does not depend on the order of the detail lines', () => {
    const h = hashHeader('sha256', HEADER, DETAILS);
    expect(hashHeader('sha256', HEADER, [...DETAILS].reverse())).toBe(h);
    expect(hashHeader('sha256', HEADER, [DETAILS[1]!, DETAILS[2]!, DETAILS[0]!])).toBe(h);
  });

  it('changes when any header value changes', () => {
    const base = hashHeader('md5', HEADER, DETAILS);
    const variants: WireRow[] = [
      { ...HEADER, id: 2 },
      { ...HEADER, patient: 'Ana ' },
      { ...HEADER, total: 12.51 },
      { ...HEADER, paid: false },
      { ...HEADER, note: '' },
      { ...HEADER, created: '2024-05-01T10:00:00.001Z' },
    ];
    const seen = new Set([base]);
    for (const v of variants) seen.add(hashHeader('md5', v, DETAILS));
    expect(seen.size).toBe(variants.length + 1);
  });

  it('changes when any detail value changes, a detail is added or one is removed', () => {
    const base = hashHeader('md5', HEADER, DETAILS);
    const changedQty = DETAILS.map((d, i) => (i === 2 ? { ...d, qty: 6 } : d));
    const hashes = [
      hashHeader('md5', HEADER, changedQty),
      hashHeader('md5', HEADER, [...DETAILS, { order_id: 1, line: 4, product: 'gauze', qty: 1 }]),
      hashHeader('md5', HEADER, DETAILS.slice(0, 2)),
      hashHeader('md5', HEADER, []),
      hashHeader('md5', HEADER, [...DETAILS, DETAILS[0]!]), // a duplicated line counts
    ];
    expect(new Set([base, ...hashes]).size).toBe(hashes.length + 1);
  });

  it('tells apart values that only look alike: 1 vs "1", null vs "null", true vs "true", missing vs null', () => {
    const pairs: Array<[WireRow, WireRow]> = [
      [{ a: 1 }, { a: '1' }],
      [{ a: null }, { a: 'null' }],
      [{ a: true }, { a: 'true' }],
      [{ a: 1 }, { a: 1, b: null }],
      [
        { a: 'x', b: 'y' },
        { a: 'xy', b: '' },
      ],
      [{ 'a":1,"b': 2 }, { a: 1, b: 2 }],
    ];
    for (const [x, y] of pairs) expect(hashHeader('md5', x)).not.toBe(hashHeader('md5', y));
  });

  it('does not confuse header values with detail lines', () => {
    expect(hashHeader('md5', { a: 1 }, [{ b: 2 }])).not.toBe(hashHeader('md5', { b: 2 }, [{ a: 1 }]));
    expect(hashHeader('md5', { a: 1 }, [])).not.toBe(hashHeader('md5', {}, [{ a: 1 }]));
    // a string holding what looks like a detail separator is escaped by JSON, so it cannot forge a line
    expect(hashHeader('md5', { a: 'x]\nd[' }, [])).not.toBe(hashHeader('md5', { a: 'x' }, [{}]));
  });

  it('matches between peripheral and central when both convert driver values the same way', () => {
    const driverRow = {
      id: 7n,
      at: new Date('2024-01-02T03:04:05.678Z'),
      blob: Buffer.from([1, 2, 3]),
      missing: undefined,
    };
    const cols = ['id', 'at', 'blob', 'missing'];
    const a = hashHeader('md5', toWireRow(driverRow, cols));
    const b = hashHeader('md5', { missing: null, blob: 'base64:AQID', at: '2024-01-02T03:04:05.678Z', id: '7' });
    expect(a).toBe(b);
  });
});

describe('wire values', () => {
  it('passes JSON scalars through', () => {
    expect(toWireValue('text')).toBe('text');
    expect(toWireValue('')).toBe('');
    expect(toWireValue(0)).toBe(0);
    expect(toWireValue(-12.25)).toBe(-12.25);
    expect(toWireValue(true)).toBe(true);
    expect(toWireValue(false)).toBe(false);
    expect(toWireValue(null)).toBeNull();
  });

  it('turns undefined into null', () => {
    expect(toWireValue(undefined)).toBeNull();
  });

  it('turns a Date into ISO-8601 UTC with milliseconds', () => {
    expect(toWireValue(new Date(Date.UTC(2024, 1, 29, 23, 59, 58, 7)))).toBe('2024-02-29T23:59:58.007Z');
  });

  it('turns a bigint into its decimal string, beyond the safe integer range too', () => {
    expect(toWireValue(9_007_199_254_740_993n)).toBe('9007199254740993');
    expect(toWireValue(-5n)).toBe('-5');
  });

  it('turns a Buffer into a base64: string', () => {
    expect(toWireValue(Buffer.from('hola'))).toBe('base64:aG9sYQ==');
    expect(toWireValue(Buffer.alloc(0))).toBe('base64:');
  });

  it('sends NaN, the infinities and -0 by name, never as null or 0 (JSON has none of them)', () => {
    expect(toWireValue(NaN)).toBe('NaN');
    expect(toWireValue(Infinity)).toBe('Infinity');
    expect(toWireValue(-Infinity)).toBe('-Infinity');
    expect(toWireValue(-0)).toBe('-0');
    expect(toWireValue(0)).toBe(0);
    expect(JSON.stringify([toWireValue(-0), toWireValue(NaN)])).toBe('["-0","NaN"]');
  });

  it('refuses values it cannot represent faithfully', () => {
    expect(() => toWireValue({ a: 1 })).toThrow(TypeError);
    expect(() => toWireValue([1, 2])).toThrow(TypeError);
    expect(() => toWireValue(Symbol('s'))).toThrow(TypeError);
    expect(() => toWireValue(new Date(NaN))).toThrow();
  });

  it('a wire row holds exactly the asked columns, in that order, missing ones as null', () => {
    const row = toWireRow({ b: 2, a: 1, extra: 'x' }, ['a', 'b', 'c']);
    expect(row).toEqual({ a: 1, b: 2, c: null });
    expect(Object.keys(row)).toEqual(['a', 'b', 'c']);
  });
});

describe('keys and checksums', () => {
  it('a key survives encoding and decoding (numbers as their decimal text), and equal keys encode equally', () => {
    expect(decodeKey(encodeKey([1, 'A-7', null, true]))).toEqual(['1', 'A-7', null, true]);
    expect(encodeKey([1, 'x'])).toBe(encodeKey([1, 'x']));
    expect(encodeKey(['a,b'])).not.toBe(encodeKey(['a', 'b']));
  });

  it('an integer key read as a number and the same key read as a bigint string encode equally', () => {
    // pg and tedious return int columns as numbers and bigint columns as strings.
    expect(encodeKey([5, 'x'])).toBe(encodeKey(['5', 'x']));
    expect(encodeKey([9007199254740993n.toString()])).toBe('["9007199254740993"]');
  });

  it('decoding something that is not a key array fails', () => {
    expect(() => decodeKey('{"a":1}')).toThrow(TypeError);
    expect(() => decodeKey('not json')).toThrow();
  });

  it('the body checksum is sha256 of the exact bytes', () => {
    const body = Buffer.from('{"a":1}');
    expect(bodyChecksum(body)).toBe(createHash('sha256').update(body).digest('hex'));
    expect(bodyChecksum(Buffer.from('{"a":1} '))).not.toBe(bodyChecksum(body));
  });
});

describe('hashHeader is the documented canonical form (a stored TargetHash must stay valid across releases)', () => {
  /** The canonical form written out plainly: keys sorted, each key and value JSON-encoded. */
  function reference(row: Record<string, unknown>): string {
    return `[${Object.keys(row)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${JSON.stringify(row[k])}`)
      .join(',')}]`;
  }

  it('equals md5 over "h" + header + "\\nd" + each detail line in sorted order, for rows of any column order', () => {
    const header = { z: 'última "nota"', a: 1, m: null, b: true };
    const details = [
      { seq: 2, v: 'x\ny' },
      { v: '10.5', seq: 1 },
    ];
    const lines = details.map(reference).sort();
    const expected = createHash('md5')
      .update(`h${reference(header)}${lines.map((l) => `\nd${l}`).join('')}`)
      .digest('hex');
    expect(hashHeader('md5', header, details)).toBe(expected);
    // The same rows with their keys in another order hash the same.
    expect(hashHeader('md5', { b: true, m: null, a: 1, z: 'última "nota"' }, [...details].reverse())).toBe(expected);
  });
});

describe('HeaderHasher: rows as value arrays in a column order', () => {
  const headerCols = Object.keys(HEADER);
  const detailCols = Object.keys(DETAILS[0]!);
  const values = (row: WireRow, cols: readonly string[]) => cols.map((c) => row[c]!);

  it('gives the digest hashHeader gives for the same rows as objects, whatever the column order', () => {
    for (const alg of ['md5', 'sha1', 'sha256'] as const) {
      const expected = hashHeader(alg, HEADER, DETAILS);
      for (const [hc, dc] of [
        [headerCols, detailCols],
        [[...headerCols].reverse(), [...detailCols].reverse()],
        [[...headerCols].sort(), [detailCols[2]!, detailCols[0]!, detailCols[3]!, detailCols[1]!]],
      ]) {
        const h = new HeaderHasher(alg, hc!, dc);
        expect(
          h.hash(
            values(HEADER, hc!),
            DETAILS.map((d) => values(d, dc!)),
          ),
        ).toBe(expected);
        // Detail order does not matter either.
        expect(
          h.hash(
            values(HEADER, hc!),
            [...DETAILS].reverse().map((d) => values(d, dc!)),
          ),
        ).toBe(expected);
      }
    }
  });

  it('a header without details, and a header-only pipeline, hash as hashHeader does', () => {
    expect(new HeaderHasher('md5', headerCols).hash(values(HEADER, headerCols))).toBe(hashHeader('md5', HEADER));
    expect(new HeaderHasher('md5', headerCols, detailCols).hash(values(HEADER, headerCols), [])).toBe(
      hashHeader('md5', HEADER, []),
    );
  });

  it('changes when any value changes', () => {
    const h = new HeaderHasher('md5', headerCols, detailCols);
    const base = h.hash(
      values(HEADER, headerCols),
      DETAILS.map((d) => values(d, detailCols)),
    );
    for (let i = 0; i < headerCols.length; i++) {
      const v = values(HEADER, headerCols);
      v[i] = 'changed';
      expect(
        h.hash(
          v,
          DETAILS.map((d) => values(d, detailCols)),
        ),
      ).not.toBe(base);
    }
    const lines = DETAILS.map((d) => values(d, detailCols));
    lines[1]![3] = 99;
    expect(h.hash(values(HEADER, headerCols), lines)).not.toBe(base);
  });

  it('driver rows read as arrays become wire values in place, as toWireValue converts each', () => {
    const row: unknown[] = [7n, new Date('2024-01-02T03:04:05.678Z'), Buffer.from([1, 2, 3]), undefined, 'x'];
    const out = toWireValues(row);
    expect(out).toBe(row);
    expect(out).toEqual(['7', '2024-01-02T03:04:05.678Z', 'base64:AQID', null, 'x']);
  });
});
