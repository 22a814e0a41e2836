import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JOURNAL_TABLE, OperationJournal, type Database } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { localDbKinds } from '../support/services.js';
import { journalLines, syncctlBundle, writeTree } from './bundle-support.js';
import { labSite, NO_BROKER, syncctl, writeScripts, writeSiteConfig } from './upgrade-fixtures.js';

const kinds: DbKind[] = localDbKinds();

/**
 * A trigger that makes recording `ok` for one journal item fail, as a crash right after the work
 * would: the work and its record must then roll back together. Returns a function that removes it.
 */
async function failJournalOk(db: Database, step: string, item: string): Promise<() => Promise<void>> {
  const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
  const when = `NEW.result = 'ok' AND NEW.step = ${lit(step)} AND NEW.item = ${lit(item)}`;
  switch (db.dialect.name) {
    case 'sqlite':
      await db.query(
        `CREATE TRIGGER journal_down BEFORE UPDATE ON ${JOURNAL_TABLE} WHEN ${when} ` +
          `BEGIN SELECT RAISE(ABORT, 'journal unavailable'); END`,
      );
      return async () => void (await db.query(`DROP TRIGGER journal_down`));
    case 'postgres':
      await db.query(
        `CREATE FUNCTION journal_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
          `IF ${when} THEN RAISE EXCEPTION 'journal unavailable'; END IF; RETURN NEW; END $$`,
      );
      await db.query(
        `CREATE TRIGGER journal_down BEFORE UPDATE ON ${JOURNAL_TABLE} FOR EACH ROW EXECUTE FUNCTION journal_down()`,
      );
      return async () => void (await db.query(`DROP FUNCTION journal_down() CASCADE`));
    default:
      await db.query(
        `CREATE TRIGGER journal_down BEFORE UPDATE ON ${JOURNAL_TABLE} FOR EACH ROW BEGIN ` +
          `IF ${when} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'journal unavailable'; END IF; END`,
      );
      return async () => void (await db.query(`DROP TRIGGER journal_down`));
  }
}

async function count(db: Database, table: string): Promise<number> {
  const [row] = await db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${db.dialect.quote(table)}`);
  return Number(row!.n);
}

describe.each(kinds)('work and its journal record commit together (%s)', (kind) => {
  let world: TestWorld;
  worldPerTest(NO_BROKER, (w) => (world = w));

  it('an entry finished inside the work transaction rolls back with the work, and commits with it', async () => {
    const db = await world.open(world.dbUrl(kind, 'journal'), 'site');
    await db.query(`CREATE TABLE work_done (n INTEGER)`);
    const journal = await OperationJournal.open(db, 'upgrade');

    const failed = await journal.begin('run', 'post-scripts', 'a.sql');
    await expect(
      db.transaction(async (tx) => {
        await tx.execute(`INSERT INTO work_done (n) VALUES (1)`);
        await journal.finish(failed, 'ok', undefined, tx);
        throw new Error('the work failed after its record');
      }),
    ).rejects.toThrow('the work failed');
    expect(await count(db, 'work_done')).toBe(0);
    expect((await journal.entries('run')).map((e) => e.result)).toEqual(['running']);

    const done = await journal.begin('run', 'post-scripts', 'b.sql');
    await db.transaction(async (tx) => {
      await tx.execute(`INSERT INTO work_done (n) VALUES (2)`);
      await journal.finish(done, 'ok', undefined, tx);
    });
    expect(await count(db, 'work_done')).toBe(1);
    expect(await journal.succeeded('post-scripts', 'b.sql')).toBe(true);
  });

  it('db upgrade: a script whose ok cannot be recorded leaves nothing behind, and runs once on --continue', async () => {
    const { url, db } = await labSite(world, kind, 'upgrade');
    const config = writeSiteConfig(world, url);
    const scripts = writeScripts(world, 'release', {
      schema: { '010-log.sql': `CREATE TABLE upgrade_log (n INTEGER);` },
      post: { '010-mark.sql': `INSERT INTO upgrade_log (n) VALUES (1);` },
    });
    await OperationJournal.open(db, 'upgrade');
    const restore = await failJournalOk(db, 'post-scripts', 'post/010-mark.sql');
    const upgrade = (...more: string[]) =>
      syncctl(['db', 'upgrade', '--site-config', config, '--scripts', scripts, ...more]);

    const failed = await upgrade();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/post\/010-mark\.sql recording it in sync_journal .*journal unavailable/);
    expect(await count(db, 'upgrade_log')).toBe(0);

    await restore();
    const resumed = await upgrade('--continue');
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(await count(db, 'upgrade_log')).toBe(1);
  });

  it('bundle apply: an SQL entry or an imported table whose ok cannot be recorded leaves nothing behind', async () => {
    const url = world.dbUrl(kind, 'bundle');
    const db = await world.open(url, 'site');
    await db.query(`CREATE TABLE visit (n INTEGER)`);
    await db.query(`CREATE TABLE ward (code VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(80))`);
    const bundle = writeTree(join(world.dir, 'bundle'), {
      '001.sql': 'INSERT INTO visit (n) VALUES (1);\n',
      '002.imports/ward.csv': 'code,name\nW1,Surgery\nW2,Pediatrics\n',
    });
    await OperationJournal.open(db, 'bundle');

    // MySQL journals an SQL entry statement by statement (DDL commits at once).
    let restore = await failJournalOk(db, '001.sql', kind === 'mysql' ? 'statement 1' : '');
    const first = await syncctlBundle(url, 'apply', bundle);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('journal unavailable');
    expect(await count(db, 'visit')).toBe(0);
    await restore();

    restore = await failJournalOk(db, '002.imports', 'ward.csv');
    const second = await syncctlBundle(url, 'apply', bundle);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('journal unavailable');
    expect(await count(db, 'visit')).toBe(1);
    expect(await count(db, 'ward')).toBe(0);
    await restore();

    const third = await syncctlBundle(url, 'apply', bundle);
    expect(third.stderr).toBe('');
    expect(third.code).toBe(0);
    expect(await count(db, 'visit')).toBe(1);
    expect(await count(db, 'ward')).toBe(2);
    expect((await journalLines(db)).slice(-2)).toEqual(['001.sql skipped', '002.imports ok']);
  });
});
