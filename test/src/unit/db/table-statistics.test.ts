import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '@sitesync/db';
import { TableStatistics } from '@sitesync/db';
import { reportSkip } from '../../support/services.js';
import { until } from '../../support/wait.js';
import { backendUrl, openScratch, uniqueName, type Scratch } from './scratch-databases.js';

/** What PostgreSQL's planner believes about a table: rows estimated and when it was last analyzed. */
async function plannerView(db: Database, table: string): Promise<{ rows: number; analyzed: boolean }> {
  const r = await db.query<{ n: unknown; analyzed: unknown }>(
    `SELECT c.reltuples AS n, s.last_analyze IS NOT NULL AS analyzed FROM pg_class c ` +
      `JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass(?)`,
    [db.dialect.quote(table)],
  );
  return { rows: Number(r[0]?.n ?? -1), analyzed: Boolean(r[0]?.analyzed) };
}

describe.skipIf(reportSkip('TableStatistics on postgres', backendUrl('postgres')))(
  'TableStatistics on postgres',
  () => {
    let db: Database;
    let scratch: Scratch;
    beforeAll(async () => {
      ({ db, scratch } = await openScratch('postgres', 'central'));
    });
    afterAll(async () => {
      await db?.close();
      await scratch?.drop();
    });

    it('analyzes a table once the rows written reach its size (at least 10,000), not before', async () => {
      const t = uniqueName('grow');
      const q = db.dialect.quote(t);
      // autovacuum off: only the refresh under test may analyze it
      await db.query(`CREATE TABLE ${q} (id BIGINT PRIMARY KEY, note TEXT) WITH (autovacuum_enabled = false)`);
      const errors: unknown[] = [];
      const stats = new TableStatistics(db, (_t, err) => errors.push(err));
      const fill = async (from: number, n: number) => {
        await db.query(`INSERT INTO ${q} SELECT g, 'n' || g FROM generate_series(?::bigint, ?::bigint) g`, [
          from,
          from + n - 1,
        ]);
        stats.wrote(t, n, ['id']);
      };

      await fill(1, 9_000);
      await new Promise((r) => setTimeout(r, 200));
      expect((await plannerView(db, t)).analyzed).toBe(false);

      await fill(9_001, 3_000); // 12,000 written: past the first threshold
      const columnStats = () =>
        db.query<{ attname: string }>(
          `SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = ?`,
          [t],
        );
      // Under load the planner figures were once seen a moment before the column statistics:
      // wait for both before judging which columns were analyzed.
      const first = await until('first refresh', async () => {
        const v = await plannerView(db, t);
        return v.analyzed && v.rows === 12_000 && (await columnStats()).length > 0 ? v : undefined;
      });
      expect(first.rows).toBe(12_000);
      // only the columns the merges filter on: the others are left to autovacuum
      expect((await columnStats()).map((r) => r.attname)).toEqual(['id']);

      // the next refresh waits for as many rows again as the table held
      await fill(12_001, 11_000);
      await new Promise((r) => setTimeout(r, 200));
      expect((await plannerView(db, t)).rows).toBe(12_000);
      await fill(23_001, 2_000);
      await until('second refresh', async () => (await plannerView(db, t)).rows === 25_000);
      expect(errors).toEqual([]);
    });

    it('settled() resolves once the refresh running now has ended', async () => {
      const t = uniqueName('settle');
      const q = db.dialect.quote(t);
      await db.query(`CREATE TABLE ${q} (id BIGINT PRIMARY KEY) WITH (autovacuum_enabled = false)`);
      await db.query(`INSERT INTO ${q} SELECT g FROM generate_series(1, 10000) g`);
      const stats = new TableStatistics(db);
      await stats.settled(); // nothing running: at once
      stats.wrote(t, 10_000, ['id']);
      await stats.settled();
      expect(await plannerView(db, t)).toEqual({ rows: 10_000, analyzed: true });
    });

    it('analyzes every column the merges into a table named, when sites with other keys share it', async () => {
      const t = uniqueName('shared');
      const q = db.dialect.quote(t);
      await db.query(`CREATE TABLE ${q} (a BIGINT, b BIGINT, c TEXT) WITH (autovacuum_enabled = false)`);
      await db.query(`INSERT INTO ${q} SELECT g, g % 7, 'x' FROM generate_series(1, 12000) g`);
      const stats = new TableStatistics(db);
      stats.wrote(t, 6_000, ['a']);
      stats.wrote(t, 6_000, ['b', 'a']);
      const analyzed = await until('the refresh', async () => {
        const r = await db.query<{ attname: string }>(
          `SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = ?`,
          [t],
        );
        return r.length ? r.map((x) => x.attname).sort() : undefined;
      });
      expect(analyzed).toEqual(['a', 'b']);
    });

    it("says once that it cannot refresh a table the central's user does not own (the server would only warn)", async () => {
      const role = uniqueName('not_owner');
      const t = uniqueName('owned_by_other');
      const schema = new URL(scratch.url).searchParams.get('schema')!;
      const q = db.dialect.quote;
      await db.query(`CREATE ROLE ${q(role)} LOGIN`);
      let other: Database | undefined;
      try {
        // opening a database URL with a schema runs CREATE SCHEMA IF NOT EXISTS
        const [current] = await db.query<{ name: string }>(`SELECT current_database() AS name`);
        await db.query(`GRANT CREATE ON DATABASE ${q(current!.name)} TO ${q(role)}`);
        await db.query(`GRANT USAGE ON SCHEMA ${q(schema)} TO ${q(role)}`);
        await db.query(`CREATE TABLE ${q(t)} (id BIGINT PRIMARY KEY)`);
        await db.query(`GRANT SELECT, INSERT ON ${q(t)} TO ${q(role)}`);
        const url = new URL(scratch.url);
        url.username = role;
        other = await Database.open(url.toString(), { role: 'central', migrate: false, poolSize: 2 });
        const errors: string[] = [];
        const stats = new TableStatistics(other, (_t, err) => errors.push((err as Error).message));
        stats.wrote(t, 20_000, ['id']);
        await until('the refusal reported', async () => errors.length > 0);
        expect(errors[0]).toMatch(/does not own/);
        stats.wrote(t, 100_000, ['id']);
        await new Promise((r) => setTimeout(r, 200));
        expect(errors).toHaveLength(1);
      } finally {
        await other?.close();
        await db.query(`DROP TABLE IF EXISTS ${q(t)}`);
        await db.query(`DROP OWNED BY ${q(role)}`);
        await db.query(`DROP ROLE ${q(role)}`);
      }
    });

    it('reports a refresh that fails, and tries again only after as many rows again', async () => {
      const errors: string[] = [];
      const stats = new TableStatistics(db, (table) => errors.push(table));
      stats.wrote('no_such_table', 20_000, ['id']);
      await until('the failure reported', async () => errors.length > 0);
      stats.wrote('no_such_table', 5_000, ['id']);
      await new Promise((r) => setTimeout(r, 200));
      expect(errors).toEqual(['no_such_table']);
      stats.wrote('no_such_table', 5_000, ['id']);
      await until('the second failure reported', async () => errors.length > 1);
      expect(errors).toEqual(['no_such_table', 'no_such_table']);
    });
  },
);

describe('TableStatistics elsewhere', () => {
  it('does nothing on a dialect whose server keeps statistics itself (SQLite)', async () => {
    const { db, scratch } = await openScratch('sqlite', 'central');
    try {
      const errors: unknown[] = [];
      const stats = new TableStatistics(db, (_t, err) => errors.push(err));
      stats.wrote('no_such_table', 1_000_000, ['id']);
      await new Promise((r) => setTimeout(r, 50));
      expect(errors).toEqual([]);
    } finally {
      await db.close();
      await scratch.drop();
    }
  });
});
