import { describe, expect, it } from 'vitest';
import { installChangeTracking, OperationJournal, resolvePipeline, type Database } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { labPipeline } from '../support/lab-data.js';
import {
  NO_BROKER,
  openBare,
  labSite,
  syncctl,
  textType,
  upgradeKinds,
  writeScripts,
  writeSiteConfig,
} from './upgrade-fixtures.js';
import { readCustomisations, UPGRADE_STEPS } from '@sitesync/syncctl';

/** A release's scripts: a new reference table of wards filled from the orders, plus small data fixes. */
function releaseScripts(kind: DbKind): Record<string, Record<string, string>> {
  return {
    pre: { '010-note.sql': `UPDATE lab_orders SET internal_note = 'before the upgrade' WHERE order_id = 2;` },
    schema: { '010-wards.sql': `CREATE TABLE lab_wards (ward ${textType(kind, 40)} NOT NULL PRIMARY KEY);` },
    post: {
      '010-flags.sql': `UPDATE lab_results SET flag = 'N' WHERE flag = '';`,
      // Two statements: the first must not stay behind when the second fails.
      '020-wards.sql':
        `INSERT INTO lab_wards (ward) VALUES ('Admision');\n` +
        `INSERT INTO lab_wards (ward) SELECT DISTINCT ward FROM lab_orders;\n`,
    },
    final: { '010-final.sql': `UPDATE lab_orders SET status = 'UPGRADED' WHERE order_id = 1;` },
  };
}

/** Schema, data and sitesync's migrations of a site database, for comparing two of them. */
async function snapshot(db: Database): Promise<Record<string, unknown>> {
  const tables = (await db.tableNames())
    .filter((t) => !t.includes('.') && !['sync_journal', 'sync_customisation'].includes(t))
    .sort();
  const schema: Record<string, unknown> = {};
  for (const t of tables) {
    const info = (await db.describeTable(t))!;
    schema[t] = { columns: info.columns.map((c) => [c.name, c.type, c.nullable]), primaryKey: info.primaryKey };
  }
  const objects = (await readCustomisations(db, tables)).map((c) => `${c.kind} ${c.table}.${c.name}`);
  const data: Record<string, unknown> = {};
  for (const [t, key] of [
    ['lab_orders', 'order_id'],
    ['lab_results', 'result_id'],
    ['lab_wards', 'ward'],
  ] as const) {
    data[t] = await db.query(`SELECT * FROM ${db.dialect.quote(t)} ORDER BY ${db.dialect.quote(key)}`);
  }
  const migrations = await db.query(`SELECT name FROM sitesync_site_migrations ORDER BY name`);
  return { tables, schema, objects, data, migrations };
}

/** How each step and script of the last upgrade ended (the last attempt of each), with its checksum. */
async function journalResults(db: Database): Promise<string[]> {
  const run = await (await OperationJournal.open(db, 'upgrade')).lastRun();
  const latest = new Map<string, string>();
  for (const e of run?.entries ?? []) latest.set(`${e.step} | ${e.item}`, `${e.result} ${e.checksum ?? ''}`.trim());
  return [...latest.entries()].map(([k, v]) => `${k}: ${v}`);
}

describe.each(upgradeKinds())('syncctl db upgrade on a site database (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(NO_BROKER, (w) => (world = w));

  async function site(
    name: string,
  ): Promise<{ db: Database; upgrade: (...more: string[]) => ReturnType<typeof syncctl> }> {
    const { url, db } = await labSite(world, kind, name);
    const config = writeSiteConfig(world, url, {}, `${name}.json`);
    const scripts = writeScripts(world, `release-${name}`, releaseScripts(kind));
    return {
      db,
      upgrade: (...more) => syncctl(['db', 'upgrade', '--site-config', config, '--scripts', scripts, ...more]),
    };
  }

  it('stops at a failing post-script, resumes with --continue after the fix, and ends as an upgrade that never failed', async () => {
    const clean = await site('clean');
    const ok = await clean.upgrade();
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/upgrade [0-9a-f-]+ completed/);

    const broken = await site('broken');
    const [seven] = await broken.db.query<{ ward: string }>(`SELECT ward FROM lab_orders WHERE order_id = 7`);
    const ward = seven!.ward;
    // A problem the pre-checks cannot know about: lab_wards.ward will be NOT NULL.
    await broken.db.execute(`UPDATE lab_orders SET ward = NULL WHERE order_id = 7`);
    const failed = await broken.upgrade();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('stopped at step post-scripts, post/020-wards.sql');
    expect(failed.stderr).toMatch(/post\/020-wards\.sql line 2: .*(null|NULL)/);
    expect(failed.stderr).toContain('syncctl db upgrade --continue');
    const journal = await journalResults(broken.db);
    expect(journal.find((l) => l.startsWith('post-scripts | post/020-wards.sql'))).toMatch(/: failed [0-9a-f]{64}$/);
    expect(journal).toContain('post-scripts | : failed');
    // The failed script left nothing behind; the one before it stays applied.
    expect(await broken.db.query(`SELECT ward FROM lab_wards`)).toEqual([]);
    expect(await broken.db.query(`SELECT result_id FROM lab_results WHERE flag = ''`)).toEqual([]);

    const again = await broken.upgrade();
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/failed at step post-scripts, post\/020-wards\.sql: .*--continue/);

    await broken.db.execute(`UPDATE lab_orders SET ward = ? WHERE order_id = 7`, [ward]);
    const resumed = await broken.upgrade('--continue');
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain('post/010-flags.sql: already applied');
    expect(resumed.stdout).not.toContain('step pre-scripts');
    expect(resumed.stdout).toMatch(/completed/);

    expect(await snapshot(broken.db)).toEqual(await snapshot(clean.db));
    expect(await journalResults(broken.db)).toEqual(await journalResults(clean.db));

    const nothing = await broken.upgrade('--continue');
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('nothing to continue');
  });

  it('--step runs one step at a time and says which comes next; a second upgrade then does nothing', async () => {
    const s = await site('stepped');
    const seen: string[] = [];
    for (const [i, step] of UPGRADE_STEPS.entries()) {
      const r = await s.upgrade('--step');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`step ${step}\n`);
      const next = UPGRADE_STEPS[i + 1];
      if (next) expect(r.stdout).toContain(`next step: ${next}`);
      else expect(r.stdout).toMatch(/completed/);
      const entries = (await (await OperationJournal.open(s.db, 'upgrade')).lastRun())!.entries;
      seen.push(...entries.filter((e) => e.item === '' && !seen.includes(e.step)).map((e) => e.step));
      expect(seen).toEqual(UPGRADE_STEPS.slice(0, i + 1));
      expect(entries.every((e) => e.result === 'ok')).toBe(true);
    }
    const journal = await OperationJournal.open(s.db, 'upgrade');
    const before = (await journal.entries()).length;
    const before2 = await snapshot(s.db);
    const second = await s.upgrade();
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('already up to date');
    expect((await journal.entries()).length).toBe(before);
    expect(await snapshot(s.db)).toEqual(before2);
  });

  it("creates sitesync's tables on a site without a config yet (a DBA before the first start), then has nothing to do", async () => {
    const { url, db } = await labSite(world, kind, 'bare');
    const first = await syncctl(['--db', url, 'db', 'upgrade', '--role', 'site']);
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('no --site-config: the pipelines and hooks are not checked');
    expect(first.stdout).toMatch(/applied SiteInit1732500000000, SiteInterventions1732600000000\b/);
    expect(await db.describeTable('LAB_SyncStatus')).toBeDefined();
    const second = await syncctl(['--db', url, 'db', 'upgrade', '--role', 'site']);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('already up to date');
  });

  it('keeps the custom index and trigger a rebuilt table lost, and reports the index that no longer applies', async () => {
    const { url, db } = await labSite(world, kind, 'custom');
    await db.migrate();
    const q = (n: string) => db.dialect.quote(n);
    await db.query(`CREATE TABLE lab_audit (order_id INTEGER, status ${textType(kind, 20)})`);
    await db.query(`CREATE INDEX ix_orders_ward ON lab_orders (ward)`);
    await db.query(`CREATE INDEX ix_orders_note ON lab_orders (internal_note)`);
    for (const sql of AUDIT_TRIGGER[kind]) await db.query(sql);
    // sitesync's own change-tracking triggers are not the site's customisations.
    await installChangeTracking(db, await resolvePipeline(db, labPipeline()));
    const config = writeSiteConfig(world, url);
    const scripts = writeScripts(world, 'rebuild', { schema: { '010-rebuild.sql': REBUILD_ORDERS[kind] } });

    const r = await syncctl(['db', 'upgrade', '--site-config', config, '--scripts', scripts]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /recorded 4 customisation\(s\): ix_orders_note, ix_orders_ward, ix_lab_results_order, trg_orders_audit/,
    );
    expect(r.stdout).toContain('index ix_orders_ward on lab_orders: restored');
    expect(r.stdout).toContain('trigger trg_orders_audit on lab_orders: restored');
    expect(r.stdout).toMatch(/customisation no longer applies: index ix_orders_note on lab_orders: .*internal_note/);

    const now = (await readCustomisations(db, ['lab_orders', 'lab_results'])).map((c) => `${c.kind} ${c.name}`);
    expect(now).toEqual(['index ix_orders_ward', 'index ix_lab_results_order', 'trigger trg_orders_audit']);
    // The restored trigger works.
    await db.execute(`UPDATE ${q('lab_orders')} SET status = ? WHERE order_id = ?`, ['CHECKED', 3]);
    expect(await db.query(`SELECT order_id, status FROM lab_audit`)).toEqual([{ order_id: 3, status: 'CHECKED' }]);
  });

  it.skipIf(kind !== 'postgres')(
    'keeps two triggers of one name on two tables (PostgreSQL names triggers per table)',
    async () => {
      const { url, db } = await labSite(world, kind, 'samename', { migrated: true });
      await db.query(`CREATE FUNCTION lab_touch_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`);
      for (const t of ['lab_orders', 'lab_results'])
        await db.query(`CREATE TRIGGER trg_touch BEFORE UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION lab_touch_fn()`);
      const config = writeSiteConfig(world, url);
      const scripts = writeScripts(world, 'noop', { post: { '010-noop.sql': 'SELECT 1;' } });

      const r = await syncctl(['db', 'upgrade', '--site-config', config, '--scripts', scripts]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/recorded 3 customisation\(s\): ix_lab_results_order, trg_touch, trg_touch/);
    },
  );
});

/** An audit trigger a site added on its orders table. */
const AUDIT_TRIGGER: Record<DbKind, string[]> = {
  sqlite: [
    `CREATE TRIGGER trg_orders_audit AFTER UPDATE ON lab_orders BEGIN INSERT INTO lab_audit (order_id, status) VALUES (NEW.order_id, NEW.status); END`,
  ],
  postgres: [
    `CREATE FUNCTION lab_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO lab_audit (order_id, status) VALUES (NEW.order_id, NEW.status); RETURN NULL; END $$`,
    `CREATE TRIGGER trg_orders_audit AFTER UPDATE ON lab_orders FOR EACH ROW EXECUTE FUNCTION lab_audit_fn()`,
  ],
  mysql: [
    `CREATE TRIGGER trg_orders_audit AFTER UPDATE ON lab_orders FOR EACH ROW INSERT INTO lab_audit (order_id, status) VALUES (NEW.order_id, NEW.status)`,
  ],
  mssql: [
    `CREATE TRIGGER trg_orders_audit ON lab_orders AFTER UPDATE AS BEGIN SET NOCOUNT ON; INSERT INTO lab_audit (order_id, status) SELECT order_id, status FROM inserted; END`,
  ],
};

const KEPT_ORDER_COLUMNS = 'order_id, patient_id, patient_name, ordered_at, ward, priority, status, physician, notes';

/** A release that rebuilds lab_orders without `internal_note`: the table's indexes and triggers go with it. */
const REBUILD_ORDERS: Record<DbKind, string> = {
  sqlite:
    `CREATE TABLE lab_orders_new (order_id INTEGER NOT NULL PRIMARY KEY, patient_id TEXT NOT NULL, patient_name TEXT, ` +
    `ordered_at TEXT, ward TEXT, priority TEXT, status TEXT, physician TEXT, notes TEXT);\n` +
    `INSERT INTO lab_orders_new SELECT ${KEPT_ORDER_COLUMNS} FROM lab_orders;\n` +
    `DROP TABLE lab_orders;\n` +
    `ALTER TABLE lab_orders_new RENAME TO lab_orders;\n`,
  postgres:
    `CREATE TABLE lab_orders_new AS SELECT ${KEPT_ORDER_COLUMNS} FROM lab_orders;\n` +
    `DROP TABLE lab_orders;\n` +
    `ALTER TABLE lab_orders_new RENAME TO lab_orders;\n` +
    `ALTER TABLE lab_orders ADD PRIMARY KEY (order_id);\n`,
  mysql:
    `CREATE TABLE lab_orders_new AS SELECT ${KEPT_ORDER_COLUMNS} FROM lab_orders;\n` +
    `DROP TABLE lab_orders;\n` +
    `ALTER TABLE lab_orders_new RENAME TO lab_orders;\n` +
    `ALTER TABLE lab_orders ADD PRIMARY KEY (order_id);\n`,
  mssql:
    `SELECT ${KEPT_ORDER_COLUMNS} INTO lab_orders_new FROM lab_orders;\nDROP TABLE lab_orders;\n` +
    `EXEC sp_rename 'lab_orders_new', 'lab_orders';\nGO\n` +
    `ALTER TABLE lab_orders ALTER COLUMN order_id INT NOT NULL;\nGO\nALTER TABLE lab_orders ADD PRIMARY KEY (order_id);\nGO\n`,
};

describe.each(upgradeKinds())('syncctl db upgrade on the central database (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(NO_BROKER, (w) => (world = w));

  it('applies the central migrations and the release scripts, then has nothing to do', async () => {
    const url = world.dbUrl(kind, 'central');
    const db = await openBare(world, kind, url);
    const scripts = writeScripts(world, 'central-release', {
      post: { '010-note.sql': `DELETE FROM sync_inbox WHERE processed_at IS NULL;` },
    });
    const upgrade = () => syncctl(['--db', url, 'db', 'upgrade', '--role', 'central', '--scripts', scripts]);
    const first = await upgrade();
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/applied CentralInit1732500000000, CentralInterventions1732600000000\b/);
    expect(first.stdout).toContain('post/010-note.sql: ok');
    expect(await db.describeTable('EstadoSyncGeneral')).toBeDefined();
    const second = await upgrade();
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('already up to date');
  });
});
