import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeMessage, type MessageBody, type MessageType } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import { TestWorld, type DbKind } from '../support/harness.js';
import { amqpUrl, localDbKinds } from '../support/services.js';
import { waitFor } from '../support/messages.js';
import {
  Observer,
  centralLog,
  flag,
  holds,
  interventions,
  readyCount,
  removeInterventionQueuesAtTeardown,
  siteTransfers,
  startWorld,
} from './transfer-support.js';

const broker = amqpUrl();
const kinds: DbKind[] = localDbKinds();
if (!broker) console.log('[sitesync tests] skipping the sender catalogue gate: no RabbitMQ available');

const A2 = {
  code: 'A',
  version: 2,
  name: 'Hemograma completo',
  definition: '{"steps":["extracción","conteo","frotis"]}',
};

/** Whether the central's record of `siteId`'s catalogue lists code.version. */
async function centralKnowsHeld(cdb: Database, siteId: number, code: string, version: number): Promise<boolean> {
  const r = await cdb.query(
    `SELECT state FROM site_procedure WHERE id_efector = ? AND code = ? AND version = ? AND state = ?`,
    [siteId, code, version, 'held'],
  );
  return r.length === 1;
}

describe.skipIf(!broker).each(kinds)(
  "the transfer gate is the central's record of the sender's catalogue, on %s",
  (kind) => {
    let world: TestWorld;
    beforeEach(() => {
      world = new TestWorld(broker!);
      removeInterventionQueuesAtTeardown(world);
    });
    afterEach(async () => {
      await world.teardown();
    });

    it('a site holding only A.1 sends an intervention claiming A.2: rejected, kept and unlocked there; a holder of A.2 moves one up', async () => {
      const { cdb, central, sites } = await startWorld(world, kind, [101, 102]);
      const w1 = sites.get(101)!;
      const w2 = sites.get(102)!;
      // `procedures publish A 2 --sites 102`: the central holds A.2, site 101 does not.
      await central.interventionService!.publishProcedure(A2, [102]);
      await waitFor('site 102 to hold A.2 and the central to know it', async () => {
        return (await holds(w2.database!, 'A', 2)) && (await centralKnowsHeld(cdb, 102, 'A', 2));
      });
      expect(await holds(w1.database!, 'A', 2)).toBe(false);

      // The attack: a row at 101 that claims A.2 (the site's application cannot make one, so it is written).
      const sdb = w1.database!;
      const iv = await w1.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"claims":"A.2"}' });
      expect(await sdb.execute(`UPDATE intervention SET procedure_version = ? WHERE guid = ?`, [2, iv.guid])).toBe(1);
      expect(await w1.interventions!.requestTransfer([iv.guid])).toBe(1);

      const reason = 'procedure-version-missing: site 101 does not hold procedure A version 2 (it holds A.1)';
      const t = await waitFor(`the site's transfer of ${iv.guid} to end`, async () => {
        const rows = await siteTransfers(sdb, iv.guid);
        return rows.length === 1 && rows[0]!.state !== 'sent' && rows;
      });
      expect(t.map((x) => [x.direction, x.state, x.reason])).toEqual([['out', 'rejected', reason]]);
      const atSite = await interventions(sdb, iv.guid);
      expect(
        atSite.map((r) => [r.state, r.transfer_id, flag(r.transfer_requested), Number(r.procedure_version), r.payload]),
      ).toEqual([['active', null, false, 2, '{"claims":"A.2"}']]);

      expect(await interventions(cdb, iv.guid)).toHaveLength(0);
      const log = await centralLog(cdb, iv.guid);
      expect(
        log.map((r) => [r.transfer_id, Number(r.from_site), r.to_site, r.procedure_code, Number(r.procedure_version)]),
      ).toEqual([[t[0]!.transfer_id, 101, null, 'A', 2]]);
      expect(log.map((r) => [r.state, r.reason])).toEqual([['rejected', reason]]);

      // Site 102 holds A.2, and the central knows: its intervention on A.2 moves up.
      const s2 = await w2.interventions!.create({ procedure: { code: 'A', version: 2 }, payload: '{"paso":2}' });
      expect(await w2.interventions!.requestTransfer([s2.guid])).toBe(1);
      await waitFor('the intervention from 102 to be active centrally', async () => {
        const r = await interventions(cdb, s2.guid);
        return r.length === 1 && r[0]!.state === 'active';
      });
      expect(await interventions(w2.database!, s2.guid)).toHaveLength(0);
      expect((await centralLog(cdb, s2.guid)).map((r) => [Number(r.from_site), r.state, r.reason])).toEqual([
        [102, 'completed', null],
      ]);
    });

    it('no catalogue from the site: rejected; a catalogue queued just before the transfer counts; only the logged GUID settles a transfer', async () => {
      const { cdb, central, centralUrl } = await startWorld(world, kind, [101]);
      await central.interventionService!.publishProcedure(A2, []);
      // Site 103 is registered but its agent never ran: the test speaks for it (as broker user guest).
      await world.registerSite(cdb, 103);
      const ch = await world.rawChannel();
      const down = await Observer.start(ch, world.topology.down, ['103.#']);
      const send = async <T extends MessageType>(type: T, body: MessageBody<T>) => {
        const m = encodeMessage(type, body, { siteId: 103, appId: 'test', userId: 'guest' });
        ch.publish(world.topology.up, m.routingKey, m.content, m.options);
        await ch.waitForConfirms();
      };
      const transfer = (guid: string) => ({
        siteId: 103,
        transferId: randomUUID(),
        localId: 7,
        intervention: { guid, procedure: { code: 'A', version: 2 }, finished: false, payload: '{"s":103}' },
      });

      const first = transfer(randomUUID());
      await send('intervention.transfer', first);
      const [rejected] = await down.waitForCount('intervention.rejected', 1);
      expect([rejected!.body.transferId, rejected!.body.reason, rejected!.body.message]).toEqual([
        first.transferId,
        'procedure-version-missing',
        'site 103 does not hold procedure A version 2 (the central has no procedure catalogue from it)',
      ]);
      expect((await centralLog(cdb, first.intervention.guid)).map((r) => r.state)).toEqual(['rejected']);
      expect(await interventions(cdb, first.intervention.guid)).toHaveLength(0);

      // A catalogue and a transfer waiting together in the queue (as after a reconnect): judged in order.
      await central.close();
      const second = transfer(randomUUID());
      await send('procedure.catalogue', {
        siteId: 103,
        procedures: [
          { code: 'A', version: 1 },
          { code: 'A', version: 2 },
        ],
      });
      await send('intervention.transfer', second);
      expect(await readyCount(ch, world.topology.centralInterventionQueue)).toBe(2);
      const restarted = await world.startCentral(centralUrl, { dispatchIntervalMs: 100 });
      const rdb = restarted.database!;
      const [accepted] = await down.waitForCount('intervention.accepted', 1);
      expect(accepted!.body.transferId).toBe(second.transferId);
      const guid = second.intervention.guid;
      expect((await interventions(rdb, guid)).map((r) => r.state)).toEqual(['pending']);

      // source-deleted naming a GUID the transfer never carried changes nothing; the transfer's own does.
      await send('intervention.source-deleted', { siteId: 103, transferId: second.transferId, guid: randomUUID() });
      await send('intervention.source-conflict', {
        siteId: 103,
        transferId: second.transferId,
        guid: randomUUID(),
        reason: 'forged',
      });
      await waitFor('the central to consume them', async () => {
        return (await readyCount(ch, world.topology.centralInterventionQueue)) === 0;
      });
      await send('intervention.source-deleted', { siteId: 103, transferId: second.transferId, guid });
      await waitFor('the transfer to complete', async () => {
        return (await centralLog(rdb, guid))[0]?.state === 'completed';
      });
      expect((await interventions(rdb, guid)).map((r) => r.state)).toEqual(['active']);

      // Out again, to 103: received naming another GUID changes nothing either.
      const out = await restarted.interventionService!.requestTransferOut(guid, 103);
      const [deliver] = await down.waitForCount('intervention.deliver', 1);
      expect(deliver!.body.transferId).toBe(out);
      const received = { siteId: 103, transferId: out, status: 'stored' as const, localId: 9, reason: null };
      await send('intervention.received', { ...received, guid: randomUUID() });
      await waitFor('the central to consume it', async () => {
        return (await readyCount(ch, world.topology.centralInterventionQueue)) === 0;
      });
      const stillOut = async () => (await centralLog(rdb, guid)).find((r) => r.transfer_id === out);
      expect((await stillOut())?.state).toBe('sent');
      expect((await interventions(rdb, guid)).map((r) => r.state)).toEqual(['outbound']);
      await send('intervention.received', { ...received, guid });
      await waitFor('the transfer out to complete', async () => (await stillOut())?.state === 'completed');
      expect(await interventions(rdb, guid)).toHaveLength(0);
    });
  },
);
