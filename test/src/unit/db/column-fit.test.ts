import { describe, expect, it } from 'vitest';
import { columnFit, dialectFor, liveColumnType, narrowValue, type LiveColumnType } from '@sitesync/db';
import type { ColumnSpec } from '@sitesync/protocol';

const mssql = dialectFor('mssql');

/** A SQL Server column as sys.columns describes it (max_length in bytes, -1 for max). */
function mssqlColumn(
  name: string,
  type: string,
  len: number,
  prec = 0,
  scale = 0,
  extra: Partial<LiveColumnType> = {},
) {
  return {
    ...liveColumnType(
      {
        name,
        type,
        len,
        prec,
        scale,
        nullable: 1,
        is_key: 0,
        coll: type.includes('char') ? 'Modern_Spanish_CI_AS' : null,
        dflt: 0,
      },
      'mssql',
    ),
    ...extra,
  };
}

const text: ColumnSpec = { name: 'obs', type: 'text', nullable: true, kind: 'text' };
const dec: ColumnSpec = { name: 'amount', type: 'number', nullable: true, kind: 'decimal', precision: 30, scale: 12 };
const int: ColumnSpec = { name: 'n', type: 'integer', nullable: true, kind: 'int64' };
const dbl: ColumnSpec = { name: 'f', type: 'number', nullable: true, kind: 'float64' };

describe('widening SQL Server target columns (statements; no server here)', () => {
  it('reads sys.columns lengths as declared types: nvarchar counts characters, -1 is max', () => {
    expect(mssqlColumn('obs', 'nvarchar', 100).sqlType).toBe('nvarchar(50)');
    expect(mssqlColumn('obs', 'nvarchar', -1).sqlType).toBe('nvarchar(max)');
    expect(mssqlColumn('amount', 'decimal', 9, 18, 2).sqlType).toBe('decimal(18,2)');
  });

  it('an nvarchar(n) becomes nvarchar(max) keeping its collation and nullability; an nvarchar(max) holds', () => {
    const live = mssqlColumn('obs', 'nvarchar', 100);
    const fit = columnFit(mssql, live, text);
    expect(fit).toEqual({ fit: 'widen', type: 'NVARCHAR(MAX)' });
    expect(mssql.widenColumns('lab_orders', [{ live, type: 'NVARCHAR(MAX)' }])).toEqual([
      'ALTER TABLE [lab_orders] ALTER COLUMN [obs] NVARCHAR(MAX) COLLATE Modern_Spanish_CI_AS NULL',
    ]);
    expect(columnFit(mssql, mssqlColumn('obs', 'nvarchar', -1), text)).toEqual({ fit: 'holds' });
  });

  it('a decimal keeps its integer digits and takes the site scale; an int becomes BIGINT, NOT NULL restated', () => {
    expect(columnFit(mssql, mssqlColumn('amount', 'decimal', 9, 18, 2), dec)).toEqual({
      fit: 'widen',
      type: 'DECIMAL(30, 12)',
    });
    const n = mssqlColumn('n', 'int', 4, 10, 0, { nullable: false });
    expect(columnFit(mssql, n, int)).toEqual({ fit: 'widen', type: 'BIGINT' });
    expect(mssql.widenColumns('t', [{ live: n, type: 'BIGINT' }])).toEqual([
      'ALTER TABLE [t] ALTER COLUMN [n] BIGINT NOT NULL',
    ]);
  });

  it('a key column, a fixed nchar and a DECIMAL past 38 digits are left alone and reported', () => {
    const key = mssqlColumn('obs', 'nvarchar', 100, 0, 0, { isKey: true });
    expect(columnFit(mssql, key, text)).toMatchObject({ fit: 'narrow', cost: expect.stringMatching(/key column/) });
    expect(columnFit(mssql, mssqlColumn('obs', 'nchar', 20), text)).toMatchObject({ fit: 'narrow' });
    const wide: ColumnSpec = { ...dec, precision: 38, scale: 30 };
    expect(columnFit(mssql, mssqlColumn('amount', 'decimal', 17, 38, 10), wide)).toMatchObject({
      fit: 'narrow',
      cost: expect.stringMatching(/wider than mssql allows/),
    });
  });

  it('a double in the DECIMAL(38,10) an earlier release made is another family: reported, and a value it would round is named', () => {
    const live = mssqlColumn('f', 'decimal', 17, 38, 10);
    expect(columnFit(mssql, live, dbl)).toMatchObject({ fit: 'narrow', suggested: 'FLOAT(53)' });
    expect(narrowValue(mssql, live, 0.30000000000000004)).toMatch(/would round to 10 decimals/);
    expect(narrowValue(mssql, live, 0.25)).toBeUndefined();
    expect(narrowValue(mssql, live, 1e-11)).toMatch(/would round/);
    expect(narrowValue(mssql, live, 1e28)).toMatch(/beyond the 28 integer digits/);
    expect(narrowValue(mssql, live, '-0')).toMatch(/negative zero/);
  });
});
