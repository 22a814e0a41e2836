import { describe, expect, it } from 'vitest';
import {
  columnSpecOf,
  dialectFor,
  mysqlWallClock,
  pgDateToWire,
  pgInstantToWire,
  pgTimestampToWire,
  type DialectName,
} from '@sitesync/db';
import { PipelineShapeSchema, type ColumnSpec } from '@sitesync/protocol';

const spec = (s: Omit<ColumnSpec, 'name' | 'nullable'>): ColumnSpec => ({ name: 'c', nullable: true, ...s });

describe('a column described in full by the site', () => {
  it.each([
    // [dialect, catalogue column, kind, extra]
    ['postgres', { type: 'bigint' }, 'int64', {}],
    ['postgres', { type: 'numeric', precision: 30, scale: 10 }, 'decimal', { precision: 30, scale: 10 }],
    ['postgres', { type: 'double precision' }, 'float64', {}],
    ['postgres', { type: 'real' }, 'float64', {}],
    ['postgres', { type: 'date' }, 'date', {}],
    ['postgres', { type: 'time without time zone' }, 'time', {}],
    ['postgres', { type: 'timestamp without time zone' }, 'timestamp', {}],
    ['postgres', { type: 'timestamp with time zone' }, 'timestamptz', {}],
    ['postgres', { type: 'time with time zone' }, 'text', {}],
    ['postgres', { type: 'uuid' }, 'uuid', {}],
    ['postgres', { type: 'character varying', length: '80' }, 'text', { length: 80 }],
    ['mysql', { type: 'tinyint', length: '1' }, 'boolean', {}],
    ['mysql', { type: 'timestamp' }, 'timestamptz', {}],
    ['mysql', { type: 'datetime' }, 'timestamp', {}],
    ['mysql', { type: 'longtext' }, 'text', {}],
    ['mssql', { type: 'timestamp' }, 'binary', {}],
    ['mssql', { type: 'datetimeoffset' }, 'timestamptz', {}],
    ['mssql', { type: 'datetime2' }, 'timestamp', {}],
    ['mssql', { type: 'uniqueidentifier' }, 'uuid', {}],
    ['mssql', { type: 'varbinary', length: '16' }, 'binary', { length: 16 }],
    // SQLite enforces no declared length or precision: none is sent, so the central cannot narrow
    ['sqlite', { type: 'varchar', length: '20' }, 'text', {}],
    ['sqlite', { type: 'decimal', precision: 10, scale: 2 }, 'decimal', {}],
    ['sqlite', { type: 'datetime' }, 'timestamp', {}],
  ] as const)('%s %j is %s', (dialect, column, kind, extra) => {
    expect(columnSpecOf(column, dialect)).toEqual({
      type: {
        int64: 'integer',
        decimal: 'number',
        float64: 'number',
        date: 'timestamp',
        time: 'text',
        timestamp: 'timestamp',
        timestamptz: 'timestamp',
        uuid: 'text',
        text: 'text',
        boolean: 'boolean',
        binary: 'binary',
      }[kind],
      kind,
      ...extra,
    });
  });

  // site kind -> the central's column type, per dialect (protocol.md's table)
  const TABLE: Array<[ColumnSpec, Record<DialectName, string>]> = [
    [
      spec({ type: 'integer', kind: 'int64' }),
      { sqlite: 'INTEGER', postgres: 'BIGINT', mysql: 'BIGINT', mssql: 'BIGINT' },
    ],
    [
      spec({ type: 'number', kind: 'decimal', precision: 30, scale: 10 }),
      { sqlite: 'TEXT', postgres: 'NUMERIC', mysql: 'DECIMAL(30, 10)', mssql: 'DECIMAL(30, 10)' },
    ],
    [
      spec({ type: 'number', kind: 'decimal' }),
      { sqlite: 'TEXT', postgres: 'NUMERIC', mysql: 'DECIMAL(65, 30)', mssql: 'DECIMAL(38, 10)' },
    ],
    [
      spec({ type: 'number', kind: 'float64' }),
      { sqlite: 'REAL', postgres: 'DOUBLE PRECISION', mysql: 'DOUBLE', mssql: 'FLOAT(53)' },
    ],
    [spec({ type: 'timestamp', kind: 'date' }), { sqlite: 'TEXT', postgres: 'DATE', mysql: 'DATE', mssql: 'DATE' }],
    [spec({ type: 'text', kind: 'time' }), { sqlite: 'TEXT', postgres: 'TIME', mysql: 'TIME(6)', mssql: 'TIME(7)' }],
    [
      spec({ type: 'timestamp', kind: 'timestamp' }),
      { sqlite: 'TEXT', postgres: 'TIMESTAMP', mysql: 'DATETIME(6)', mssql: 'DATETIME2(7)' },
    ],
    [
      spec({ type: 'timestamp', kind: 'timestamptz' }),
      { sqlite: 'TEXT', postgres: 'TIMESTAMPTZ', mysql: 'DATETIME(6)', mssql: 'DATETIMEOFFSET(7)' },
    ],
    [
      spec({ type: 'text', kind: 'uuid' }),
      { sqlite: 'TEXT', postgres: 'UUID', mysql: 'CHAR(36)', mssql: 'UNIQUEIDENTIFIER' },
    ],
    [
      spec({ type: 'text', kind: 'text', length: 20 }),
      { sqlite: 'TEXT', postgres: 'TEXT', mysql: 'LONGTEXT', mssql: 'NVARCHAR(MAX)' },
    ],
    // a site of an earlier release sends no kind: the coarse type decides, text widened on MariaDB
    [spec({ type: 'text' }), { sqlite: 'TEXT', postgres: 'TEXT', mysql: 'LONGTEXT', mssql: 'NVARCHAR(MAX)' }],
    [
      spec({ type: 'number' }),
      { sqlite: 'REAL', postgres: 'NUMERIC', mysql: 'DECIMAL(38, 10)', mssql: 'DECIMAL(38, 10)' },
    ],
  ];
  it.each(TABLE)('%j gets the same type centrally, widened, never narrowed', (s, types) => {
    for (const d of ['sqlite', 'postgres', 'mysql', 'mssql'] as const)
      expect(dialectFor(d).columnType(s, false)).toBe(types[d]);
  });

  it('a decimal wider than the database allows takes its widest', () => {
    expect(
      dialectFor('mssql').columnType(spec({ type: 'number', kind: 'decimal', precision: 50, scale: 4 }), false),
    ).toBe('DECIMAL(38, 10)');
    expect(
      dialectFor('mysql').columnType(spec({ type: 'number', kind: 'decimal', precision: 60, scale: 35 }), false),
    ).toBe('DECIMAL(65, 30)');
  });

  it('the SQL Server merge names the kind types in its CREATE TABLE', () => {
    const d = dialectFor('mssql');
    const sql = d.createTableIfMissing(
      'c_vals',
      [
        { name: 'id_efector', type: 'INT', nullable: false },
        { name: 'dbl', type: d.columnType(spec({ type: 'number', kind: 'float64' }), false), nullable: true },
        { name: 'ts', type: d.columnType(spec({ type: 'timestamp', kind: 'timestamp' }), false), nullable: true },
      ],
      ['id_efector'],
    );
    expect(sql).toBe(
      `IF OBJECT_ID(N'c_vals', N'U') IS NULL CREATE TABLE [c_vals] ([id_efector] INT NOT NULL, [dbl] FLOAT(53), [ts] DATETIME2(7), PRIMARY KEY ([id_efector]))`,
    );
  });
});

describe('a shape carrying full column types', () => {
  const shape = (columns: unknown[]) => ({
    name: 'p',
    algorithm: 'md5',
    header: { key: ['id'], columns: [{ name: 'id', type: 'integer', nullable: false }, ...columns] },
    detail: null,
  });

  it('is read with or without kinds: an earlier site sends none', () => {
    expect(PipelineShapeSchema.parse(shape([{ name: 'x', type: 'number', nullable: true }])).header.columns[1]).toEqual(
      {
        name: 'x',
        type: 'number',
        nullable: true,
      },
    );
    const full = { name: 'x', type: 'number', nullable: true, kind: 'decimal', precision: 12, scale: 2 };
    expect(PipelineShapeSchema.parse(shape([full])).header.columns[1]).toEqual(full);
  });

  it('reads a kind it does not know as none, and refuses a kind that contradicts the type', () => {
    const later = PipelineShapeSchema.parse(shape([{ name: 'x', type: 'text', nullable: true, kind: 'geometry' }]));
    expect(later.header.columns[1]!.kind).toBeUndefined();
    const r = PipelineShapeSchema.safeParse(shape([{ name: 'x', type: 'text', nullable: true, kind: 'int64' }]));
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.message).toMatch(/kind int64 travels as type integer/);
  });
});

describe('wall clocks', () => {
  it('PostgreSQL timestamp and date text becomes the wire form without a time zone', () => {
    expect(pgTimestampToWire('1901-12-13 23:59:59.123')).toBe('1901-12-13T23:59:59.123Z');
    expect(pgTimestampToWire('2024-05-02 10:20:00')).toBe('2024-05-02T10:20:00.000Z');
    expect(pgTimestampToWire('2024-05-02 10:20:00.5')).toBe('2024-05-02T10:20:00.500Z');
    expect(pgTimestampToWire('2024-05-02 10:20:00.123456')).toBe('2024-05-02T10:20:00.123456Z');
    expect(pgTimestampToWire('10000-01-01 00:00:00')).toBe('+010000-01-01T00:00:00.000Z');
    expect(pgTimestampToWire('0044-03-15 12:00:00 BC')).toBe('-000043-03-15T12:00:00.000Z');
    expect(pgTimestampToWire('infinity')).toBe('infinity');
    expect(pgDateToWire('1901-12-13')).toBe('1901-12-13T00:00:00.000Z');
    // the same as toISOString of that wall clock in UTC: hashes of correct values do not change
    expect(pgTimestampToWire('1969-12-31 23:59:59.999')).toBe(
      new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 999)).toISOString(),
    );
  });

  it("MariaDB's DATETIME text (all its declared digits) becomes the same wire form, trailing zeros beyond the millisecond dropped", () => {
    expect(pgTimestampToWire('2024-05-02 10:20:00.123000')).toBe('2024-05-02T10:20:00.123Z');
    expect(pgTimestampToWire('2024-05-02 10:20:00.000000')).toBe('2024-05-02T10:20:00.000Z');
    expect(pgTimestampToWire('2024-05-02 10:20:00.123450')).toBe('2024-05-02T10:20:00.12345Z');
  });

  it('PostgreSQL timestamptz text in any session zone becomes its UTC instant, microseconds kept', () => {
    expect(pgInstantToWire('1901-12-13 23:59:59.123456+00')).toBe('1901-12-13T23:59:59.123456Z');
    expect(pgInstantToWire('1901-12-13 19:43:11.123456-04:16:48')).toBe('1901-12-13T23:59:59.123456Z');
    expect(pgInstantToWire('2024-01-01 05:30:00+05:30')).toBe('2024-01-01T00:00:00.000Z');
    expect(pgInstantToWire('2023-12-31 21:00:00.5-03')).toBe('2024-01-01T00:00:00.500Z');
    expect(pgInstantToWire('0044-03-15 08:06:12-03:53:48 BC')).toBe('-000043-03-15T12:00:00.000Z');
    expect(pgInstantToWire('0099-06-01 00:00:00+00')).toBe('0099-06-01T00:00:00.000Z');
    expect(pgInstantToWire('infinity')).toBe('infinity');
    // what a Date gave before, for a millisecond value: its hash does not change
    expect(pgInstantToWire('2024-05-02 23:59:59.123+02')).toBe(new Date('2024-05-02T23:59:59.123+02:00').toISOString());
  });

  it('MariaDB takes a wire wall clock as text, microseconds kept; a value with an offset goes through a Date', () => {
    expect(mysqlWallClock('1901-12-13T23:59:59.123456Z')).toBe('1901-12-13 23:59:59.123456');
    expect(mysqlWallClock('1901-12-13 23:59:59')).toBe('1901-12-13 23:59:59');
    expect(mysqlWallClock('1901-12-13')).toBe('1901-12-13');
    expect(mysqlWallClock('2024-05-02T10:00:00+02:00')).toBeUndefined();
    const d = dialectFor('mysql');
    expect(d.bindValue('2999-12-31T23:59:59.123Z', 'timestamp')).toBe('2999-12-31 23:59:59.123');
    expect(d.bindValue('2024-05-02T10:00:00+02:00', 'timestamp')).toEqual(new Date('2024-05-02T08:00:00Z'));
  });
});

describe('text a central cannot hold', () => {
  it('a lone surrogate on UTF-8 databases, a NUL on PostgreSQL; SQL Server holds both', () => {
    for (const d of ['sqlite', 'postgres', 'mysql'] as const) {
      expect(dialectFor(d).unstorableText('a\ud800b')).toMatch(/lone UTF-16 surrogate/);
      expect(dialectFor(d).unstorableText('😀 e\u0301')).toBeUndefined();
    }
    expect(dialectFor('postgres').unstorableText('a\u0000b')).toMatch(/NUL/);
    expect(dialectFor('mysql').unstorableText('a\u0000b')).toBeUndefined();
    expect(dialectFor('mssql').holdsAnyText).toBe(true);
  });
});
