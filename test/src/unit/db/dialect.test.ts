import { describe, expect, it } from 'vitest';
import { dialectFor, wireColumnType, type DialectName } from '@sitesync/db';

describe('doubles sent by name (NaN, infinities, -0)', () => {
  it('each dialect says which it cannot store exactly', () => {
    const refused = (name: DialectName) =>
      ['NaN', 'Infinity', '-Infinity', '-0'].filter((v) => dialectFor(name).unstorableFloat(v) !== undefined);
    expect(refused('postgres')).toEqual([]);
    expect(refused('sqlite')).toEqual(['NaN', '-0']);
    expect(refused('mysql')).toEqual(['NaN', 'Infinity', '-Infinity', '-0']);
    expect(refused('mssql')).toEqual(['NaN', 'Infinity', '-Infinity', '-0']);
    expect(dialectFor('sqlite').bindValue('-Infinity', 'number')).toBe(-Infinity);
  });
});

describe('placeholders', () => {
  it('number each "?" in order, but not one inside a quoted identifier or a string literal', () => {
    const sql = `SELECT "a?b", [c?]]d], \`e?\`, ? FROM t WHERE x = 'it''s ?' AND "f""?" = ? AND y = ?`;
    expect(dialectFor('postgres').render(sql)).toBe(
      `SELECT "a?b", [c?]]d], \`e?\`, $1 FROM t WHERE x = 'it''s ?' AND "f""?" = $2 AND y = $3`,
    );
    expect(dialectFor('mssql').render(sql)).toBe(
      `SELECT "a?b", [c?]]d], \`e?\`, @0 FROM t WHERE x = 'it''s ?' AND "f""?" = @1 AND y = @2`,
    );
  });
});

describe.each(['sqlite', 'postgres', 'mssql', 'mysql'] as DialectName[])('%s dialect: common rules', (name) => {
  const d = dialectFor(name);

  it('reports its own name and gives a fresh instance each time', () => {
    expect(d.name).toBe(name);
    expect(dialectFor(name)).not.toBe(d);
  });

  it('chunkSize honours the cap and the reserve, and is at least one even for huge rows', () => {
    expect(d.chunkSize(1, 10, 50)).toBe(50);
    expect(d.chunkSize(d.maxParams * 2)).toBe(1);
    expect(d.chunkSize(0)).toBeGreaterThanOrEqual(1);
    expect(d.chunkSize(100, 0, 1_000_000)).toBe(Math.floor(d.maxParams / 100));
  });

  it('quotes an identifier so that it cannot end the quoted name', () => {
    for (const hostile of ['a"b', 'a]b', 'a`b', 'x; DROP TABLE y', "o'brien"]) {
      const q = d.quote(hostile);
      const close = q[q.length - 1]!;
      // every closing-quote character inside is doubled, so the name runs to the last character
      expect(q.slice(1, -1).replaceAll(close + close, '')).not.toContain(close);
    }
  });

  it('builds a multi-row INSERT with one tuple per row', () => {
    const s = d.insertRows(
      't',
      ['a', 'b'],
      [
        [1, 'x'],
        [2, 'y'],
        [3, 'z'],
      ],
    );
    expect(s.sql).toBe(`INSERT INTO ${d.quote('t')} (${d.quote('a')}, ${d.quote('b')}) VALUES (?, ?), (?, ?), (?, ?)`);
    expect(s.params).toEqual([1, 'x', 2, 'y', 3, 'z']);
  });

  it('builds key predicates: IN for one column (one array on PostgreSQL), OR of ANDs for several', () => {
    const one = d.keyPredicate(['id'], [[1], [2], [3]]);
    if (name === 'postgres') {
      expect(one.sql).toBe(`${d.quote('id')} = ANY(?)`);
      expect(one.params).toEqual([[1, 2, 3]]);
    } else {
      expect(one.sql).toBe(`${d.quote('id')} IN (?, ?, ?)`);
      expect(one.params).toEqual([1, 2, 3]);
    }
    const two = d.keyPredicate(
      ['a', 'b'],
      [
        [1, 'x'],
        [2, 'y'],
      ],
      't',
    );
    expect(two.sql).toBe(
      `((t.${d.quote('a')} = ? AND t.${d.quote('b')} = ?) OR (t.${d.quote('a')} = ? AND t.${d.quote('b')} = ?))`,
    );
    expect(two.params).toEqual([1, 'x', 2, 'y']);
  });

  it('builds a keyset "after" condition in key order', () => {
    const a = d.afterKey(['a'], [5]);
    expect(a.sql).toBe(`((${d.quote('a')} > ?))`);
    expect(a.params).toEqual([5]);
    const abc = d.afterKey(['a', 'b', 'c'], [1, 2, 3]);
    const [qa, qb, qc] = ['a', 'b', 'c'].map((c) => d.quote(c));
    expect(abc.sql).toBe(`((${qa} > ?) OR (${qa} = ? AND ${qb} > ?) OR (${qa} = ? AND ${qb} = ? AND ${qc} > ?))`);
    expect(abc.params).toEqual([1, 1, 2, 1, 2, 3]);
  });

  it('maps every wire column type to a column type, keys to something indexable', () => {
    for (const type of ['integer', 'number', 'text', 'boolean', 'timestamp', 'binary'] as const) {
      expect(d.columnType({ name: 'c', type, nullable: true }, false)).toMatch(/^[A-Z]/);
    }
    const keyText = d.columnType({ name: 'k', type: 'text', nullable: false }, true);
    if (name !== 'sqlite') expect(keyText).toMatch(/\(\d+\)( |$)/);
  });
});

describe('SQL Server statements (no server needed)', () => {
  const d = dialectFor('mssql');

  it('quotes names in brackets, doubling a closing bracket', () => {
    expect(d.quote('EstadoSyncGeneral')).toBe('[EstadoSyncGeneral]');
    expect(d.quote('a]b')).toBe('[a]]b]');
    expect(d.quote(']]')).toBe('[]]]]]');
    expect(d.quote('x; DROP TABLE y')).toBe('[x; DROP TABLE y]');
    expect(d.quote('a[b')).toBe('[a[b]');
  });

  it('renders ? as @0, @1, ... in order', () => {
    expect(d.render('SELECT * FROM t WHERE a = ? AND b IN (?, ?)')).toBe(
      'SELECT * FROM t WHERE a = @0 AND b IN (@1, @2)',
    );
    expect(d.render('SELECT 1')).toBe('SELECT 1');
    const many = d.render(Array.from({ length: 12 }, () => '?').join(','));
    expect(many).toBe(Array.from({ length: 12 }, (_, i) => `@${i}`).join(','));
  });

  it('limits with SELECT TOP (n)', () => {
    expect(d.selectLimit('* FROM [t] ORDER BY [id]', 500)).toBe('SELECT TOP (500) * FROM [t] ORDER BY [id]');
    expect(d.selectLimit('a FROM b', 10.9)).toBe('SELECT TOP (10) a FROM b');
    expect(d.selectLimit('a FROM b', 10)).not.toMatch(/LIMIT/);
  });

  it('creates an index only when sys.indexes lacks it on that table (SQL Server has no CREATE INDEX IF NOT EXISTS)', () => {
    expect(d.createIndexIfMissing('central_results', 'IX_central_results_header', ['id_efector', 'order_id'])).toBe(
      "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'IX_central_results_header' " +
        "AND object_id = OBJECT_ID(N'central_results')) " +
        'CREATE INDEX [IX_central_results_header] ON [central_results] ([id_efector], [order_id])',
    );
    // Names go into the catalogue query as N'...' literals: a quote in one is doubled, not a way out.
    expect(d.createIndexIfMissing("a'b", "IX_a'b", ['c'])).toBe(
      "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'IX_a''b' AND object_id = OBJECT_ID(N'a''b')) " +
        "CREATE INDEX [IX_a'b] ON [a'b] ([c])",
    );
  });

  it('renders key predicates and keyset conditions with bracketed names and @n parameters', () => {
    const p = d.keyPredicate(['a', 'b'], [[1, 2]], 'h');
    expect(d.render(p.sql)).toBe('((h.[a] = @0 AND h.[b] = @1))');
    const after = d.afterKey(['a', 'b'], [1, 2]);
    expect(d.render(after.sql)).toBe('(([a] > @0) OR ([a] = @1 AND [b] > @2))');
  });

  it('creates SQL Server column types', () => {
    const col = (type: 'integer' | 'number' | 'text' | 'boolean' | 'timestamp' | 'binary', key = false) =>
      d.columnType({ name: 'c', type, nullable: true }, key);
    expect(col('integer')).toBe('BIGINT');
    expect(col('number')).toMatch(/^DECIMAL\(38, ?\d+\)$/);
    expect(col('boolean')).toBe('BIT');
    expect(col('timestamp')).toMatch(/^DATETIME2/);
    expect(col('binary')).toBe('VARBINARY(MAX)');
    expect(col('text')).toBe('NVARCHAR(MAX)');
    // NVARCHAR(MAX) cannot be part of a key; binary, so 'abc' and 'ABC' are two keys
    expect(col('text', true)).toBe('NVARCHAR(400) COLLATE Latin1_General_100_BIN2');
    expect(d.textType(64)).toBe('nvarchar(64)');
    expect(d.textType()).toBe('nvarchar(max)');
    expect(d.booleanType()).toBe('bit');
    expect(d.timestampType()).toBe('datetime2');
  });
});

describe('PostgreSQL statements', () => {
  const d = dialectFor('postgres');

  it('quotes with double quotes, doubling embedded ones', () => {
    expect(d.quote('EstadoSyncGeneral')).toBe('"EstadoSyncGeneral"');
    expect(d.quote('a"b')).toBe('"a""b"');
  });

  it('renders ? as $1, $2, ...', () => {
    expect(d.render('a = ? AND b = ? OR c = ?')).toBe('a = $1 AND b = $2 OR c = $3');
  });

  it('limits with LIMIT', () => {
    expect(d.selectLimit('* FROM t', 5)).toBe('SELECT * FROM t LIMIT 5');
  });

  it('writes rows from one JSON parameter, each value cast to its column type', () => {
    const at = new Date('2024-05-02T10:15:00.000Z');
    const stmt = d.writeMany(
      'central_orders',
      ['id_efector', 'order_id', 'note', 'at', 'blob', 'big'],
      ['BIGINT', 'BIGINT', 'TEXT', 'TIMESTAMPTZ', 'BYTEA', 'NUMERIC'],
      [
        [7, 1, 'a "b" \\ c', at, Buffer.from([1, 255]), 12n],
        [7, 2, null, null, null, null],
      ],
      ['id_efector', 'order_id'],
    );
    expect(stmt.sql).toMatch(
      /^INSERT INTO "central_orders" \("id_efector", "order_id", "note", "at", "blob", "big"\) SELECT \(r->>0\)::bigint, \(r->>1\)::bigint, \(r->>2\)::text, \(r->>3\)::timestamptz, \(r->>4\)::bytea, \(r->>5\)::numeric FROM jsonb_array_elements\(\?::jsonb\) AS r ON CONFLICT \("id_efector", "order_id"\) DO UPDATE SET /,
    );
    expect(stmt.params).toHaveLength(1);
    // the text PostgreSQL reads for each column: ISO time, \x hex, decimal
    expect(JSON.parse(stmt.params[0] as string)).toEqual([
      [7, 1, 'a "b" \\ c', '2024-05-02T10:15:00.000Z', '\\x01ff', '12'],
      [7, 2, null, null, null, null],
    ]);
    // a number bound to a text column keeps its JavaScript text (jsonb would turn 1e21 into digits);
    // a cast never carries a length (an explicit cast to varchar(n) truncates silently)
    const texts = d.writeMany('t', ['k', 'n'], ['VARCHAR(400)', 'NUMERIC'], [[1e21, 1e21]]);
    expect(texts.sql).toContain('SELECT (r->>0)::varchar, (r->>1)::numeric FROM');
    expect(JSON.parse(texts.params[0] as string)).toEqual([['1e+21', 1e21]]);
    for (const odd of [NaN, Infinity, 'nul \u0000 byte', 'lone \udc00', { an: 'object' }]) {
      const s = d.writeMany('t', ['a'], ['TEXT'], [['x'], [odd]]);
      expect(s.sql, String(odd)).toContain('FROM unnest(?::text[]) AS u("a")');
      expect(s.params).toEqual([['x', odd]]);
    }
  });

  it('refreshes the statistics of the named columns only (each once), or of the whole table', () => {
    expect(d.refreshStatistics('central_results', ['id_efector', 'order_id', 'id_efector'])!.refresh).toBe(
      'ANALYZE "central_results" ("id_efector", "order_id")',
    );
    expect(d.refreshStatistics('odd"name')!.refresh).toBe('ANALYZE "odd""name"');
  });

  it('looks rows up by primary key one key at a time (a lateral subquery the planner cannot turn into a scan)', () => {
    const stmt = d.selectByKeys('sync_row_state', ['header_key', 'TargetHash'], ['pipeline', 'lab'], {
      column: 'header_key',
      sqlType: 'varchar(400)',
      values: ['["1"]', '["2"]'],
    });
    expect(stmt.sql).toBe(
      'SELECT s."header_key", s."TargetHash" FROM unnest(?::varchar[]) AS k(key) CROSS JOIN LATERAL ' +
        '(SELECT "header_key", "TargetHash" FROM "sync_row_state" WHERE "pipeline" = ? AND "header_key" = k.key LIMIT 1) AS s',
    );
    expect(stmt.params).toEqual([['["1"]', '["2"]'], 'lab']);
  });

  it('deletes the lines a header no longer has with = ANY / <> ALL when both keys are one column', () => {
    const stmt = d.deleteUnlisted(
      'central_results',
      ['id_efector', 7],
      { columns: ['order_id'], sqlTypes: ['BIGINT'], keys: [[1], [2]] },
      { columns: ['result_id'], sqlTypes: ['BIGINT'], keys: [[10], [20], [21]] },
    );
    expect(stmt.sql).toBe(
      'DELETE FROM "central_results" WHERE "id_efector" = ? AND "order_id" = ANY(?::bigint[]) AND "result_id" <> ALL(?::bigint[])',
    );
    expect(stmt.params).toEqual([7, [1, 2], [10, 20, 21]]);
    // a NULL key matches no line; in the array it would make `<> ALL` NULL, and delete nothing
    const withNull = d.deleteUnlisted(
      'central_results',
      ['id_efector', 7],
      { columns: ['order_id'], sqlTypes: ['BIGINT'], keys: [[1]] },
      { columns: ['result_id'], sqlTypes: ['BIGINT'], keys: [[10], [null]] },
    );
    expect(withNull.params).toEqual([7, [1], [10]]);
  });

  it('deletes the lines a header no longer has with one anti-join over array parameters', () => {
    const stmt = d.deleteUnlisted(
      'central_results',
      ['id_efector', 7],
      { columns: ['order_id'], sqlTypes: ['BIGINT'], keys: [[1], [2]] },
      {
        columns: ['order_id', 'result_id'],
        sqlTypes: ['BIGINT', 'VARCHAR(400)'],
        keys: [
          [1, 'a'],
          [2, 'b'],
          [2, 'c'],
        ],
      },
    );
    expect(stmt.sql).toBe(
      'DELETE FROM "central_results" AS d WHERE d."id_efector" = ? AND (d."order_id") IN (SELECT * FROM unnest(?::bigint[])) ' +
        'AND NOT EXISTS (SELECT 1 FROM unnest(?::bigint[], ?::varchar[]) AS k(k0, k1) WHERE k.k0 = d."order_id" AND k.k1 = d."result_id")',
    );
    expect(stmt.params).toEqual([7, [1, 2], [1, 2, 2], ['a', 'b', 'c']]);
  });
});

describe('SQLite statements', () => {
  const d = dialectFor('sqlite');

  it('leaves ? placeholders as they are and quotes with double quotes', () => {
    expect(d.render('a = ? AND b = ?')).toBe('a = ? AND b = ?');
    expect(d.quote('a"b')).toBe('"a""b"');
    expect(d.selectLimit('* FROM t', 3)).toBe('SELECT * FROM t LIMIT 3');
  });

  it("stays under SQLite's default limit of 32,766 bound parameters", () => {
    expect(d.maxParams).toBeLessThanOrEqual(32_766);
  });
});

describe('MySQL / MariaDB statements', () => {
  const d = dialectFor('mysql');

  it('quotes with backticks, doubling embedded ones, and keeps ? placeholders', () => {
    expect(d.quote('EstadoSyncGeneral')).toBe('`EstadoSyncGeneral`');
    expect(d.quote('a`b')).toBe('`a``b`');
    expect(d.render('a = ?')).toBe('a = ?');
    expect(d.selectLimit('* FROM t', 3)).toBe('SELECT * FROM t LIMIT 3');
  });
});

describe('driver column types -> wire column types', () => {
  it.each([
    // SQL Server
    ['bit', 'boolean'],
    ['int', 'integer'],
    ['bigint', 'integer'],
    ['smallint', 'integer'],
    ['tinyint', 'integer'],
    ['decimal', 'number'],
    ['numeric', 'number'],
    ['money', 'number'],
    ['float', 'number'],
    ['datetime', 'timestamp'],
    ['datetime2', 'timestamp'],
    ['datetimeoffset', 'timestamp'],
    ['date', 'timestamp'],
    ['nvarchar', 'text'],
    ['varchar', 'text'],
    ['uniqueidentifier', 'text'],
    ['varbinary', 'binary'],
    ['image', 'binary'],
    // PostgreSQL
    ['boolean', 'boolean'],
    ['integer', 'integer'],
    ['bigserial', 'integer'],
    ['double precision', 'number'],
    ['real', 'number'],
    ['timestamp with time zone', 'timestamp'],
    ['character varying', 'text'],
    ['bytea', 'binary'],
    ['uuid', 'text'],
    // MySQL / SQLite
    ['tinyint(1)', 'boolean'],
    ['blob', 'binary'],
    ['longblob', 'binary'],
    ['TEXT', 'text'],
    ['INTEGER', 'integer'],
  ])('%s -> %s', (db, wire) => {
    expect(wireColumnType(db)).toBe(wire);
  });
});

describe('binding wire values', () => {
  it('binary values travel as base64 and are bound as bytes; booleans follow the dialect', () => {
    for (const name of ['sqlite', 'postgres', 'mssql', 'mysql'] as const) {
      const d = dialectFor(name);
      const bound = d.bindValue('base64:AAEC/w==', 'binary');
      expect(Buffer.isBuffer(bound)).toBe(true);
      expect([...(bound as Buffer)]).toEqual([0, 1, 2, 255]);
      expect(d.bindValue('plain text', 'text')).toBe('plain text');
    }
    expect(dialectFor('sqlite').bindValue(true, 'boolean')).toBe(1);
    expect(dialectFor('postgres').bindValue(true, 'boolean')).toBe(true);
  });

  it('SQL Server rowversion (timestamp) is binary, not a point in time; interval is not an integer', () => {
    expect(wireColumnType('timestamp', 'mssql')).toBe('binary');
    expect(wireColumnType('timestamp', 'postgres')).toBe('timestamp');
    expect(wireColumnType('interval', 'postgres')).toBe('text');
  });
});

describe('upsert that writes only changed rows (the central merge)', () => {
  const rows = [[101, 7, 'a', null]] as const;
  const cols = ['id_efector', 'result_id', 'value', 'flag'];
  const key = ['id_efector', 'result_id'];

  it('PostgreSQL: ON CONFLICT ... DO UPDATE ... WHERE a value IS DISTINCT FROM the new one', () => {
    const s = dialectFor('postgres').upsert('central_results', key, cols, rows, { onlyIfChanged: true });
    expect(s.sql).toBe(
      'INSERT INTO "central_results" ("id_efector", "result_id", "value", "flag") VALUES (?, ?, ?, ?) ' +
        'ON CONFLICT ("id_efector", "result_id") DO UPDATE SET "value" = excluded."value", "flag" = excluded."flag" ' +
        'WHERE "central_results"."value" IS DISTINCT FROM excluded."value" OR "central_results"."flag" IS DISTINCT FROM excluded."flag"',
    );
    expect(s.params).toEqual([101, 7, 'a', null]);
  });

  it('SQLite: the same with IS NOT (its null-safe inequality)', () => {
    const s = dialectFor('sqlite').upsert('central_results', key, cols, rows, { onlyIfChanged: true });
    expect(s.sql).toMatch(
      /WHERE "central_results"\."value" IS NOT excluded\."value" OR "central_results"\."flag" IS NOT excluded\."flag"$/,
    );
  });

  it('SQL Server: WHEN MATCHED only when the new values EXCEPT the stored ones leave a row (NULLs compare equal)', () => {
    const s = dialectFor('mssql').upsert('central_results', key, cols, rows, { onlyIfChanged: true });
    expect(s.sql).toContain(
      'WHEN MATCHED AND EXISTS (SELECT s.[value], s.[flag] EXCEPT SELECT t.[value], t.[flag]) THEN UPDATE SET t.[value] = s.[value], t.[flag] = s.[flag]',
    );
    expect(s.sql).toMatch(/^MERGE \[central_results\] WITH \(HOLDLOCK\) AS t USING \(VALUES \(\?, \?, \?, \?\)\)/);
  });

  it('a table of key columns only does nothing on conflict', () => {
    expect(dialectFor('postgres').upsert('t', ['a'], ['a'], [[1]]).sql).toMatch(/ON CONFLICT \("a"\) DO NOTHING$/);
    expect(dialectFor('mysql').upsert('t', ['a'], ['a'], [[1]]).sql).toMatch(
      /ON DUPLICATE KEY UPDATE `a` = VALUES\(`a`\)$/,
    );
  });
});
