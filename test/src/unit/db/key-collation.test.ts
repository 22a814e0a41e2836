import { describe, expect, it } from 'vitest';
import { dialectFor, exactKeyStatements, foldKeyValue, isExactComparison, loosenings } from '@sitesync/db';

describe('key columns the central creates compare exactly (no server needed)', () => {
  it('MariaDB text key columns are utf8mb4 binary and NO PAD; other text columns keep the default', () => {
    const d = dialectFor('mysql');
    expect(d.columnType({ name: 'k', type: 'text', nullable: false }, true)).toBe(
      'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin',
    );
    expect(d.columnType({ name: 'v', type: 'text', nullable: true }, false)).toBe('LONGTEXT');
    expect(d.columnType({ name: 'b', type: 'binary', nullable: false }, true)).toBe('VARBINARY(255)');
  });

  it('SQL Server text key columns are BIN2', () => {
    const d = dialectFor('mssql');
    expect(d.columnType({ name: 'k', type: 'text', nullable: false }, true)).toBe(
      'NVARCHAR(400) COLLATE Latin1_General_100_BIN2',
    );
    expect(d.columnType({ name: 'v', type: 'text', nullable: true }, false)).toBe('NVARCHAR(MAX)');
  });

  it('PostgreSQL and SQLite need no collation: they compare exactly by default', () => {
    for (const name of ['postgres', 'sqlite'] as const) {
      const d = dialectFor(name);
      expect(d.keyCollation).toBeUndefined();
      expect(d.columnType({ name: 'k', type: 'text', nullable: false }, true)).not.toMatch(/COLLATE/);
      expect(exactKeyStatements(d)).toEqual([]);
      expect(isExactComparison(d.keyComparison(d.keyCollation))).toBe(true);
    }
  });
});

describe('the migration that makes the ledger key exact (no server needed)', () => {
  it('on MariaDB modifies sync_ledger.header_key to utf8mb4_nopad_bin', () => {
    expect(exactKeyStatements(dialectFor('mysql'))).toEqual([
      'ALTER TABLE `sync_ledger` MODIFY `header_key` varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL',
    ]);
  });

  it('on SQL Server drops the primary key, alters the column to BIN2 and adds the key back by its name', () => {
    const [sql, ...rest] = exactKeyStatements(dialectFor('mssql'));
    expect(rest).toEqual([]);
    const parts = sql!.split(/; (?=DECLARE|IF|ALTER)/);
    expect(parts).toHaveLength(5);
    expect(parts[0]).toMatch(
      /^DECLARE @pk sysname = \(SELECT name FROM sys\.key_constraints WHERE parent_object_id = OBJECT_ID\(N'sync_ledger'\) AND type = 'PK'\)$/,
    );
    expect(parts[1]).toMatch(
      /^DECLARE @cols nvarchar\(max\) = \(SELECT STRING_AGG\(QUOTENAME\(c\.name\), N', '\) WITHIN GROUP \(ORDER BY ic\.key_ordinal\)/,
    );
    expect(parts[1]).toContain('i.is_primary_key = 1');
    expect(parts[2]).toBe(`IF @pk IS NOT NULL EXEC(N'ALTER TABLE [sync_ledger] DROP CONSTRAINT ' + QUOTENAME(@pk))`);
    expect(parts[3]).toBe(
      'ALTER TABLE [sync_ledger] ALTER COLUMN [header_key] nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL',
    );
    expect(parts[4]).toBe(
      `IF @pk IS NOT NULL EXEC(N'ALTER TABLE [sync_ledger] ADD CONSTRAINT ' + QUOTENAME(@pk) + N' PRIMARY KEY (' + @cols + N')');`,
    );
  });

  it('reads column collations and primary key membership from the catalogue', () => {
    const ms = dialectFor('mssql').columnCollations('lab_orders')!;
    expect(ms.params).toEqual(['lab_orders']);
    expect(ms.sql).toMatch(
      /FROM sys\.columns c WHERE c\.object_id = OBJECT_ID\(\?\) AND c\.collation_name IS NOT NULL$/,
    );
    expect(ms.sql).toContain('AS is_key');
    const my = dialectFor('mysql').columnCollations('lab_orders')!;
    expect(my.sql).toContain("(COLUMN_KEY = 'PRI') AS is_key");
    expect(my.sql).toContain('TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?');
  });
});

describe('legacy PostgreSQL and SQLite columns that compare inexactly', () => {
  const pg = dialectFor('postgres');
  const lite = dialectFor('sqlite');

  it('PostgreSQL: citext ignores case; a nondeterministic collation ignores normalization, and case or accents by its strength', () => {
    expect(loosenings(pg.keyComparison('citext'))).toEqual(['case']);
    expect(loosenings(pg.keyComparison('kt_ci (nondeterministic, und-u-ks-level2)'))).toEqual([
      'case',
      'Unicode normalization',
    ]);
    expect(loosenings(pg.keyComparison('kt_ai (nondeterministic, und-u-ks-level1)'))).toEqual([
      'case',
      'accents',
      'Unicode normalization',
    ]);
    expect(loosenings(pg.keyComparison('kt_nd (nondeterministic, und)'))).toEqual(['Unicode normalization']);
    expect(pg.columnCollations('Kt_Orders')!.params).toEqual(['"Kt_Orders"']);
    expect(pg.columnCollations('t')!.sql).toContain('collisdeterministic = false');
  });

  it('SQLite: NOCASE folds ASCII letters only, RTRIM ignores trailing spaces, BINARY is exact', () => {
    const nocase = lite.keyComparison('NOCASE');
    expect(loosenings(nocase)).toEqual(['ASCII case']);
    expect(foldKeyValue('ABC', nocase)).toBe(foldKeyValue('abc', nocase));
    expect(foldKeyValue('É', nocase)).not.toBe(foldKeyValue('é', nocase));
    expect(loosenings(lite.keyComparison('RTRIM'))).toEqual(['trailing spaces']);
    expect(isExactComparison(lite.keyComparison('BINARY'))).toBe(true);
    expect(lite.columnCollations('t')!.sql).toContain("l.origin = 'pk'");
  });

  it('canonically equivalent texts fold to one under a nondeterministic collation', () => {
    const nd = pg.keyComparison('kt_nd (nondeterministic, und)');
    expect(foldKeyValue('caf\u00e9', nd)).toBe(foldKeyValue('cafe\u0301', nd));
    expect(foldKeyValue('cafe', nd)).not.toBe(foldKeyValue('caf\u00e9', nd));
  });
});

describe('how a collation compares keys', () => {
  const my = dialectFor('mysql');
  const ms = dialectFor('mssql');

  it("MariaDB's default ignores case, accents and trailing spaces; utf8mb4_bin still pads; nopad_bin is exact", () => {
    expect(loosenings(my.keyComparison('utf8mb4_general_ci'))).toEqual(['case', 'accents', 'trailing spaces']);
    expect(loosenings(my.keyComparison('utf8mb4_bin'))).toEqual(['trailing spaces']);
    expect(isExactComparison(my.keyComparison('utf8mb4_nopad_bin'))).toBe(true);
    expect(isExactComparison(my.keyComparison('utf8mb4_0900_bin'))).toBe(true);
    expect(loosenings(my.keyComparison('utf8mb4_0900_as_ci'))).toEqual(['case']);
    expect(isExactComparison(my.keyComparison(my.keyCollation))).toBe(true);
  });

  it('SQL Server pads trailing spaces under every collation; CI_AS ignores case; BIN2 only pads', () => {
    expect(loosenings(ms.keyComparison('SQL_Latin1_General_CP1_CI_AS'))).toEqual(['case', 'trailing spaces']);
    expect(loosenings(ms.keyComparison('Latin1_General_100_CI_AI'))).toEqual(['case', 'accents', 'trailing spaces']);
    const bin2 = ms.keyComparison(ms.keyCollation);
    expect(loosenings(bin2)).toEqual(['trailing spaces']);
    // What the central cannot do better is not held against a legacy table.
    expect(loosenings(ms.keyComparison('Latin1_General_BIN2'), bin2)).toEqual([]);
    expect(loosenings(ms.keyComparison('SQL_Latin1_General_CP1_CI_AS'), bin2)).toEqual(['case']);
  });

  it("'abc', 'ABC' and 'abc ' fold to one value under a case-insensitive pad-space collation, not under an exact one", () => {
    const ci = my.keyComparison('utf8mb4_general_ci');
    expect(new Set(['abc', 'ABC', 'abc '].map((v) => foldKeyValue(v, ci))).size).toBe(1);
    expect(foldKeyValue('é', ci)).toBe(foldKeyValue('E', ci));
    const exact = my.keyComparison('utf8mb4_nopad_bin');
    expect(new Set(['abc', 'ABC', 'abc '].map((v) => foldKeyValue(v, exact))).size).toBe(3);
    expect(foldKeyValue(7, ci)).toBe(7);
  });
});
