import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, Statement } from '@sitesync/db';
import { reportSkip } from '../../support/services.js';
import { backendUrl, openScratch, uniqueName, type Scratch } from './scratch-databases.js';

/**
 * The plans PostgreSQL picks for the statements a full scan and a first load run once per page or
 * per batch. A plan that reads the whole table there makes the load quadratic in the site's size.
 */
describe.skipIf(reportSkip('PostgreSQL plans', backendUrl('postgres')))('PostgreSQL plans', () => {
  let db: Database;
  let scratch: Scratch;
  beforeAll(async () => {
    ({ db, scratch } = await openScratch('postgres', 'site'));
  });
  afterAll(async () => {
    await db?.close();
    await scratch?.drop();
  });

  const plan = async (stmt: Statement) =>
    (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${stmt.sql}`, stmt.params))
      .map((r) => r['QUERY PLAN'])
      .join('\n');

  it('row states of a page are primary-key lookups even when the side table is large and analyzed', async () => {
    // 60k narrow rows: the size at which `header_key = ANY(...)` of 500 keys was planned as a sequential scan
    const t = uniqueName('row_state');
    const q = db.dialect.quote(t);
    await db.query(
      `CREATE TABLE ${q} (pipeline varchar(64) NOT NULL, header_key varchar(400) NOT NULL, target varchar(64), PRIMARY KEY (pipeline, header_key))`,
    );
    await db.query(`INSERT INTO ${q} SELECT 'lab', '["' || g || '"]', md5(g::text) FROM generate_series(1, 60000) g`);
    await db.query(`ANALYZE ${q}`);
    const keys = Array.from({ length: 500 }, (_, i) => `["${100_000 + i}"]`);
    const lookup = db.dialect.selectByKeys(t, ['header_key', 'target'], ['pipeline', 'lab'], {
      column: 'header_key',
      sqlType: 'varchar(400)',
      values: keys,
    });
    const p = await plan(lookup);
    expect(p).toMatch(/Index (Only )?Scan using/);
    expect(p).not.toMatch(/Seq Scan on/);
    // the rows it finds are right
    const found = db.dialect.selectByKeys(t, ['header_key', 'target'], ['pipeline', 'lab'], {
      column: 'header_key',
      sqlType: 'varchar(400)',
      values: ['["7"]', '["999999"]'],
    });
    expect(await db.query(found.sql, found.params)).toEqual([{ header_key: '["7"]', target: expect.any(String) }]);
  });

  it("a batch's vanished-line delete reads only the named headers' lines once statistics are current", async () => {
    const t = uniqueName('lines');
    const q = db.dialect.quote(t);
    await db.query(
      `CREATE TABLE ${q} (id_efector int NOT NULL, line_id bigint NOT NULL, order_id bigint NOT NULL, PRIMARY KEY (id_efector, line_id))`,
    );
    await db.query(`CREATE INDEX ${db.dialect.quote(`${t}_order`)} ON ${q} (id_efector, order_id)`);
    await db.query(`INSERT INTO ${q} SELECT 1, g, g / 5 FROM generate_series(1, 100000) g`);
    // the columns the central analyzes for a detail table: the site's, the join, the line key
    await db.query(db.dialect.refreshStatistics(t, ['id_efector', 'order_id', 'line_id'])!.refresh);
    const int = 'BIGINT';
    const owners = Array.from({ length: 650 }, (_, i) => [30_000 + i]);
    const del = db.dialect.deleteUnlisted(
      t,
      ['id_efector', 1],
      { columns: ['order_id'], sqlTypes: [int], keys: owners },
      { columns: ['line_id'], sqlTypes: [int], keys: owners.map(([o]) => [o! * 5]) },
    );
    const p = await plan(del);
    expect(p).not.toMatch(/Seq Scan on/);
    expect(p).toMatch(/Index Cond: \(\(id_efector = 1\) AND \(order_id = ANY/);
  });
});
