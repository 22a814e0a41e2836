import { describe, expect, it } from 'vitest';
import {
  dialectFor,
  mssqlDateTimeParam,
  mssqlDateToWire,
  mssqlDecimalToWire,
  mssqlInstantToWire,
  mssqlTimestampToWire,
  mssqlTimeToWire,
  pgDateToWire,
  pgTimestampToWire,
} from '@sitesync/db';
import type { ColumnKind } from '@sitesync/protocol';

// Statements and conversions only: no SQL Server is needed. The round trip through a real server is
// values.test.ts, which runs on SQL Server when SITESYNC_TEST_MSSQL_URL is set or Docker answers.

const mssql = dialectFor('mssql');

describe('a SQL Server site reads decimals, dates and times as text (no server needed)', () => {
  it.each<[string, ColumnKind, string, string]>([
    ['decimal', 'decimal', 'decimal', 'CAST([c] AS VARCHAR(50)) AS [c]'],
    ['numeric', 'decimal', 'NUMERIC', 'CAST([c] AS VARCHAR(50)) AS [c]'],
    ['money', 'decimal', 'money', 'CONVERT(VARCHAR(30), [c], 2) AS [c]'],
    ['smallmoney', 'decimal', 'smallmoney', 'CONVERT(VARCHAR(30), [c], 2) AS [c]'],
    ['date', 'date', 'date', 'CONVERT(VARCHAR(10), [c], 23) AS [c]'],
    ['time', 'time', 'time', 'CAST([c] AS VARCHAR(16)) AS [c]'],
    ['datetime2', 'timestamp', 'datetime2', 'CONVERT(VARCHAR(27), [c], 121) AS [c]'],
    ['datetime', 'timestamp', 'datetime', 'CONVERT(VARCHAR(27), [c], 121) AS [c]'],
    ['smalldatetime', 'timestamp', 'smalldatetime', 'CONVERT(VARCHAR(27), [c], 121) AS [c]'],
    ['datetimeoffset', 'timestamptz', 'datetimeoffset', 'CONVERT(VARCHAR(34), [c], 121) AS [c]'],
  ])('a %s column is selected as its text, under its own name', (_, kind, dbType, sql) => {
    const r = mssql.columnReader('c', { kind, dbType });
    expect(r.sql).toBe(sql);
    expect(r.toWire).toBeTypeOf('function');
  });

  it('other columns are selected as they are, and a quote in a name stays quoted in the alias', () => {
    for (const [kind, dbType] of [
      ['int64', 'bigint'],
      ['float64', 'float'],
      ['text', 'nvarchar'],
      ['binary', 'varbinary'],
      ['binary', 'timestamp'], // rowversion: 8 bytes, not a point in time
      ['boolean', 'bit'],
      ['uuid', 'uniqueidentifier'],
    ] as const) {
      expect(mssql.columnReader('c', { kind, dbType })).toEqual({ sql: '[c]' });
    }
    expect(mssql.columnReader('a]b', { kind: 'timestamp', dbType: 'datetime2' }).sql).toBe(
      'CONVERT(VARCHAR(27), [a]]b], 121) AS [a]]b]',
    );
  });

  it('a decimal whose catalogue type is unknown is read through the driver (money would lose two decimals as text)', () => {
    expect(mssql.columnReader('c', { kind: 'decimal' })).toEqual({ sql: '[c]' });
  });

  it('SQLite, PostgreSQL and MariaDB keep selecting the bare column', () => {
    for (const name of ['sqlite', 'postgres', 'mysql'] as const) {
      const d = dialectFor(name);
      for (const [kind, dbType] of [
        ['decimal', 'numeric'],
        ['timestamp', 'timestamp'],
        ['timestamptz', 'timestamptz'],
        ['date', 'date'],
        ['time', 'time'],
      ] as const) {
        expect(d.columnReader('c', { kind, dbType })).toEqual({ sql: d.quote('c') });
      }
    }
  });
});

describe('SQL Server text becomes the wire forms the other sites send (no server needed)', () => {
  it.each([
    // 7 digits: the digits beyond the millisecond are kept when not zero, trailing zeros dropped
    ['2024-05-02 23:59:59.1234567', '2024-05-02T23:59:59.1234567Z'],
    ['2024-05-02 23:59:59.1234500', '2024-05-02T23:59:59.12345Z'],
    // a millisecond value keeps the form (and the hash) it had when read as a Date
    ['2024-05-02 23:59:59.1230000', '2024-05-02T23:59:59.123Z'],
    ['2024-05-02 23:59:59.123', '2024-05-02T23:59:59.123Z'],
    ['2024-05-02 23:59:59.0000000', '2024-05-02T23:59:59.000Z'],
    ['2024-05-02 23:59:59.1', '2024-05-02T23:59:59.100Z'],
    ['2024-05-02 23:59:59', '2024-05-02T23:59:59.000Z'],
    // before 1900 (and before 1000), and the last instant SQL Server holds
    ['1753-01-01 00:00:00.003', '1753-01-01T00:00:00.003Z'],
    ['0001-01-01 00:00:00.0000000', '0001-01-01T00:00:00.000Z'],
    ['9999-12-31 23:59:59.9999999', '9999-12-31T23:59:59.9999999Z'],
  ])('datetime2 %s -> %s', (text, wire) => {
    expect(mssqlTimestampToWire(text)).toBe(wire);
  });

  it('a millisecond timestamp has the form a PostgreSQL site sends and a Date gives', () => {
    expect(mssqlTimestampToWire('1901-12-13 23:59:59.123')).toBe(pgTimestampToWire('1901-12-13 23:59:59.123'));
    expect(mssqlTimestampToWire('1969-12-31 23:59:59.9990000')).toBe(
      new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 999)).toISOString(),
    );
    expect(mssqlTimestampToWire('2024-05-02 23:59:59.1234560')).toBe(pgTimestampToWire('2024-05-02 23:59:59.123456'));
  });

  it.each([
    ['1901-12-13', '1901-12-13T00:00:00.000Z'],
    ['0044-03-15', '0044-03-15T00:00:00.000Z'],
    ['0001-01-01', '0001-01-01T00:00:00.000Z'],
    ['9999-12-31', '9999-12-31T00:00:00.000Z'],
  ])('date %s -> its midnight %s, as a PostgreSQL site sends it', (text, wire) => {
    expect(mssqlDateToWire(text)).toBe(wire);
    expect(mssqlDateToWire(text)).toBe(pgDateToWire(text));
  });

  it.each([
    ['23:59:59.1230000', '23:59:59.123'],
    ['23:59:59.123', '23:59:59.123'],
    ['00:00:00.0010000', '00:00:00.001'],
    ['23:59:59.9999999', '23:59:59.9999999'],
    ['12:00:00.1200000', '12:00:00.12'],
    ['12:00:00.0000000', '12:00:00'],
    ['12:00:00', '12:00:00'],
  ])('time %s -> %s (PostgreSQL time text, not 1970-01-01T…Z)', (text, wire) => {
    expect(mssqlTimeToWire(text)).toBe(wire);
  });

  it.each([
    ['2024-05-02 23:59:59.1230000 +00:00', '2024-05-02T23:59:59.123Z'],
    ['2024-05-02 23:59:59.123 +03:00', '2024-05-02T20:59:59.123Z'],
    ['2024-05-02 20:59:59.1234567 -03:00', '2024-05-02T23:59:59.1234567Z'],
    // offsets with minutes, across a day, a month and a year
    ['2024-05-02 23:59:59.1234560 -03:30', '2024-05-03T03:29:59.123456Z'],
    ['2024-01-01 00:10:00.0000000 +05:45', '2023-12-31T18:25:00.000Z'],
    ['2024-02-28 23:00:00.5000000 -14:00', '2024-02-29T13:00:00.500Z'],
    ['1901-12-13 23:59:59.123 -04:16', '1901-12-14T04:15:59.123Z'],
    // years below 100 are not read as 19xx; the ends of the range leave 1-9999 in UTC
    ['0044-03-15 12:00:00 +01:00', '0044-03-15T11:00:00.000Z'],
    ['0001-01-01 00:00:00.0000000 +14:00', '0000-12-31T10:00:00.000Z'],
    ['9999-12-31 23:59:59.9999999 -14:00', '+010000-01-01T13:59:59.9999999Z'],
  ])('datetimeoffset %s -> the UTC instant %s', (text, wire) => {
    expect(mssqlInstantToWire(text)).toBe(wire);
  });

  it('a millisecond instant has the form the driver gave as a Date', () => {
    const text = '2024-05-02 23:59:59.1230000 +02:30';
    expect(mssqlInstantToWire(text)).toBe(new Date('2024-05-02T23:59:59.123+02:30').toISOString());
  });

  it.each([
    ['-12.3400000000', '-12.3400000000'],
    ['12345678901234567890.0123456789', '12345678901234567890.0123456789'],
    ['-0.0000000001', '-0.0000000001'],
    ['.5000', '0.5000'],
    ['-.5000', '-0.5000'],
    ['0', '0'],
    // money, style 2: four decimals, no separators
    ['-922337203685477.5808', '-922337203685477.5808'],
    ['12.3400', '12.3400'],
  ])('decimal or money text %s -> %s, every digit of the scale kept', (text, wire) => {
    expect(mssqlDecimalToWire(text)).toBe(wire);
  });

  it('a decimal beyond 15 digits is text, not a rounded number, from the column reader too', () => {
    const r = mssql.columnReader('c', { kind: 'decimal', dbType: 'decimal' });
    expect(r.toWire!('12345678901234567890.0123456789')).toBe('12345678901234567890.0123456789');
  });
});

describe('a SQL Server central binds dates and times as ISO text, never as a Date (no server needed)', () => {
  it.each<[string, ColumnKind | undefined, string]>([
    ['2024-05-02T23:59:59.1234567Z', 'timestamp', '2024-05-02T23:59:59.1234567'],
    ['2024-05-02T23:59:59.123456Z', 'timestamp', '2024-05-02T23:59:59.123456'],
    // three digits for a millisecond value: a legacy DATETIME column converts that too
    ['1901-12-13T23:59:59.123Z', 'timestamp', '1901-12-13T23:59:59.123'],
    ['1901-12-13T23:59:59Z', 'timestamp', '1901-12-13T23:59:59.000'],
    ['0001-01-01T00:00:00.000Z', 'timestamp', '0001-01-01T00:00:00.000'],
    ['9999-12-31T23:59:59.9999999Z', 'timestamp', '9999-12-31T23:59:59.9999999'],
    // a column whose kind is unknown: a wall clock, as for a timestamp
    ['2024-05-02T23:59:59.1234567Z', undefined, '2024-05-02T23:59:59.1234567'],
    // a date: its day, read the same under every DATEFORMAT
    ['1901-12-13T00:00:00.000Z', 'date', '1901-12-13'],
    ['0044-03-15T00:00:00.000Z', 'date', '0044-03-15'],
    ['1901-12-13T10:00:00.000Z', 'date', '1901-12-13T10:00:00.000'],
    // an instant: with its zone, for a DATETIMEOFFSET
    ['2024-05-02T23:59:59.1234567Z', 'timestamptz', '2024-05-02T23:59:59.1234567+00:00'],
    ['1901-12-13T23:59:59.123Z', 'timestamptz', '1901-12-13T23:59:59.123+00:00'],
  ])('%s for a %s column -> %s', (wire, kind, param) => {
    expect(mssqlDateTimeParam(wire, kind as 'date' | 'timestamp' | 'timestamptz' | undefined)).toBe(param);
    expect(mssql.bindValue(wire, 'timestamp', kind)).toBe(param);
  });

  it('the column kind decides, whatever coarse type the site sent', () => {
    // a site's DATE travels as type timestamp; a central DATE column takes its day
    expect(mssql.bindValue('2024-05-02T00:00:00.000Z', 'timestamp', 'date')).toBe('2024-05-02');
    // the wire text of a timestamp kept in a text column is stored as it is
    expect(mssql.bindValue('2024-05-02T23:59:59.123Z', 'timestamp', 'text')).toBe('2024-05-02T23:59:59.123Z');
    // no kind known (a key bound for an older spec): still text, not a Date
    expect(mssql.bindValue('2024-05-02T23:59:59.123Z', 'timestamp')).toBe('2024-05-02T23:59:59.123');
  });

  it('only a form ISO text without zone cannot carry goes through a Date (an offset other than Z)', () => {
    expect(mssql.bindValue('2024-05-02T10:00:00+02:00', 'timestamp', 'timestamp')).toEqual(
      new Date('2024-05-02T08:00:00Z'),
    );
    expect(mssqlDateTimeParam('+010000-01-01T00:00:00.000Z', 'timestamp')).toBeUndefined();
  });

  it('keys are bound for their kind too', () => {
    const bind = mssql.keyBinder(
      [
        { name: 'd', type: 'timestamp', kind: 'date', nullable: false },
        { name: 'ts', type: 'timestamp', kind: 'timestamp', nullable: false },
      ],
      ['d', 'ts'],
    );
    expect(bind(['2024-05-02T00:00:00.000Z', '2024-05-02T23:59:59.1234567Z'])).toEqual([
      '2024-05-02',
      '2024-05-02T23:59:59.1234567',
    ]);
  });

  it('decimals stay the text they arrived as', () => {
    for (const v of ['12345678901234567890.0123456789', '-12.3400000000', '-0.0000000001']) {
      expect(mssql.bindValue(v, 'number', 'decimal')).toBe(v);
      expect(mssql.bindValue(v, 'number')).toBe(v);
    }
  });

  it('a negative zero is refused on a SQL Server float, with the reason', () => {
    expect(mssql.unstorableFloat('-0')).toMatch(/negative zero/);
  });
});
