import { describe, expect, it } from 'vitest';
import { BatchMerger, TargetTables, registerSite } from '@sitesync/central';
import { dialectFor, type Database, type TableInfo } from '@sitesync/db';
import type { DecodedMessage } from '@sitesync/protocol';
import {
  LAB_SHAPE,
  deliveredBatch,
  labBatch,
  senderChecked,
  type LabOrder,
  type SenderCheckedMerger,
} from '../support/messages.js';
import { reportSkip } from '../support/services.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql', 'mssql'];
const SITE_ID = 101;
const HEADERS = 'central_orders';
const DETAILS = 'central_results';
/** The index the central gives a detail table it creates, on the site column plus the join columns. */
const DETAIL_INDEX = `IX_${DETAILS}_header`;

/** The names of `table`'s indexes, straight from the server's catalogue. */
async function indexNames(db: Database, table: string): Promise<string[]> {
  const sql: Record<BackendName, string> = {
    sqlite: `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?`,
    postgres: `SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?`,
    mysql: `SELECT DISTINCT index_name AS name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?`,
    mssql: `SELECT name FROM sys.indexes WHERE object_id = OBJECT_ID(?) AND name IS NOT NULL`,
  };
  const rows = await db.query<Record<string, unknown>>(sql[db.dialect.name as BackendName], [table]);
  return rows.map((r) => String(r.name ?? r.NAME ?? r.INDEX_NAME));
}

async function dropIndex(db: Database, table: string, index: string): Promise<void> {
  const q = (s: string) => db.dialect.quote(s);
  const onTable = db.dialect.name === 'mysql' || db.dialect.name === 'mssql';
  await db.query(`DROP INDEX ${q(index)}${onTable ? ` ON ${q(table)}` : ''}`);
}

/** A lab batch from the site as the central's consumer hands it on. */
function delivered(orders: LabOrder[], version: number): DecodedMessage<'batch'> {
  return deliveredBatch(labBatch(SITE_ID, orders, { version }));
}

/** A central that has just started on `db`: nothing checked yet. */
function freshCentral(db: Database): SenderCheckedMerger {
  return senderChecked(db, new BatchMerger(db, new TargetTables(db)));
}

describe.each(BACKENDS)('central target tables on %s', (backend) => {
  const url = backendUrl(backend);
  const openDb = scratchPerTest(backend);

  async function central(): Promise<Database> {
    const db = await openDb('central');
    await registerSite(db, { siteId: SITE_ID, pipeline: 'lab', headerTable: HEADERS, detailTable: DETAILS });
    return db;
  }

  it.skipIf(reportSkip(`target-table healing on ${backend}`, url))(
    'a detail table left without its index by a crash gets it back at the next start',
    async () => {
      const db = await central();
      await expect(freshCentral(db).merge(delivered([{ orderId: 1 }, { orderId: 2 }], 1))).resolves.toMatchObject({
        status: 'applied',
      });
      expect(await indexNames(db, DETAILS)).toContain(DETAIL_INDEX);

      // The crash: the tables were created, their index was not.
      await dropIndex(db, DETAILS, DETAIL_INDEX);
      expect(await indexNames(db, DETAILS)).not.toContain(DETAIL_INDEX);

      await expect(
        freshCentral(db).merge(delivered([{ orderId: 1, value: 'B', resultIds: [100] }, { orderId: 3 }], 2)),
      ).resolves.toMatchObject({ status: 'applied' });
      expect(await indexNames(db, DETAILS)).toContain(DETAIL_INDEX);
      const rows = await db.query<{ n: unknown }>(
        `SELECT COUNT(*) AS n FROM ${db.dialect.quote(DETAILS)} WHERE id_efector = ?`,
        [SITE_ID],
      );
      expect(Number(rows[0]!.n)).toBe(5);
    },
  );

  it.skipIf(reportSkip(`target-table healing on ${backend}`, url))(
    'a start on tables that have their index changes nothing',
    async () => {
      const db = await central();
      await freshCentral(db).merge(delivered([{ orderId: 1 }], 1));
      const before = await indexNames(db, DETAILS);
      await freshCentral(db).merge(delivered([{ orderId: 2 }], 2));
      expect((await indexNames(db, DETAILS)).sort()).toEqual(before.sort());
    },
  );

  it.skipIf(reportSkip(`target-table healing on ${backend}`, url))(
    "a legacy table without the central's key is the operator's: it gets no index",
    async () => {
      const db = await central();
      const q = (s: string) => db.dialect.quote(s);
      const t = (n: number) => db.dialect.textType(n);
      await db.query(
        `CREATE TABLE ${q(DETAILS)} (id_efector INT NOT NULL, result_id INT NOT NULL, order_id INT NOT NULL, ` +
          `test_code ${t(10)}, value ${t(20)})`,
      );
      await expect(freshCentral(db).merge(delivered([{ orderId: 1 }], 1))).resolves.toMatchObject({
        status: 'applied',
      });
      expect(await indexNames(db, DETAILS)).not.toContain(DETAIL_INDEX);
    },
  );
});

describe('an index the central cannot add (no server needed)', () => {
  /** Tables as the central created them, without the detail index; CREATE INDEX fails with `error`. */
  function withoutIndex(error: Error): { db: Database; statements: string[] } {
    const statements: string[] = [];
    const table = (name: string, key: readonly string[], columns: ReadonlyArray<{ name: string }>): TableInfo => ({
      name,
      columns: [{ name: 'id_efector' }, ...columns].map((c) => ({
        name: c.name,
        type: 'integer',
        dbType: 'int',
        nullable: false,
        isPrimary: c.name === 'id_efector' || key.includes(c.name),
      })),
      primaryKey: ['id_efector', ...key],
      indexes: [],
    });
    const tables: Record<string, TableInfo> = {
      [HEADERS]: table(HEADERS, LAB_SHAPE.header.key, LAB_SHAPE.header.columns),
      [DETAILS]: table(DETAILS, LAB_SHAPE.detail!.key, LAB_SHAPE.detail!.columns),
    };
    const db = {
      dialect: dialectFor('postgres'),
      describeTable: (name: string) => Promise.resolve(tables[name]),
      // columns already as the site describes them: nothing to widen
      columnTypes: () => Promise.resolve(new Map()),
      query: (sql: string) => {
        // the catalogue's answer on collations: every key column compares exactly
        if (sql.includes('pg_collation')) return Promise.resolve([]);
        statements.push(sql);
        return Promise.reject(error);
      },
    } as unknown as Database;
    return { db, statements };
  }

  it('is reported, and the table takes its rows without it (the index makes the delete fast, not right)', async () => {
    const { db, statements } = withoutIndex(Object.assign(new Error('permission denied'), { code: '42501' }));
    const failed: Array<[string, string]> = [];
    const targets = new TargetTables(db, (table, index) => failed.push([table, index]));
    await expect(targets.ensure(HEADERS, DETAILS, LAB_SHAPE)).resolves.toBeUndefined();
    expect(statements).toEqual([expect.stringMatching(/^CREATE INDEX IF NOT EXISTS "IX_central_results_header"/)]);
    expect(failed).toEqual([[DETAILS, DETAIL_INDEX]]);
    expect(targets.keyedBy(DETAILS, LAB_SHAPE.detail!.key)).toBe(true);
  });

  it('is tried again with the next batch when the database was only unreachable', async () => {
    const { db, statements } = withoutIndex(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }));
    const targets = new TargetTables(db);
    await expect(targets.ensure(HEADERS, DETAILS, LAB_SHAPE)).rejects.toThrow(/connection reset/);
    await expect(targets.ensure(HEADERS, DETAILS, LAB_SHAPE)).rejects.toThrow(/connection reset/);
    expect(statements).toHaveLength(2);
  });
});
