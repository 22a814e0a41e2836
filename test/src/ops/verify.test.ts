import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeKey } from '@sitesync/protocol';
import { type TestWorld, worldPerTest, type DbKind } from '../support/harness.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import { changeResult, deleteOrder, labPipeline, seedLabData } from '../support/lab-data.js';
import { twoSyncedSites } from '../support/synced-sites.js';
import { syncctl } from '../support/wait.js';
import { type PipelineVerification } from '@sitesync/syncctl';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping syncctl verify: no RabbitMQ available');
const kinds: DbKind[] = ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : [])];

describe.skipIf(!broker).each(kinds)('syncctl verify (central on %s)', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('reports none after a sync, finds planted differences at the site and centrally, and none once synced again', async () => {
    // Site 102's rows share the central tables and must not count for 101.
    const { centralUrl, cdb, siteUrl, site } = await twoSyncedSites(world, kind);

    const pipelineFile = join(world.dir, 'lab.json');
    writeFileSync(pipelineFile, JSON.stringify(labPipeline()));
    const args = ['--db', centralUrl, 'verify', '--site', '101', '--site-db', siteUrl, '--pipeline-file', pipelineFile];
    const verify = async () => {
      const r = await syncctl([...args, '--json']);
      expect(r.stderr).toBe('');
      return { code: r.code, report: JSON.parse(r.stdout) as PipelineVerification[] };
    };

    const clean = await verify();
    expect(clean.code).toBe(0);
    expect(clean.report).toHaveLength(1);
    const [lab] = clean.report;
    expect(lab!.differences).toBe(0);
    expect(lab!.site).toEqual(lab!.central);
    expect(lab!.site).toMatchObject({ headers: 60, details: 300 });

    // Changes at the site not synced yet: one changed, one new, one deleted.
    const sdb = site.database!;
    await changeResult(sdb, 7, 'changed at the site');
    await seedLabData(sdb, { orders: 1, firstOrderId: 500 });
    await deleteOrder(sdb, 9);
    const planted = await verify();
    expect(planted.code).toBe(1);
    expect(planted.report[0]).toMatchObject({
      differences: 3,
      different: [encodeKey([7])],
      missingCentrally: [encodeKey([500])],
      extraCentrally: [encodeKey([9])],
    });
    expect(planted.report[0]!.site.digest).not.toBe(planted.report[0]!.central.digest);

    expect((await site.runSession()).status).toBe('ok');
    const synced = await verify();
    expect(synced.code).toBe(0);
    expect(synced.report[0]!.differences).toBe(0);

    // Someone edits the central copy by hand: verify notices.
    await cdb.execute(`DELETE FROM central_results WHERE id_efector = ? AND result_id = ?`, [101, 1201]);
    const tampered = await verify();
    expect(tampered.code).toBe(1);
    expect(tampered.report[0]).toMatchObject({ differences: 1, different: [encodeKey([12])] });

    const table = await syncctl(args);
    expect(table.stdout).toContain(`lab: different: ${encodeKey([12])}`);
    expect(table.stdout).toContain('site 101: 1 header(s) differ');
  });
});
