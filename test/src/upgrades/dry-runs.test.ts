import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registerSite } from '@sitesync/central';
import { Database, type DialectName } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { snapshotDb, syncctlBundle, writeTree } from './bundle-support.js';
import { NO_BROKER, labSite, openBare, syncctl, textType, upgradeKinds, writeSiteConfig } from './upgrade-fixtures.js';

/**
 * Every mode that promises to change nothing (`bundle apply --dry-run`, `db check`) is run against
 * databases with and without sitesync's tables, and the full schema (every table, column, index and
 * sequence, the engine's own bookkeeping tables included) and every row are compared before and after.
 */

/** The catalogue of the database `db` works in, as rows of text, dialect by dialect. */
async function schemaOf(db: Database): Promise<unknown[]> {
  const q = (sql: string) => db.query<Record<string, unknown>>(sql);
  const dialect: DialectName = db.dialect.name;
  switch (dialect) {
    case 'sqlite':
      return q(`SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name`);
    case 'postgres':
      return [
        ...(await q(
          `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns ` +
            `WHERE table_schema = current_schema() ORDER BY table_name, column_name`,
        )),
        ...(await q(
          `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname`,
        )),
        ...(await q(
          `SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = current_schema() ORDER BY 1`,
        )),
      ];
    case 'mysql':
      return [
        ...(await q(
          `SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1`,
        )),
        ...(await q(
          `SELECT table_name, column_name, column_type, is_nullable, column_default, collation_name FROM information_schema.columns ` +
            `WHERE table_schema = DATABASE() ORDER BY table_name, column_name`,
        )),
        ...(await q(
          `SELECT table_name, index_name, column_name, seq_in_index FROM information_schema.statistics ` +
            `WHERE table_schema = DATABASE() ORDER BY table_name, index_name, seq_in_index`,
        )),
      ];
    case 'mssql':
      return [
        ...(await q(`SELECT name, type_desc FROM sys.objects WHERE is_ms_shipped = 0 ORDER BY name`)),
        ...(await q(
          `SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM INFORMATION_SCHEMA.COLUMNS ORDER BY 1, 2`,
        )),
      ];
  }
}

/** The schema and every row. */
async function everything(db: Database): Promise<{ schema: unknown[]; rows: Record<string, unknown[]> }> {
  return { schema: await schemaOf(db), rows: await snapshotDb(db) };
}

describe.each(upgradeKinds())('modes that change nothing (%s)', (kind: DbKind) => {
  let world: TestWorld;
  worldPerTest(NO_BROKER, (w) => (world = w));

  /** A bundle that creates a table, changes rows and imports some: applied for real, it would change all that. */
  function bundle(): string {
    return writeTree(join(world.dir, 'bundle'), {
      '001.sql': `CREATE TABLE ward (code ${textType(kind, 20)} NOT NULL PRIMARY KEY, beds INTEGER);\nUPDATE lab_orders SET notes = 'x';\n`,
      '002.imports/ward.json': JSON.stringify([{ code: 'W1', beds: 3 }]),
    });
  }

  it('on a database without sitesync tables: bundle apply --dry-run and db check write nothing, not even sitesync tables', async () => {
    const { url, db } = await labSite(world, kind, 'legacy');
    // An orphan detail, so the check has something to report.
    await db.execute(`DELETE FROM lab_orders WHERE order_id = ?`, [2]);
    const before = await everything(db);
    expect(before.rows).not.toHaveProperty('sitesync_site_migrations');

    const plan = await syncctlBundle(url, 'apply', '--dry-run', bundle());
    expect(plan.stderr).toBe('');
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("sitesync's site tables would be created or upgraded");
    expect(plan.stdout).toMatch(/001\.sql\s+sql/);
    expect(await everything(db)).toEqual(before);

    const site = await syncctl(['db', 'check', '--site-config', writeSiteConfig(world, url)]);
    expect(site.code).toBe(1);
    expect(site.stdout).toContain('orphan-details');
    expect(await everything(db)).toEqual(before);

    const central = await syncctl(['--db', url, 'db', 'check', '--role', 'central']);
    expect(central.code).toBe(0);
    expect(await everything(db)).toEqual(before);
  });

  it('on a central database in use: bundle apply --dry-run --role central and db check write nothing', async () => {
    const url = world.dbUrl(kind, 'central');
    await openBare(world, kind, url).then((d) => d.close());
    const db = await world.open(url, 'central');
    await registerSite(db, { siteId: 101, pipeline: 'lab', headerTable: 'central_orders', detailTable: null });
    await registerSite(db, { siteId: 102, pipeline: 'lab', headerTable: 'missing_orders', detailTable: null });
    await db.execute(`UPDATE ${db.dialect.quote('EstadoSyncGeneral')} SET last_version = 3 WHERE id_efector = 102`);
    const before = await everything(db);

    const checked = await syncctl(['--db', url, 'db', 'check', '--role', 'central', '--sites', '101,103']);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toContain('missing-site-row');
    expect(checked.stdout).toContain('missing_orders');
    expect(await everything(db)).toEqual(before);

    const plan = await syncctlBundle(
      url,
      'apply',
      '--role',
      'central',
      '--dry-run',
      writeTree(join(world.dir, 'central-bundle'), {
        '001.sql': `CREATE TABLE ward (code ${textType(kind, 20)} NOT NULL PRIMARY KEY);\n`,
      }),
    );
    expect(plan.stderr).toBe('');
    expect(plan.code).toBe(0);
    expect(plan.stdout).not.toContain('would be created');
    expect(await everything(db)).toEqual(before);
  });

  it('the database is opened so that a write would fail, not only so that none is made', async () => {
    if (kind === 'mssql') return; // SQL Server has no read-only session: see docs/upgrades.md
    const { url } = await labSite(world, kind, 'probe');
    const ro = await Database.open(url, { role: 'site', readOnly: true });
    try {
      await expect(ro.execute(`UPDATE lab_orders SET notes = 'x'`)).rejects.toThrow(/read-?only|READ ONLY/i);
      await expect(ro.query(`CREATE TABLE probe (n INTEGER)`)).rejects.toThrow(/read-?only|READ ONLY/i);
      await expect(ro.migrate()).rejects.toThrow(/opened read-only/);
      expect((await ro.pendingMigrations()).length).toBeGreaterThan(0);
    } finally {
      await ro.close();
    }
  });
});
