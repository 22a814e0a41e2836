import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database, insertIntervention } from '@sitesync/db';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import { createLabTables, labPipeline, seedLabData } from '../support/lab-data.js';
import { centralSnapshot, siteSnapshot } from '../support/compare.js';
import { waitFor } from '../support/messages.js';
import {
  A1,
  centralLog,
  holds,
  interventions,
  removeInterventionQueuesAtTeardown,
} from '../interventions/transfer-support.js';
import { snapshotDir, SYNCCTL } from './bundle-support.js';
import { runBin } from '../support/wait.js';
import { loadPeripheralConfig, type PeripheralConfigInput } from '@sitesync/protocol';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping bundle export: no RabbitMQ available');
const kinds: DbKind[] = ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : [])];

describe.skipIf(!broker).each(kinds)('syncctl bundle export (site and central on %s)', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => {
    world = w;
    removeInterventionQueuesAtTeardown(w);
  });

  it('provisions a new site that then syncs its headers to the central and receives an intervention', async () => {
    const centralUrl = world.dbUrl(kind, 'central');
    const central = await world.startCentral(centralUrl, { dispatchIntervalMs: 100 });
    const cdb = central.database!;
    await world.registerSite(cdb, 201);
    await central.interventionService!.publishProcedure(A1, []);
    const pipelineFile = join(world.dir, 'lab.json');
    writeFileSync(pipelineFile, JSON.stringify(labPipeline()));

    const out = join(world.dir, 'site201.zip');
    const exported = await runBin(SYNCCTL, [
      ...['--db', centralUrl, 'bundle', 'export', '--site', '201', '--pipeline-file', pipelineFile],
      ...['--amqp-url', broker!, '--prefix', world.prefix, out],
    ]);
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);

    // A new site: the hospital's own tables and rows, no sitesync table yet.
    const siteUrl = world.dbUrl(kind, 'site201');
    const fresh = await Database.open(siteUrl, { role: 'site', migrate: false });
    await createLabTables(fresh);
    await seedLabData(fresh, { orders: 30 });
    await fresh.close();

    const configDir = join(world.dir, 'site201-config');
    const plan = await runBin(SYNCCTL, [
      '--db',
      siteUrl,
      'bundle',
      'apply',
      '--dry-run',
      '--config-dir',
      configDir,
      out,
    ]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("sitesync's site tables would be created");
    expect(plan.stdout).toMatch(/procedure_version: 1 row in procedure_version\.json/);
    expect(snapshotDir(configDir)).toEqual({});

    const applied = await runBin(SYNCCTL, ['--db', siteUrl, 'bundle', 'apply', '--config-dir', configDir, out]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(Object.keys(snapshotDir(configDir)).sort()).toEqual(['pipelines/lab.json', 'site.json']);

    // The config from the bundle, with the secrets from the environment as the docs say.
    const cfg = loadPeripheralConfig(join(configDir, 'site.json'), { SYNC_DB_URL: siteUrl, SYNC_AMQP_URL: broker });
    expect(cfg.siteId).toBe(201);
    expect(cfg.amqp.prefix).toBe(world.prefix);
    const site = await world.startSite({ ...cfg, transferPollSeconds: 0.2 } as unknown as PeripheralConfigInput);
    const siteDb = site.database!;
    // The procedure came with the bundle, not from the central's messages.
    expect(await holds(siteDb, 'A', 1)).toBe(true);

    expect((await site.runSession()).status).toBe('ok');
    expect(await centralSnapshot(cdb, 201)).toEqual(await siteSnapshot(siteDb));

    const guid = randomUUID();
    await insertIntervention(cdb, { guid, procedure: { code: 'A', version: 1 }, finished: false, payload: '{"n":1}' });
    await central.interventionService!.requestTransferOut(guid, 201);
    await waitFor('the intervention to land at site 201', async () => {
      const [log] = await centralLog(cdb, guid);
      return log?.state === 'completed' && (await interventions(siteDb, guid)).length === 1;
    });
    const [landed] = await interventions(siteDb, guid);
    expect(landed).toMatchObject({ guid, procedure_code: 'A', state: 'active', payload: '{"n":1}' });
    expect(await interventions(cdb, guid)).toEqual([]);
  });

  it('refuses to export for a site that is not registered, or a pipeline it is not registered for', async () => {
    const centralUrl = world.dbUrl(kind, 'central');
    const cdb = await world.open(centralUrl, 'central');
    await world.registerSite(cdb, 201);
    const pipelineFile = join(world.dir, 'lab.json');
    const exportFor = (site: string, file: string) =>
      runBin(SYNCCTL, [
        ...['--db', centralUrl, 'bundle', 'export', '--site', site, '--pipeline-file', file],
        ...['--amqp-url', broker!, join(world.dir, `out-${randomUUID()}`)],
      ]);
    writeFileSync(pipelineFile, JSON.stringify(labPipeline()));
    const unknownSite = await exportFor('202', pipelineFile);
    expect(unknownSite.code).toBe(2);
    expect(unknownSite.stderr).toContain('site 202 is not registered: run syncctl sites add 202 first');

    writeFileSync(pipelineFile, JSON.stringify({ ...labPipeline(), name: 'pharmacy' }));
    const otherPipeline = await exportFor('201', pipelineFile);
    expect(otherPipeline.code).toBe(2);
    expect(otherPipeline.stderr).toContain('pipeline pharmacy is not registered for site 201 (registered: lab)');
  });
});
