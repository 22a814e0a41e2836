import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TransferRefusedError } from '@sitesync/central';
import { TestWorld, type DbKind } from '../support/harness.js';
import { amqpUrl, localDbKinds } from '../support/services.js';
import { waitFor } from '../support/messages.js';
import {
  centralLog,
  flag,
  insertProcedure,
  interventions,
  readyCount,
  removeInterventionQueuesAtTeardown,
  siteTransfers,
  startWorld,
} from './transfer-support.js';

const broker = amqpUrl();
const kinds: DbKind[] = localDbKinds();
if (!broker) console.log('[sitesync tests] skipping intervention rejections: no RabbitMQ available');

/** A procedure version that exists at a site only (never published by the central). */
const Z9 = { code: 'Z', version: 9, name: 'Local only', definition: '{"steps":["local"]}' };

describe.skipIf(!broker).each(kinds)('intervention transfers refused, on %s', (kind) => {
  let world: TestWorld;
  beforeEach(() => {
    world = new TestWorld(broker!);
    removeInterventionQueuesAtTeardown(world);
  });
  afterEach(async () => {
    await world.teardown();
  });

  /** Waits for the site's transfer of `guid` to end in `state`; returns the site's transfer rows. */
  async function siteTransferEnds(db: Parameters<typeof siteTransfers>[0], guid: string, state: string, earlier = 0) {
    return waitFor(`the site's transfer of ${guid} to be ${state}`, async () => {
      const t = (await siteTransfers(db, guid)).slice(earlier);
      return t.length > 0 && t.every((x) => x.state !== 'sent') && t;
    }).then((t) => {
      expect(t.map((x) => x.state)).toEqual([state]);
      return t[0]!;
    });
  }

  /** What every rejection leaves at the site: still there, active, unlocked, not marked, usable. */
  async function expectUsableAtSite(db: Parameters<typeof interventions>[0], guid: string, payload: string) {
    const rows = await interventions(db, guid);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.state).toBe('active');
    expect(rows[0]!.transfer_id).toBeNull();
    expect(flag(rows[0]!.transfer_requested)).toBe(false);
    expect(rows[0]!.payload).toBe(payload);
  }

  it('procedure version missing centrally: rejected with the reason, the intervention stays usable at the site', async () => {
    const { cdb, central, sites } = await startWorld(world, kind, [101, 102]);
    const site = sites.get(101)!;
    const sdb = site.database!;
    await insertProcedure(sdb, Z9);
    const iv = await site.interventions!.create({ procedure: { code: 'Z', version: 9 }, payload: '{"z":1}' });
    expect(await site.interventions!.requestTransfer([iv.guid])).toBe(1);

    const t = await siteTransferEnds(sdb, iv.guid, 'rejected');
    expect(t.direction).toBe('out');
    expect(t.reason).toMatch(/^procedure-version-missing: .*Z version 9/);
    await expectUsableAtSite(sdb, iv.guid, '{"z":1}');

    expect(await interventions(cdb, iv.guid)).toHaveLength(0);
    const log = await centralLog(cdb, iv.guid);
    expect(log.map((r) => [r.transfer_id, Number(r.from_site), r.to_site, r.state])).toEqual([
      [t.transfer_id, 101, null, 'rejected'],
    ]);
    expect(log[0]!.reason).toMatch(/^procedure-version-missing/);

    // Usable: once the central has Z.9 and knows site 101 holds it, the same intervention moves up.
    await central.interventionService!.publishProcedure(Z9, [101]);
    await waitFor("the central to know site 101's catalogue lists Z.9", async () => {
      const r = await cdb.query(`SELECT state FROM site_procedure WHERE id_efector = ? AND code = ? AND version = ?`, [
        101,
        'Z',
        9,
      ]);
      return r[0]?.state === 'held';
    });
    expect(await site.interventions!.requestTransfer([iv.guid])).toBe(1);
    await waitFor('the second transfer to complete', async () => {
      const l = await centralLog(cdb, iv.guid);
      return l.length === 2 && l.some((r) => r.state === 'completed');
    });
    expect(await interventions(sdb, iv.guid)).toHaveLength(0);
    const there = await interventions(cdb, iv.guid);
    expect(there.map((r) => [r.state, r.payload])).toEqual([['active', '{"z":1}']]);
  });

  it('GUID already held by the central: rejected, the central copy untouched, the site copy usable', async () => {
    const { cdb, sites } = await startWorld(world, kind, [101, 102]);
    const w1 = sites.get(101)!;
    const w2 = sites.get(102)!;
    const guid = randomUUID();
    await w1.interventions!.create({ guid, procedure: { code: 'A', version: 1 }, payload: '{"from":101}' });
    await w1.interventions!.requestTransfer([guid]);
    await waitFor('the intervention from 101 to be active centrally', async () => {
      const r = await interventions(cdb, guid);
      return r.length === 1 && r[0]!.state === 'active';
    });

    await w2.interventions!.create({ guid, procedure: { code: 'A', version: 1 }, payload: '{"from":102}' });
    expect(await w2.interventions!.requestTransfer([guid])).toBe(1);
    const t = await siteTransferEnds(w2.database!, guid, 'rejected');
    expect(t.reason).toMatch(/^guid-active-elsewhere: /);
    await expectUsableAtSite(w2.database!, guid, '{"from":102}');

    const central = await interventions(cdb, guid);
    expect(central.map((r) => [r.state, r.payload, r.transfer_id])).toEqual([['active', '{"from":101}', null]]);
    const log = await centralLog(cdb, guid);
    expect(log.map((r) => [Number(r.from_site), r.state])).toEqual([
      [101, 'completed'],
      [102, 'rejected'],
    ]);
    expect(log[1]!.transfer_id).toBe(t.transfer_id);
    expect(log[1]!.reason).toMatch(/^guid-active-elsewhere/);
  });

  it('GUID the central moved out to another site: a transfer of the same GUID from elsewhere is rejected', async () => {
    const { cdb, central, sites } = await startWorld(world, kind, [101, 102]);
    const w1 = sites.get(101)!;
    const w2 = sites.get(102)!;
    const guid = randomUUID();
    await w1.interventions!.create({ guid, procedure: { code: 'A', version: 1 }, payload: '{"v":1}' });
    await w1.interventions!.requestTransfer([guid]);
    await waitFor('the intervention to be active centrally', async () => {
      const r = await interventions(cdb, guid);
      return r.length === 1 && r[0]!.state === 'active';
    });
    await central.interventionService!.requestTransferOut(guid, 102);
    await waitFor('the transfer out to 102 to complete', async () => {
      const l = await centralLog(cdb, guid);
      return l.length === 2 && l.every((r) => r.state === 'completed');
    });

    // Site 101 gets a record with the same GUID again (a copy restored from a backup, say).
    await w1.interventions!.create({ guid, procedure: { code: 'A', version: 1 }, payload: '{"v":"restored"}' });
    await w1.interventions!.requestTransfer([guid]);
    const t = await siteTransferEnds(w1.database!, guid, 'rejected', 1);
    expect(t.reason).toMatch(/^guid-active-elsewhere: .*102/);
    await expectUsableAtSite(w1.database!, guid, '{"v":"restored"}');
    expect(await interventions(cdb, guid)).toHaveLength(0);
    expect((await interventions(w2.database!, guid)).map((r) => r.state)).toEqual(['active']);
    expect((await centralLog(cdb, guid)).map((r) => r.state)).toEqual(['completed', 'completed', 'rejected']);
  });

  it('unknown site: its transfer is rejected as unknown-site and stays usable at the site', async () => {
    const { cdb } = await startWorld(world, kind, [101]);
    const w3 = await startUnregistered(103);
    const iv = await w3.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"s":103}' });
    expect(await w3.interventions!.requestTransfer([iv.guid])).toBe(1);
    const t = await siteTransferEnds(w3.database!, iv.guid, 'rejected');
    expect(t.reason).toMatch(/^unknown-site: /);
    await expectUsableAtSite(w3.database!, iv.guid, '{"s":103}');
    expect(await interventions(cdb, iv.guid)).toHaveLength(0);
  });

  it("unknown site: the central's transfer log records the rejected transfer", async () => {
    const { cdb } = await startWorld(world, kind, [101]);
    const w3 = await startUnregistered(103);
    const iv = await w3.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"s":103}' });
    await w3.interventions!.requestTransfer([iv.guid]);
    const t = await siteTransferEnds(w3.database!, iv.guid, 'rejected');
    const log = await centralLog(cdb, iv.guid);
    expect(log.map((r) => [r.transfer_id, Number(r.from_site), r.state])).toEqual([[t.transfer_id, 103, 'rejected']]);
    expect(log[0]!.reason).toMatch(/^unknown-site/);
  });

  /** A site with no EstadoSyncGeneral row, holding A.1 (put into its database directly). */
  async function startUnregistered(siteId: number) {
    const input = {
      ...(await world.prepareSite(siteId, world.dbUrl(kind, `site${siteId}`))),
      transferPollSeconds: 0.2,
    };
    const pre = await world.open(input.db.url, 'site');
    await insertProcedure(pre, { code: 'A', version: 1, name: 'Hemograma completo', definition: '{}' });
    return world.startSite(input);
  }

  /** Moves a new intervention made at 101 up to the central and returns its GUID. */
  async function heldCentrally(
    s: Awaited<ReturnType<typeof startWorld>>,
    opts: { finished?: boolean } = {},
  ): Promise<string> {
    const w1 = s.sites.get(101)!;
    const iv = await w1.interventions!.create({
      procedure: { code: 'A', version: 1 },
      payload: '{"c":1}',
      finished: opts.finished ?? false,
    });
    await w1.interventions!.requestTransfer([iv.guid]);
    await waitFor('the intervention to be active centrally', async () => {
      const r = await interventions(s.cdb, iv.guid);
      return r.length === 1 && r[0]!.state === 'active';
    });
    return iv.guid;
  }

  it('transfer out of a finished intervention is refused; nothing moves, nothing is logged', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const guid = await heldCentrally(s, { finished: true });
    const svc = s.central.interventionService!;
    const err = await svc.requestTransferOut(guid, 102).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransferRefusedError);
    expect((err as Error).message).toMatch(/finished/);
    const rows = await interventions(s.cdb, guid);
    expect(rows.map((r) => [r.state, r.transfer_id])).toEqual([['active', null]]);
    expect((await centralLog(s.cdb, guid)).map((r) => r.state)).toEqual(['completed']);
    expect(await interventions(s.sites.get(102)!.database!, guid)).toHaveLength(0);
  });

  it('transfer out to an unknown site is refused; nothing moves, nothing is logged', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const guid = await heldCentrally(s);
    const svc = s.central.interventionService!;
    const err = await svc.requestTransferOut(guid, 999).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransferRefusedError);
    expect((err as Error).message).toMatch(/site 999 is not registered/);
    expect((await interventions(s.cdb, guid)).map((r) => [r.state, r.transfer_id])).toEqual([['active', null]]);
    expect((await centralLog(s.cdb, guid)).map((r) => r.state)).toEqual(['completed']);
  });

  it('two concurrent transfers out of one GUID: exactly one wins, the other is refused with a clear message', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const guid = await heldCentrally(s);
    const svc = s.central.interventionService!;
    const results = await Promise.allSettled([svc.requestTransferOut(guid, 101), svc.requestTransferOut(guid, 102)]);
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ site: [101, 102][i]!, id: r.value }] : []));
    const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toBeInstanceOf(TransferRefusedError);
    expect((lost[0] as Error).message).toBe(`intervention ${guid} is already being transferred`);

    const winner = won[0]!;
    const out = (await centralLog(s.cdb, guid)).filter((r) => r.from_site === null);
    expect(out.map((r) => [r.transfer_id, Number(r.to_site)])).toEqual([[winner.id, winner.site]]);
    await waitFor('the winning transfer to complete', async () => {
      const l = await centralLog(s.cdb, guid);
      return l.find((r) => r.transfer_id === winner.id)?.state === 'completed';
    });
    expect(await interventions(s.cdb, guid)).toHaveLength(0);
    const loser = winner.site === 101 ? 102 : 101;
    expect((await interventions(s.sites.get(winner.site)!.database!, guid)).map((r) => r.state)).toEqual(['active']);
    expect(await interventions(s.sites.get(loser)!.database!, guid)).toHaveLength(0);
  });

  it('changed at the site after it was sent: the site keeps it, reports source-conflict, the central drops its copy', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const site = s.sites.get(101)!;
    const sdb = site.database!;
    const iv = await site.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"v":"as sent"}' });
    await s.central.close();

    expect(await site.interventions!.requestTransfer([iv.guid])).toBe(1);
    const ch = await world.rawChannel();
    await waitFor('the transfer to wait in the central intervention queue', async () => {
      const t = await siteTransfers(sdb, iv.guid);
      return t[0]?.state === 'sent' && (await readyCount(ch, world.topology.centralInterventionQueue)) >= 1;
    });
    expect(await sdb.execute(`UPDATE intervention SET payload = ? WHERE guid = ?`, ['{"v":"edited"}', iv.guid])).toBe(
      1,
    );

    const central = await world.startCentral(s.centralUrl, { dispatchIntervalMs: 100 });
    const cdb = central.database!;
    await waitFor('the central to log the conflict', async () => {
      const l = await centralLog(cdb, iv.guid);
      return l[0]?.state === 'conflict';
    });
    const log = await centralLog(cdb, iv.guid);
    expect(log.map((r) => [Number(r.from_site), r.state])).toEqual([[101, 'conflict']]);
    expect(await interventions(cdb, iv.guid)).toHaveLength(0);

    await expectUsableAtSite(sdb, iv.guid, '{"v":"edited"}');
    const t = await siteTransfers(sdb, iv.guid);
    expect(t.map((x) => [x.transfer_id, x.state])).toEqual([[log[0]!.transfer_id, 'conflict']]);
    expect(t[0]!.reason).toMatch(/changed/);
  });
});
