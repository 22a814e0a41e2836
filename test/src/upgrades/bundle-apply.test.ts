import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, mssqlUrl, mysqlUrl, postgresUrl } from '../support/services.js';
import { journalLines, snapshotDb, snapshotDir, syncctlBundle, writeTree, writeZip } from './bundle-support.js';

const kinds: DbKind[] = [
  'sqlite',
  ...(postgresUrl() ? (['postgres'] as const) : []),
  ...(mysqlUrl() ? (['mysql'] as const) : []),
  ...(mssqlUrl() ? (['mssql'] as const) : []),
];
if (!mssqlUrl()) console.log('[sitesync tests] bundle apply: no SQL Server (needs Docker): its run is skipped');

/** Tables the site has before any bundle: `ward` holds one row the bundles must not overwrite. */
async function prepareSite(world: TestWorld, kind: DbKind, name: string): Promise<{ url: string; db: Database }> {
  const url = world.dbUrl(kind, name);
  const db = await world.open(url, 'site');
  await db.query(`CREATE TABLE ward (code VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(80) NOT NULL, beds INTEGER)`);
  await db.execute(`INSERT INTO ward (code, name, beds) VALUES (?, ?, ?)`, ['W1', 'Old name', 10]);
  return { url, db };
}

/**
 * Files and folders mixed, numbered 001..008 then `9.sql` and `10.sql` (by name "10" sorts before
 * "9": only numeric order works). Each SQL entry depends on what an earlier entry did.
 */
const ORDERED_BUNDLE: Record<string, string> = {
  '001.sql':
    'CREATE TABLE lab_code (code VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(80) NOT NULL, active INTEGER);\n' +
    '-- a comment; with a semicolon\n' +
    'CREATE TABLE lab_code_audit (code VARCHAR(20) NOT NULL PRIMARY KEY, note VARCHAR(80));\n',
  '002.imports/lab_code.csv': 'code,name,active\nHB,Hemoglobin,1\nGL,"Glucose, fasting",\nK,"Potassium ""K""",1\n',
  '002.imports/ward.json': JSON.stringify([
    { code: 'W1', name: 'New name', beds: 99 },
    { code: 'W2', name: 'Pediatrics', beds: null },
  ]),
  '003.files/pipelines/lab.json': '{"name": "lab"}\n',
  '004.sql': "INSERT INTO lab_code_audit (code, note) SELECT code, name FROM lab_code WHERE code <> 'K';\n",
  '005.imports/lab_code.json': JSON.stringify([
    { code: 'HB', name: 'Overwritten?', active: 0 },
    { code: 'NA', name: 'Sodium', active: true },
  ]),
  '006.sql': "UPDATE lab_code SET active = 0 WHERE active IS NULL;\nUPDATE ward SET beds = 5 WHERE code = 'W2';\n",
  '007.imports/lab_code_audit.csv': 'code,note\nNA,from import\nHB,not overwritten\n',
  '008.files/site.json': '{"siteId": 301}\n',
  '9.sql': 'CREATE TABLE late (n INTEGER NOT NULL PRIMARY KEY);\n',
  '10.sql': 'INSERT INTO late (n) SELECT COUNT(*) FROM lab_code;\n',
};

describe.each(kinds)('syncctl bundle apply (site on %s)', (kind) => {
  let world: TestWorld;
  worldPerTest(amqpUrl(), (w) => (world = w));

  it('runs mixed file and folder entries in numeric order, and imports add missing rows without overwriting', async () => {
    const { url, db } = await prepareSite(world, kind, 'site');
    const bundle = writeTree(join(world.dir, 'bundle'), ORDERED_BUNDLE);
    const configDir = join(world.dir, 'config');

    const r = await syncctlBundle(url, 'apply', '--config-dir', configDir, bundle);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    expect(await journalLines(db)).toEqual([
      '001.sql ok',
      '002.imports ok',
      '003.files ok',
      '004.sql ok',
      '005.imports ok',
      '006.sql ok',
      '007.imports ok',
      '008.files ok',
      '9.sql ok',
      '10.sql ok',
    ]);
    // Each imported table in its own transaction, journaled after its entry started.
    expect((await journalLines(db, true)).filter((l) => l.includes('.imports'))).toEqual([
      '002.imports ok',
      '002.imports lab_code.csv ok',
      '002.imports ward.json ok',
      '005.imports ok',
      '005.imports lab_code.json ok',
      '007.imports ok',
      '007.imports lab_code_audit.csv ok',
    ]);
    const codes = await db.query<{ code: string; name: string; active: unknown }>(
      `SELECT code, name, active FROM lab_code ORDER BY code`,
    );
    expect(codes.map((c) => [c.code, c.name, Number(c.active)])).toEqual([
      ['GL', 'Glucose, fasting', 0], // NULL from the CSV's empty field, then 006.sql
      ['HB', 'Hemoglobin', 1], // 005's row with the same key did not overwrite it
      ['K', 'Potassium "K"', 1],
      ['NA', 'Sodium', 1], // 005 added the missing row
    ]);
    // 004 ran after 002 (it copied what 002 imported) and before 005 (no NA yet); 007 added only NA.
    const audit = await db.query<{ code: string; note: string }>(`SELECT code, note FROM lab_code_audit ORDER BY code`);
    expect(audit.map((a) => [a.code, a.note])).toEqual([
      ['GL', 'Glucose, fasting'],
      ['HB', 'Hemoglobin'],
      ['NA', 'from import'],
    ]);
    const wards = await db.query<{ code: string; name: string; beds: unknown }>(
      `SELECT code, name, beds FROM ward ORDER BY code`,
    );
    expect(wards.map((w) => [w.code, w.name, Number(w.beds)])).toEqual([
      ['W1', 'Old name', 10], // existed before the bundle: untouched
      ['W2', 'Pediatrics', 5],
    ]);
    // 10.sql ran after 9.sql created the table, and after every import into lab_code.
    expect((await db.query<{ n: unknown }>(`SELECT n FROM late`)).map((x) => Number(x.n))).toEqual([4]);
    expect(snapshotDir(configDir)).toEqual({
      'pipelines/lab.json': '{"name": "lab"}\n',
      'site.json': '{"siteId": 301}\n',
    });

    // The same bundle again: every entry is in the journal, nothing runs twice.
    const before = await snapshotDb(db, 'omit');
    const again = await syncctlBundle(url, 'apply', '--config-dir', configDir, bundle);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('0 entries run, 10 skipped');
    expect(await snapshotDb(db, 'omit')).toEqual(before);
  });

  it('refuses each broken bundle with its reason before anything changed', async () => {
    const { url, db } = await prepareSite(world, kind, 'site');
    const configDir = join(world.dir, 'config');
    writeTree(configDir, { 'site.json': '{"before": true}\n' });
    const base = {
      '001.sql': 'DELETE FROM ward;\n',
      '002.imports/ward.csv': 'code,name,beds\nW3,Surgery,4\n',
      '003.files/site.json': '{"after": true}\n',
    };
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['unknown entry kind', { ...base, '004.data/x.json': '[]' }, /004\.data: unknown entry kind "\.data"/],
      ['a gap in the numbering', { ...base, '005.sql': 'SELECT 1;' }, /numbering has a gap: no entry 004/],
      [
        'a number used twice',
        { ...base, '002.sql': 'SELECT 1;' },
        /002\.imports, 002\.sql: number 2 is used by 2 entries/,
      ],
      [
        'an import for an unknown table',
        { ...base, '002.imports/wards.csv': 'code\nX\n' },
        /002\.imports\/wards\.csv: imports for unknown table wards/,
      ],
      [
        'an import with an unknown column',
        { ...base, '002.imports/ward.csv': 'code,name,floor\nW3,Surgery,2\n' },
        /unknown column floor in table ward/,
      ],
      [
        'a value that does not fit its column',
        { ...base, '002.imports/ward.csv': 'code,name,beds\nW3,Surgery,many\n' },
        /row 1, column beds: "many" is not an integer/,
      ],
      [
        'a definition change of a table that holds data, even after a DELETE in the same bundle',
        { ...base, '004.sql': 'ALTER TABLE ward ADD COLUMN floor INTEGER;\n' },
        /004\.sql statement 1 \(line 1\): ALTER TABLE ward changes the definition of a table that holds 1 row: split it into two bundles/,
      ],
      [
        'a DROP of a table that holds data',
        { ...base, '004.sql': 'SELECT 1;\nDROP TABLE ward;\n' },
        /004\.sql statement 2 \(line 2\): DROP TABLE ward .* holds 1 row/,
      ],
      [
        'transaction control in a script',
        { ...base, '004.sql': 'COMMIT;\n' },
        /004\.sql statement 1 \(line 1\): COMMIT: each SQL entry runs in its own transaction/,
      ],
      ['an unterminated string', { ...base, '004.sql': "SELECT 'oops;\n" }, /004\.sql: line 1: unterminated/],
    ];
    const dbBefore = await snapshotDb(db);
    const dirBefore = snapshotDir(configDir);
    for (const [i, [what, files, reason]] of cases.entries()) {
      const bundle = writeTree(join(world.dir, `bundle${i}`), files);
      const r = await syncctlBundle(url, 'apply', '--config-dir', configDir, bundle);
      expect(r.code, what).toBe(1);
      expect(r.stderr, what).toMatch(/refused, nothing was changed/);
      expect(r.stderr, what).toMatch(reason);
      expect(await snapshotDb(db), what).toEqual(dbBefore);
      expect(snapshotDir(configDir), what).toEqual(dirBefore);
    }

    // Paths that escape: a zip entry that climbs out (zip slip), and a folder's link out of the config folder.
    const slip = writeZip(join(world.dir, 'slip.zip'), { ...base, '003.files/../../outside.txt': 'x' });
    const r = await syncctlBundle(url, 'apply', '--config-dir', configDir, slip);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unsafe path in the zip \(goes up with \.\.\)/);
    mkdirSync(join(world.dir, 'elsewhere'));
    symlinkSync(join(world.dir, 'elsewhere'), join(configDir, 'link'));
    const dirWithLink = snapshotDir(configDir);
    const linked = writeTree(join(world.dir, 'linked'), { ...base, '003.files/link/x.txt': 'x' });
    const l = await syncctlBundle(url, 'apply', '--config-dir', configDir, linked);
    expect(l.code).toBe(1);
    expect(l.stderr).toMatch(/003\.files\/link\/x\.txt: would be written outside the config folder/);
    expect(await snapshotDb(db)).toEqual(dbBefore);
    expect(snapshotDir(configDir)).toEqual(dirWithLink);
    expect(snapshotDir(join(world.dir, 'elsewhere'))).toEqual({});
  });

  it('resumes an interrupted apply at the failed entry and ends identical to an uninterrupted one', async () => {
    const bundleFiles = {
      '001.sql': 'CREATE TABLE lab_code (code VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(80) NOT NULL);\n',
      '002.imports/lab_code.csv': 'code,name\nHB,Hemoglobin\nGL,Glucose\n',
      '003.sql':
        "INSERT INTO lab_code (code, name) VALUES ('NA', 'Sodium');\nINSERT INTO ward (code, name) VALUES ('W9', 'From the bundle');\n",
      '004.imports/ward.json': JSON.stringify([{ code: 'W5', name: 'Imported', beds: 2 }]),
      '005.files/site.json': '{"siteId": 301}\n',
    };
    const bundle = writeTree(join(world.dir, 'bundle'), bundleFiles);
    const interrupted = await prepareSite(world, kind, 'interrupted');
    const straight = await prepareSite(world, kind, 'straight');
    // What makes 003 fail: a row with the key it inserts (the operator removes it, then re-runs).
    await interrupted.db.execute(`INSERT INTO ward (code, name) VALUES (?, ?)`, ['W9', 'In the way']);

    const cfgA = join(world.dir, 'configA');
    const failed = await syncctlBundle(interrupted.url, 'apply', '--config-dir', cfgA, bundle);
    expect(failed.code).toBe(1);
    // MySQL commits DDL at once, so there a script is journaled (and resumed) statement by statement.
    const perStatement = kind === 'mysql';
    expect(failed.stderr).toMatch(
      perStatement
        ? /003\.sql statement 2 \(line 2\) failed: .*The statements before it in 003\.sql took effect/s
        : /003\.sql statement 2 \(line 2\) failed: .*Nothing of 003\.sql was applied \(rolled back\)/s,
    );
    expect(failed.stderr).toContain('run the same bundle again: it resumes at 003.sql');
    const codes = await interrupted.db.query<{ code: string }>(`SELECT code FROM lab_code ORDER BY code`);
    // 001, 002 applied; 003's first insert rolled back (kept on MySQL, and not run again on resume)
    expect(codes.map((c) => c.code)).toEqual(perStatement ? ['GL', 'HB', 'NA'] : ['GL', 'HB']);
    expect(snapshotDir(cfgA)).toEqual({});
    expect(await journalLines(interrupted.db)).toEqual(['001.sql ok', '002.imports ok', '003.sql failed']);

    await interrupted.db.execute(`DELETE FROM ward WHERE code = ?`, ['W9']);
    const resumed = await syncctlBundle(interrupted.url, 'apply', '--config-dir', cfgA, bundle);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    // 001.sql (a CREATE TABLE that would fail if run twice) is skipped.
    expect(resumed.stdout).toContain('001.sql: skipped');
    expect(resumed.stdout).toContain('3 entries run, 2 skipped');

    const cfgB = join(world.dir, 'configB');
    const once = await syncctlBundle(straight.url, 'apply', '--config-dir', cfgB, bundle);
    expect(once.code).toBe(0);
    expect(await snapshotDb(interrupted.db, 'omit')).toEqual(await snapshotDb(straight.db, 'omit'));
    expect(snapshotDir(cfgA)).toEqual(snapshotDir(cfgB));
  });

  it('--dry-run prints the plan (rows to add per table, files to copy) and changes nothing', async () => {
    const { url, db } = await prepareSite(world, kind, 'site');
    const configDir = join(world.dir, 'config');
    writeTree(configDir, { 'site.json': '{"siteId": 1}\n' });
    const bundle = writeTree(join(world.dir, 'bundle'), {
      '001.sql': "UPDATE ward SET beds = 11 WHERE code = 'W1';\n",
      '002.imports/ward.json': JSON.stringify([
        { code: 'W1', name: 'Old name' },
        { code: 'W2', name: 'New' },
        { code: 'W3', name: 'New too' },
      ]),
      '003.files/site.json': '{"siteId": 2}\n',
      '003.files/pipelines/lab.json': '{}\n',
    });
    const dbBefore = await snapshotDb(db);
    const r = await syncctlBundle(url, 'apply', '--dry-run', '--config-dir', configDir, bundle);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/001\.sql\s+sql\s+1 statement; changes rows of ward/);
    expect(r.stdout).toMatch(
      /002\.imports\s+imports\s+ward: 3 rows in ward\.json, missing ones added \(an earlier entry changes the table first\)/,
    );
    expect(r.stdout).toMatch(/003\.files\s+files\s+pipelines\/lab\.json \(new\), site\.json \(replaces\)/);
    expect(await snapshotDb(db)).toEqual(dbBefore);
    expect(snapshotDir(configDir)).toEqual({ 'site.json': '{"siteId": 1}\n' });

    // Without the UPDATE first, the rows to add are counted against the table as it is.
    const imports = writeTree(join(world.dir, 'imports'), {
      '001.imports/ward.json': JSON.stringify([
        { code: 'W1', name: 'Old name' },
        { code: 'W2', name: 'New' },
      ]),
    });
    const counted = await syncctlBundle(url, 'apply', '--dry-run', imports);
    expect(counted.stdout).toMatch(/ward: 2 rows in ward\.json, 1 to add/);
    expect(await snapshotDb(db)).toEqual(dbBefore);
  });

  it('gives the same result from a zip (with or without a wrapper folder) as from the folder', async () => {
    const folder = writeTree(join(world.dir, 'bundle'), ORDERED_BUNDLE);
    const zip = writeZip(join(world.dir, 'bundle.zip'), ORDERED_BUNDLE);
    const wrapped = writeZip(join(world.dir, 'wrapped.zip'), ORDERED_BUNDLE, 'Replica_de_ambiente/');
    const results = [];
    for (const [i, source] of [folder, zip, wrapped].entries()) {
      const { url, db } = await prepareSite(world, kind, `site${i}`);
      const configDir = join(world.dir, `config${i}`);
      const r = await syncctlBundle(url, 'apply', '--config-dir', configDir, source);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // 'outcome' keeps the journal's bundle checksum: the three are one bundle to the journal.
      results.push({ db: await snapshotDb(db, 'outcome'), config: snapshotDir(configDir) });
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });
});

describe('syncctl bundle apply: bad invocations', () => {
  let world: TestWorld;
  worldPerTest(amqpUrl(), (w) => (world = w));

  it('names a missing bundle, and a bundle that is neither a folder nor a zip', async () => {
    const url = world.dbUrl('sqlite', 'site');
    const missing = await syncctlBundle(url, 'apply', join(world.dir, 'nope'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope refused.*cannot read it/s);
    const file = join(world.dir, 'bundle.tar');
    writeFileSync(file, 'x');
    const wrong = await syncctlBundle(url, 'apply', file);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('a bundle is a folder or a .zip file');
  });
});
