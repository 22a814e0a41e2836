import { describe, expect, it } from 'vitest';
import { dialectFor, type DialectName } from '@sitesync/db';
import { ledgerReturnsWinners, upsertLedger, type LedgerUpsert } from '@sitesync/central';

/** SQL Server refuses a request with more than 2,100 parameters. */
const MSSQL_PARAM_LIMIT = 2100;
const LEDGER_COLUMNS = ['id_efector', 'pipeline', 'header_key', 'version', 'row_hash', 'deleted', 'updated_at'];

function ledgerRows(n: number, siteId = 7): LedgerUpsert['rows'] {
  return Array.from({ length: n }, (_, i) => [siteId, 'main', `[${i}]`, 10 + i, `hash${i}`, i % 2 === 0] as const);
}

function count(s: string, needle: string | RegExp): number {
  return (s.match(needle instanceof RegExp ? new RegExp(needle.source, 'g') : new RegExp(escape(needle), 'g')) ?? [])
    .length;
}
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe.each(['sqlite', 'postgres', 'mssql', 'mysql'] as DialectName[])('%s dialect: common rules', (name) => {
  const d = dialectFor(name);

  it('renders exactly one placeholder per parameter of the ledger upsert (7 per row, or 4 whatever the rows)', () => {
    for (const n of [1, 3, 50]) {
      const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(n) });
      const perStatement = d.arrayParameters ? 4 : 7 * n;
      expect(stmt.params).toHaveLength(perStatement);
      expect(count(stmt.sql, '?')).toBe(perStatement);
    }
  });

  it.runIf(!dialectFor(name).arrayParameters)(
    'binds ledger values in column order: site, pipeline, key, version, hash, deleted, updated_at',
    () => {
      const stmt = upsertLedger(d, { table: 'sync_ledger', rows: [[7, 'main', '[1,"a"]', 42, null, true]] });
      expect(stmt.params.slice(0, 5)).toEqual([7, 'main', '[1,"a"]', 42, null]);
      expect(stmt.params[5]).toBe(d.bool(true));
      expect(stmt.params[6]).toBeDefined();
      expect(stmt.params[6]).not.toBeNull();
    },
  );

  it('never merges in place a value: no constant from the rows appears in the SQL text', () => {
    const stmt = upsertLedger(d, {
      table: 'sync_ledger',
      rows: [[7, "pipe'; DROP TABLE x; --", '["k"]', 42, 'abc', false]],
    });
    expect(stmt.sql).not.toContain('DROP TABLE');
    expect(stmt.sql).not.toContain('abc');
  });

  it('keeps every statement under its parameter limit when chunked by chunkSize', () => {
    for (const perKey of [1, 2, 7, 13, 60]) {
      const n = d.chunkSize(perKey);
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n * perKey + 10).toBeLessThanOrEqual(d.maxParams);
    }
    const rows = d.chunkSize(7);
    expect(upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(rows) }).params.length).toBeLessThanOrEqual(
      d.maxParams,
    );
  });
});

describe('SQL Server statements (no server needed)', () => {
  const d = dialectFor('mssql');

  it('stays under the 2,100 parameter limit of SQL Server', () => {
    expect(d.maxParams).toBeLessThanOrEqual(MSSQL_PARAM_LIMIT);
    const perRow = 7;
    const rows = d.chunkSize(perRow);
    expect(rows * perRow).toBeLessThanOrEqual(MSSQL_PARAM_LIMIT);
    expect(rows).toBeGreaterThan(100); // and is not needlessly small
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(rows) });
    expect(stmt.params.length).toBeLessThanOrEqual(MSSQL_PARAM_LIMIT);
    const rendered = d.render(stmt.sql);
    expect(rendered).toContain(`@${stmt.params.length - 1})`);
    expect(rendered).not.toContain(`@${stmt.params.length}`);
    expect(rendered).not.toContain('?');
  });

  it('upserts the ledger with one MERGE that holds its range lock and only overwrites older versions', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(3) });
    const sql = stmt.sql;
    expect(sql).toMatch(/^MERGE \[sync_ledger\] WITH \(HOLDLOCK\) AS t USING \(VALUES /);
    expect(sql).toContain('WITH (HOLDLOCK)');
    expect(sql).toContain(`AS s (${LEDGER_COLUMNS.join(', ')})`);
    expect(sql).toContain('ON t.id_efector = s.id_efector AND t.pipeline = s.pipeline AND t.header_key = s.header_key');
    expect(sql).toContain(
      'WHEN MATCHED AND (t.version < s.version OR (t.version = s.version AND s.deleted = 1 AND t.deleted = 0)) THEN UPDATE SET',
    );
    expect(sql).toMatch(/UPDATE SET [^]*version = s\.version/);
    expect(sql).toContain(
      `WHEN NOT MATCHED THEN INSERT (${LEDGER_COLUMNS.join(', ')}) VALUES (${LEDGER_COLUMNS.map((c) => `s.${c}`).join(', ')})`,
    );
    expect(sql.trimEnd().endsWith(';')).toBe(true); // a MERGE must be terminated
    expect(count(sql, 'WHEN MATCHED')).toBe(1);
    expect(sql).not.toMatch(/WHEN NOT MATCHED BY SOURCE/); // rows of other keys are never deleted
    expect(count(sql, '(?, ?, ?, ?, ?, ?, ?)')).toBe(3);
    expect(stmt.params).toHaveLength(21);
  });

  it('binds the deleted flag as a boolean (bit) and a timestamp for updated_at', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: [[1, 'main', '[1]', 2, 'h', true]] });
    expect(stmt.params[5]).toBe(true);
    expect(stmt.params[6]).toBeInstanceOf(Date);
  });

  it('quotes the ledger table name it is given', () => {
    expect(upsertLedger(d, { table: 'odd]name', rows: ledgerRows(1) }).sql).toMatch(
      /^MERGE \[odd\]\]name\] WITH \(HOLDLOCK\)/,
    );
  });
});

describe('PostgreSQL statements', () => {
  const d = dialectFor('postgres');

  it('upserts the ledger of one site and pipeline from one JSON parameter, updating only older versions, returning the winners', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(3) });
    expect(stmt.sql).toMatch(/^INSERT INTO "sync_ledger" \(/);
    expect(stmt.sql).toContain(
      'FROM (SELECT r->>0 AS k, (r->>1)::bigint AS v, r->>2 AS h, (r->>3)::boolean AS d FROM jsonb_array_elements(?::jsonb) AS r) AS u',
    );
    expect(stmt.sql).toContain('ON CONFLICT (id_efector, pipeline, header_key) DO UPDATE SET');
    expect(stmt.sql).toContain('version = excluded.version');
    expect(stmt.sql).toMatch(
      /WHERE "sync_ledger"\.version < excluded\.version OR \("sync_ledger"\.version = excluded\.version AND excluded\.deleted = (TRUE|1) AND "sync_ledger"\.deleted = (FALSE|0)\) RETURNING header_key, deleted$/,
    );
    // site, pipeline, updated_at once; then keys, versions, hashes, deleted flags as rows
    expect(stmt.params.slice(0, 2)).toEqual([7, 'main']);
    expect(stmt.params[2]).toBeInstanceOf(Date);
    expect(JSON.parse(stmt.params[3] as string)).toEqual([
      ['[0]', 10, 'hash0', true],
      ['[1]', 11, 'hash1', false],
      ['[2]', 12, 'hash2', true],
    ]);
    expect(d.render(stmt.sql)).toContain('$4::jsonb');
    expect(d.render(stmt.sql)).not.toContain('$5');
  });

  it('binds the ledger as one array per column where JSON cannot carry a value faithfully', () => {
    const rows = [ledgerRows(1)[0]!, [7, 'main', '["\ud800"]', 11, 'hash1', false] as const];
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows });
    expect(stmt.sql).toContain('FROM unnest(?::text[], ?::bigint[], ?::text[], ?::boolean[])');
    expect(stmt.params.slice(3)).toEqual([
      ['[0]', '["\ud800"]'],
      [10, 11],
      ['hash0', 'hash1'],
      [true, false],
    ]);
  });

  it('falls back to a VALUES list when the rows name more than one site or pipeline', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: [...ledgerRows(1, 7), ...ledgerRows(1, 8)] });
    expect(stmt.sql).not.toContain('unnest');
    expect(stmt.params).toHaveLength(14);
    expect(stmt.sql).toMatch(/RETURNING header_key, deleted$/);
  });
});

describe('SQLite statements', () => {
  const d = dialectFor('sqlite');

  it('binds booleans as 0/1 and timestamps as ISO text (it has neither type)', () => {
    expect(d.bool(true)).toBe(1);
    expect(d.bool(false)).toBe(0);
    expect(d.now()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: [[1, 'main', '[1]', 2, 'h', true]] });
    expect(stmt.params[5]).toBe(1);
    expect(typeof stmt.params[6]).toBe('string');
  });

  it('upserts the ledger with ON CONFLICT ... WHERE older version, returning the rows it wrote', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(1) });
    expect(stmt.sql).toContain('ON CONFLICT (id_efector, pipeline, header_key) DO UPDATE SET');
    expect(stmt.sql).toMatch(
      /WHERE "sync_ledger"\.version < excluded\.version OR \("sync_ledger"\.version = excluded\.version AND excluded\.deleted = (TRUE|1) AND "sync_ledger"\.deleted = (FALSE|0)\) RETURNING header_key, deleted$/,
    );
    expect(ledgerReturnsWinners(d)).toBe(true);
  });
});

describe('MySQL / MariaDB statements', () => {
  const d = dialectFor('mysql');

  it('upserts the ledger with ON DUPLICATE KEY UPDATE, every assignment guarded by the version, version assigned last', () => {
    const stmt = upsertLedger(d, { table: 'sync_ledger', rows: ledgerRows(2) });
    const sql = stmt.sql;
    expect(sql).toMatch(/^INSERT INTO `sync_ledger` \(/);
    const update = sql.slice(sql.indexOf('ON DUPLICATE KEY UPDATE ') + 'ON DUPLICATE KEY UPDATE '.length);
    expect(sql).toContain('ON DUPLICATE KEY UPDATE ');
    // MySQL evaluates the assignments left to right: had version been assigned first, the later guards
    // would compare against the new version and never copy the other columns.
    const assignments = update.split(/,\s*(?=[a-z_]+ = )/).map((a) => a.trim());
    expect(assignments.map((a) => a.split(' = ')[0])).toEqual(['row_hash', 'deleted', 'updated_at', 'version']);
    for (const a of assignments) {
      expect(a).toMatch(
        /^([a-z_]+) = IF\(\(version < VALUES\(version\) OR \(version = VALUES\(version\) AND VALUES\(deleted\) = 1 AND deleted = 0\)\), VALUES\(\1\), \1\)$/,
      );
    }
    expect(stmt.params[5]).toBe(1);
  });
});
