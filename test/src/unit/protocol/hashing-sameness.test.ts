import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeKey, HeaderHasher, hashHeader, type WireRow, type WireValue } from '@sitesync/protocol';
import { rng } from '@sitesync/labdata';

/**
 * The hashing writes the canonical text without calling JSON.stringify per value where it can (and
 * sorts the detail lines its own way). These tests hold it to the definition written out plainly:
 * every value through JSON.stringify, columns sorted, detail lines through Array.prototype.sort().
 * Digests are sha256, so an equal digest means an equal text.
 */
function referenceLine(columns: readonly string[], values: readonly unknown[]): string {
  const keys = [...columns].sort();
  return '[' + keys.map((k) => JSON.stringify(k) + ':' + JSON.stringify(values[columns.indexOf(k)])).join(',') + ']';
}

function referenceText(
  headerColumns: readonly string[],
  header: readonly unknown[],
  detailColumns: readonly string[],
  details: ReadonlyArray<readonly unknown[]>,
): string {
  const lines = details.map((d) => referenceLine(detailColumns, d)).sort();
  return 'h' + referenceLine(headerColumns, header) + lines.map((l) => '\nd' + l).join('');
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function referenceKey(values: readonly unknown[]): string {
  return JSON.stringify(values.map((v) => (typeof v === 'number' ? String(v) : v)));
}

const CONTROL_CHARS = Array.from({ length: 0x20 }, (_, c) => String.fromCharCode(c));

const TRICKY_STRINGS: string[] = [
  '',
  'plain',
  'María',
  'Fernández, Lucía',
  'ñandú ÿ',
  '"',
  'a"b',
  '""',
  '\\',
  'a\\b',
  '\\"',
  'x]\nd[',
  ...CONTROL_CHARS,
  ...CONTROL_CHARS.map((c) => `a${c}b`),
  '\x7f',
  'a\x7fb',
  '\x80\x9f\xa0',
  '\u2028',
  '\u2029',
  'a\u2028b\u2029c',
  '\ud800', // lone high surrogates
  '\udbff',
  'a\ud800',
  '\ud800b',
  '\udc00', // lone low surrogates
  '\udfff',
  'a\udc00b',
  '\ude00\ud83d', // a pair in the wrong order: two lone surrogates
  '\ud83d\ude00', // a valid pair (😀)
  '😀',
  'emoji 🧪 in text',
  '𝄞',
  '中文',
  '\ufeff',
  '\uffff',
  '\ud7ff\ue000', // just outside the surrogate range
  '1',
  'null',
  'true',
  ' ',
  '/',
  '<script>',
  'x'.repeat(1000),
  'é'.repeat(300) + '"',
];

const TRICKY_NUMBERS: number[] = [
  0,
  -0,
  -1,
  1,
  1.5,
  -1.5,
  0.1 + 0.2,
  1e21,
  1e20,
  -1e21,
  1e-7,
  1e-6,
  -1e-7,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  2 ** 31,
  123456789.123,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.MAX_SAFE_INTEGER,
  Number.EPSILON,
  1.7976931348623157e308,
  5e-324,
  4.35,
  100,
  12,
];

/** Not wire values (toWireValue never gives them), but the text must not change for them either. */
const NON_WIRE: unknown[] = [NaN, Infinity, -Infinity, undefined];

const TRICKY: unknown[] = [...TRICKY_STRINGS, ...TRICKY_NUMBERS, true, false, null];

describe('canonical text, value by value, against JSON.stringify', () => {
  const headerCols = ['b', 'a', 'c'];
  const detailCols = ['seq', 'v'];

  it('every tricky value, in header and detail rows, hashes as the reference text', () => {
    for (const alg of ['sha256', 'md5'] as const) {
      const hasher = new HeaderHasher(alg, headerCols, detailCols);
      for (const v of [...TRICKY, ...NON_WIRE]) {
        const header = [v, 1, v];
        const details = [
          [2, v],
          [v, 'x'],
          [1, v],
        ];
        const text = referenceText(headerCols, header, detailCols, details);
        const expected = createHash(alg).update(text).digest('hex');
        expect(hasher.hash(header as WireValue[], details as WireValue[][]), JSON.stringify(v)).toBe(expected);
        // A single detail line, and none.
        expect(hasher.hash(header as WireValue[], [details[0] as WireValue[]])).toBe(
          createHash(alg)
            .update(referenceText(headerCols, header, detailCols, [details[0]!]))
            .digest('hex'),
        );
        expect(hasher.hash(header as WireValue[])).toBe(
          createHash(alg)
            .update(referenceText(headerCols, header, detailCols, []))
            .digest('hex'),
        );
      }
    }
  });

  it('every pair of tricky values hashes as the reference text (rows as objects too)', () => {
    const hasher = new HeaderHasher('sha256', ['x', 'y'], ['y', 'x']);
    const values = TRICKY.filter((_, i) => i % 3 === 0).concat(TRICKY_NUMBERS.slice(0, 8));
    for (const a of values) {
      for (const b of values) {
        const header = [a, b] as WireValue[];
        const details = [[b, a] as WireValue[], [a, b] as WireValue[]];
        const expected = sha256(referenceText(['x', 'y'], header, ['y', 'x'], details));
        expect(hasher.hash(header, details)).toBe(expected);
        const asObjects = hashHeader('sha256', { x: a, y: b } as WireRow, [
          { y: b, x: a } as WireRow,
          { y: a, x: b } as WireRow,
        ]);
        expect(asObjects).toBe(expected);
      }
    }
  });

  it('a value missing from a short row is written as before ("undefined")', () => {
    const hasher = new HeaderHasher('sha256', ['a', 'b'], ['c', 'd']);
    expect(hasher.hash([1], [['x'], []])).toBe(sha256(referenceText(['a', 'b'], [1], ['c', 'd'], [['x'], []])));
    expect(referenceText(['a', 'b'], [1], ['c', 'd'], [])).toBe('h["a":1,"b":undefined]');
  });
});

describe('encodeKey against JSON.stringify of the key with numbers as strings', () => {
  it('every tricky value alone, in pairs and with non-wire values', () => {
    for (const v of [...TRICKY, ...NON_WIRE]) {
      expect(encodeKey([v] as WireValue[]), String(v)).toBe(referenceKey([v]));
      expect(encodeKey([v, 1, 'x'] as WireValue[])).toBe(referenceKey([v, 1, 'x']));
      expect(encodeKey(['x', v] as WireValue[])).toBe(referenceKey(['x', v]));
    }
    expect(encodeKey([])).toBe('[]');
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [1, , 'x'] as WireValue[];
    expect(encodeKey(sparse)).toBe(referenceKey(sparse));
    expect(encodeKey([1, undefined, 'x'] as unknown as WireValue[])).toBe('["1",null,"x"]');
  });
});

describe('canonical text on random rows (fuzz)', () => {
  const rand = rng(20260412);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  // Mostly plain characters, with every kind JSON treats apart mixed in.
  const ALPHABET = [
    ...'abcxyzABC019 ,.:;[]{}-_/',
    ...'áéíóúñÑü€',
    '"',
    '\\',
    '\x7f',
    '\u2028',
    '\u2029',
    '\ud800',
    '\udfff',
    '\ud83d\ude00',
    '中',
    ...CONTROL_CHARS,
  ];

  function randomString(): string {
    const plainOnly = rand() < 0.6;
    let s = '';
    for (let i = int(rand() < 0.1 ? 120 : 12); i > 0; i--)
      s += plainOnly ? pick(ALPHABET.slice(0, 33)) : pick(ALPHABET);
    return s;
  }

  function randomNumber(): number {
    switch (int(6)) {
      case 0:
        return int(1000) - 500;
      case 1:
        return (rand() - 0.5) * 10 ** (int(60) - 30);
      case 2:
        return Math.round(rand() * 1e6) / 100;
      case 3:
        return pick(TRICKY_NUMBERS);
      case 4:
        return int(20);
      default:
        return rand() * 2 ** int(70);
    }
  }

  function randomValue(): WireValue {
    const r = rand();
    if (r < 0.5) return randomString();
    if (r < 0.8) return randomNumber();
    if (r < 0.85) return true;
    if (r < 0.9) return false;
    if (r < 0.95) return null;
    return pick(TRICKY) as WireValue;
  }

  const COLUMN_NAMES = ['id', 'name', 'a', 'b', 'B', 'é', 'a"b', 'x\\y', '10', '2', 'z', 'value', 'ref_range', ''];

  function randomColumns(): string[] {
    const n = 1 + int(9);
    const cols = new Set<string>();
    while (cols.size < n) cols.add(pick(COLUMN_NAMES));
    return [...cols];
  }

  it('a few thousand random headers with details hash as the reference text, by both entry points', () => {
    let rows = 0;
    for (let round = 0; round < 200; round++) {
      const headerCols = randomColumns();
      const detailCols = randomColumns();
      const hasher = new HeaderHasher('sha256', headerCols, detailCols);
      for (let r = 0; r < 20; r++) {
        const header = headerCols.map(randomValue);
        const details: WireValue[][] = [];
        for (let d = int(7); d > 0; d--) {
          // Lines that differ only late, or not at all, exercise the sort.
          if (details.length > 0 && rand() < 0.3) {
            const copy = [...details[int(details.length)]!];
            if (rand() < 0.7) copy[int(copy.length)] = randomValue();
            details.push(copy);
          } else details.push(detailCols.map(randomValue));
        }
        const expected = sha256(referenceText(headerCols, header, detailCols, details));
        expect(hasher.hash(header, details)).toBe(expected);
        const asRow = (cols: string[], values: WireValue[]) => Object.fromEntries(cols.map((c, i) => [c, values[i]!]));
        expect(
          hashHeader(
            'sha256',
            asRow(headerCols, header),
            details.map((d) => asRow(detailCols, d)),
          ),
        ).toBe(expected);
        expect(encodeKey(header)).toBe(referenceKey(header));
        rows += 1 + details.length;
      }
    }
    expect(rows).toBeGreaterThan(5000);
  });

  it('detail lines that sort by code unit (numbers that prefix each other, surrogates above U+E000)', () => {
    const hasher = new HeaderHasher('sha256', ['k'], ['v', 'w']);
    const details: WireValue[][] = [
      [1, 'a'],
      [12, 'a'],
      [1.5, 'a'],
      [-1, 'a'],
      ['\uffff', 'a'],
      ['😀', 'a'],
      ['\ue000', 'a'],
      ['a', 'b'],
      ['a', 'a'],
      [null, 'a'],
      [true, 'a'],
      [1, 'a'],
    ];
    // and more lines than the insertion sort takes (the built-in sort's branch)
    const many: WireValue[][] = [...details, ...details.map((d) => [d[0]!, 'c']), ...details.map((d) => [d[0]!, 'd'])];
    for (let i = 0; i < 50; i++) {
      for (const set of [details, many]) {
        const shuffled = [...set].sort(() => rand() - 0.5);
        expect(hasher.hash([1], shuffled)).toBe(sha256(referenceText(['k'], [1], ['v', 'w'], set)));
      }
    }
  });
});
