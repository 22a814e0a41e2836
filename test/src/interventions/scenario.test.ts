import { describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import type { CentralAgent } from '@sitesync/central';
import type { PeripheralAgent } from '@sitesync/peripheral';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import { until } from '../support/wait.js';
import { type PeripheralConfigInput } from '@sitesync/protocol';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping intervention scenario: no RabbitMQ available');

const A1 = { code: 'A', version: 1, name: 'Hemograma completo', definition: '{"steps":["extracción","conteo"]}' };
const A2 = {
  code: 'A',
  version: 2,
  name: 'Hemograma completo',
  definition: '{"steps":["extracción","conteo","frotis"]}',
};

async function holds(db: Database, code: string, version: number): Promise<boolean> {
  return (
    (await db.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [code, version])).length === 1
  );
}

async function activeCopies(dbs: Database[], guid: string): Promise<number> {
  let n = 0;
  for (const db of dbs)
    n += (await db.query(`SELECT id FROM intervention WHERE guid = ? AND state = ?`, [guid, 'active'])).length;
  return n;
}

describe.skipIf(!broker)('interventions: the W1/W2 scenario of the source documents', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('S2, made on A.2 at W2, moves through the central to W1, which gets A.2 first; never active twice', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central: CentralAgent = await world.startCentral(centralUrl, {
      dispatchIntervalMs: 100,
    });
    const cdb = central.database!;
    await world.registerSite(cdb, 101);
    await world.registerSite(cdb, 102);
    const in101: PeripheralConfigInput = {
      ...(await world.prepareSite(101, world.dbUrl('sqlite', 'w1'))),
      transferPollSeconds: 0.2,
    };
    const in102: PeripheralConfigInput = {
      ...(await world.prepareSite(102, world.dbUrl('sqlite', 'w2'))),
      transferPollSeconds: 0.2,
    };
    let w1: PeripheralAgent = await world.startSite(in101);
    const w2 = await world.startSite(in102);
    const svc = central.interventionService!;

    // A.1 exists centrally; W1 and W2 receive it.
    expect(await svc.publishProcedure(A1, 'all')).toEqual([101, 102]);
    await until(
      'both sites to hold A.1',
      async () => (await holds(w1.database!, 'A', 1)) && (await holds(w2.database!, 'A', 1)),
    );
    await until('the central to know both hold A.1', async () => {
      const r = await cdb.query(
        `SELECT id_efector FROM site_procedure WHERE code = 'A' AND version = 1 AND state = 'held'`,
      );
      return r.length === 2;
    });

    // W1 goes offline; the central publishes A.2, which only W2 receives.
    await w1.close();
    await svc.publishProcedure(A2, [102]);
    await until('W2 to hold A.2', () => holds(w2.database!, 'A', 2));

    // W2 creates S2 on A.2, leaves it unfinished, and transfers it to the central.
    const s2 = await w2.interventions!.create({ procedure: { code: 'A', version: 2 }, payload: '{"paso":2}' });
    const w2db = w2.database!;
    const observed: number[] = [];
    let watching = true;
    // Observers on their own connections, so they keep watching while W1's agent is stopped.
    const dbs = [
      await world.open(centralUrl, 'central'),
      await world.open(in101.db.url, 'site'),
      await world.open(in102.db.url, 'site'),
    ];
    const watcher = (async () => {
      while (watching) {
        observed.push(await activeCopies(dbs, s2.guid));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    expect(await w2.interventions!.requestTransfer([s2.guid])).toBe(1);
    await until('S2 to be active at the central', async () => {
      const r = await cdb.query(`SELECT id FROM intervention WHERE guid = ? AND state = 'active'`, [s2.guid]);
      return r.length === 1;
    });
    expect(await w2db.query(`SELECT id FROM intervention WHERE guid = ?`, [s2.guid])).toHaveLength(0);

    // W1 comes back; the operator moves S2 to W1.
    w1 = await world.startSite(in101);
    expect(await holds(w1.database!, 'A', 2)).toBe(false);
    const transferId = await svc.requestTransferOut(s2.guid, 101);
    const done = await until('the transfer to W1 to complete', async () => {
      const t = (await svc.listTransfers({ guid: s2.guid })).find((x) => x.transfer_id === transferId);
      return t && ['completed', 'refused'].includes(t.state) && t;
    });
    watching = false;
    await watcher;
    expect(done.state).toBe('completed');

    // W1 got A.2 before S2, S2 is on W1 alone with its GUID and a new local id.
    const w1db = w1.database!;
    const proc = await w1db.query<{ created_at: string }>(
      `SELECT created_at FROM procedure_version WHERE code = 'A' AND version = 2`,
    );
    const iv = await w1db.query<{ id: number; updated_at: string; state: string; procedure_version: number }>(
      `SELECT id, updated_at, state, procedure_version FROM intervention WHERE guid = ?`,
      [s2.guid],
    );
    expect(proc).toHaveLength(1);
    expect(iv).toHaveLength(1);
    expect(iv[0]!.state).toBe('active');
    expect(Number(iv[0]!.procedure_version)).toBe(2);
    expect(new Date(proc[0]!.created_at).getTime()).toBeLessThanOrEqual(new Date(iv[0]!.updated_at).getTime());
    expect(await cdb.query(`SELECT id FROM intervention WHERE guid = ?`, [s2.guid])).toHaveLength(0);
    expect(await w2db.query(`SELECT id FROM intervention WHERE guid = ?`, [s2.guid])).toHaveLength(0);
    expect(Number(done.to_local_id)).toBe(Number(iv[0]!.id));

    // The log shows each step.
    const log = await svc.listTransfers({ guid: s2.guid });
    expect(
      log.map((t) => [
        t.from_site === null ? 'central' : Number(t.from_site),
        t.to_site === null ? 'central' : Number(t.to_site),
        t.state,
      ]),
    ).toEqual([
      [102, 'central', 'completed'],
      ['central', 101, 'completed'],
    ]);
    expect(Number(log[0]!.from_local_id)).toBe(s2.id);

    // At no moment two systems held S2 as active.
    expect(observed.length).toBeGreaterThan(10);
    expect(Math.max(...observed)).toBeLessThanOrEqual(1);
  });
});
