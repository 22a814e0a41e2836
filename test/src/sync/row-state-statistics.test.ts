import { describe, expect, it } from 'vitest';
import { Database, ROW_STATE_TABLE } from '@sitesync/db';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, postgresUrl, reportSkip } from '../support/services.js';
import { labPipeline } from '../support/lab-data.js';

const broker = amqpUrl();
const pg = postgresUrl();

/** The plan PostgreSQL picks for "rows not acknowledged yet", the read every tracked session starts with. */
async function unackedPlan(db: Database): Promise<string> {
  const rows = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN SELECT header_key FROM ${db.dialect.quote(ROW_STATE_TABLE)} WHERE pipeline = 'lab' AND pending_batch IS NOT NULL`,
  );
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

async function analyzedColumns(db: Database): Promise<string[]> {
  const rows = await db.query<{ attname: string }>(
    `SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = ? ORDER BY attname`,
    [ROW_STATE_TABLE],
  );
  return rows.map((r) => r.attname);
}

describe.skipIf(reportSkip('row-state statistics', broker && pg ? pg : undefined))(
  'row-state statistics on postgres',
  () => {
    let world: TestWorld;
    worldPerTest(broker, (w) => (world = w));

    it('a session that marked many rows refreshes the row state statistics, so the unacknowledged rows come from their index', async () => {
      const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
      await world.registerSite(central.database!, 101);
      const input = await world.prepareSite(101, world.dbUrl('postgres', 'site101'), {
        orders: 6_000,
        detailsPerOrder: 1,
      });
      const site = await world.startSite({ ...input, pipelines: [labPipeline({ changeTracking: 'triggers' })] });
      const db = site.database!;
      // Only the agent may analyze it here, whatever the server's autovacuum does.
      await db.query(`ALTER TABLE ${db.dialect.quote(ROW_STATE_TABLE)} SET (autovacuum_enabled = false)`);
      expect(await analyzedColumns(db)).toEqual([]);

      const first = await site.runSession();
      expect(first.status).toBe('ok');
      expect(first.totals.headers).toBe(6_000);
      // The refresh runs beside the sessions once this one has ended. Closing the agent (as a site
      // run once by cron does right away) waits for a refresh still running (`settled`, tested
      // with TableStatistics), so the table is analyzed once the agent has closed.
      await site.close();
      const after = await Database.open(input.db.url, { role: 'site' });
      try {
        expect(await analyzedColumns(after)).toEqual(['pending_batch', 'pipeline']);
        // Without statistics the planner read the 6,000 rows through the primary key and filtered
        // them; with them it reads the partial index of the rows still waiting for an acknowledgement.
        expect(await unackedPlan(after)).toContain('IX_sync_row_state_unacked');
      } finally {
        await after.close();
      }
    });
  },
);
