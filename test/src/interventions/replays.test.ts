import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '@sitesync/db';
import { TestWorld, type DbKind } from '../support/harness.js';
import { amqpUrl, localDbKinds } from '../support/services.js';
import { waitFor } from '../support/messages.js';
import {
  Observer,
  centralLog,
  interventions,
  readyCount,
  removeInterventionQueuesAtTeardown,
  republish,
  siteTransfers,
  startWorld,
} from './transfer-support.js';

const broker = amqpUrl();
const kinds: DbKind[] = localDbKinds();
if (!broker) console.log('[sitesync tests] skipping intervention replays: no RabbitMQ available');

describe.skipIf(!broker).each(kinds)('a duplicate or replayed intervention message changes nothing, on %s', (kind) => {
  let world: TestWorld;
  beforeEach(() => {
    world = new TestWorld(broker!);
    removeInterventionQueuesAtTeardown(world);
  });
  afterEach(async () => {
    await world.teardown();
  });

  /** Dead letters beside `queue` (a duplicate must be answered, not parked). */
  async function deadLetters(ch: Awaited<ReturnType<TestWorld['rawChannel']>>, queue: string): Promise<number> {
    return readyCount(ch, world.topology.deadLetterQueue(queue));
  }

  /**
   * Lets the central finish what reached its intervention queue: waits until nothing is ready there,
   * then closes it (close waits for the handlers in flight).
   */
  async function drainAndClose(
    ch: Awaited<ReturnType<TestWorld['rawChannel']>>,
    agent: { close(): Promise<void> },
  ): Promise<void> {
    await sleep(300);
    await waitFor('the central intervention queue to be drained', async () => {
      return (await readyCount(ch, world.topology.centralInterventionQueue)) === 0;
    });
    await agent.close();
  }

  it('intervention.transfer delivered twice: one central copy, one log row, the site answered the same twice', async () => {
    const s = await startWorld(world, kind, [101]);
    const site = s.sites.get(101)!;
    const ch = await world.rawChannel();
    const down = await Observer.start(ch, world.topology.down, ['101.intervention.*']);
    const up = await Observer.start(ch, world.topology.up, ['101.intervention.*']);
    const iv = await site.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"dup":1}' });

    // With the central stopped, the site's transfer waits in the central's queue: take it off...
    await s.central.close();
    await site.interventions!.requestTransfer([iv.guid]);
    const q = world.topology.centralInterventionQueue;
    await waitFor('the transfer to be queued for the central', async () => (await readyCount(ch, q)) >= 1);
    const taken = await ch.get(q, { noAck: true });
    if (!taken) throw new Error('no message in the central intervention queue');
    expect(taken.properties.type).toBe('intervention.transfer');
    expect(taken.properties.userId).toBe('guest');
    expect(await readyCount(ch, q)).toBe(0);
    // ...and deliver the very same message (bytes, message id, user) twice.
    await republish(ch, world.topology.up, taken);
    await republish(ch, world.topology.up, taken);
    expect(await readyCount(ch, q)).toBe(2);
    const transferId = up.of('intervention.transfer')[0]!.body.transferId;

    const central = await world.startCentral(s.centralUrl, { dispatchIntervalMs: 100 });
    const accepted = await down.waitForCount('intervention.accepted', 2);
    await up.waitForCount('intervention.source-deleted', 2);
    await drainAndClose(ch, central);

    // The same answer twice: accepted, same transfer, same central id; never a rejection.
    expect(accepted.map((m) => [m.body.transferId, m.body.guid])).toEqual([
      [transferId, iv.guid],
      [transferId, iv.guid],
    ]);
    expect(accepted[0]!.body.centralId).toBe(accepted[1]!.body.centralId);
    expect(down.of('intervention.rejected')).toHaveLength(0);
    // The site answered both, the same way.
    const deleted = up.of('intervention.source-deleted');
    expect(deleted.map((m) => m.body.transferId)).toEqual([transferId, transferId]);

    const cdb = await world.open(s.centralUrl, 'central');
    const held = await interventions(cdb, iv.guid);
    expect(held.map((r) => [Number(r.id), r.state, r.payload])).toEqual([
      [accepted[0]!.body.centralId, 'active', '{"dup":1}'],
    ]);
    const log = await centralLog(cdb, iv.guid);
    expect(log.map((r) => [r.transfer_id, r.state])).toEqual([[transferId, 'completed']]);

    const sdb = site.database!;
    expect(await interventions(sdb, iv.guid)).toHaveLength(0);
    expect((await siteTransfers(sdb, iv.guid)).map((t) => [t.transfer_id, t.state])).toEqual([
      [transferId, 'source-deleted'],
    ]);
    expect(await deadLetters(ch, q)).toBe(0);
    expect(await deadLetters(ch, world.topology.siteQueue(101))).toBe(0);
  });

  it('intervention.deliver delivered twice: stored once, answered stored with the same local id both times', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const w1 = s.sites.get(101)!;
    const ch = await world.rawChannel();
    const down = await Observer.start(ch, world.topology.down, ['102.intervention.*']);
    const up = await Observer.start(ch, world.topology.up, ['102.intervention.*']);
    const iv = await w1.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"out":1}' });
    await w1.interventions!.requestTransfer([iv.guid]);
    await waitFor('the intervention to be active centrally', async () => {
      const r = await interventions(s.cdb, iv.guid);
      return r.length === 1 && r[0]!.state === 'active';
    });

    // The destination is down while the central delivers; a copy of the delivery joins it in its queue.
    await s.sites.get(102)!.close();
    const transferId = await s.central.interventionService!.requestTransferOut(iv.guid, 102);
    await down.waitForCount('intervention.deliver', 1);
    await republish(ch, world.topology.down, down.raw('intervention.deliver')[0]!);
    await down.waitForCount('intervention.deliver', 2);

    const w2 = await world.startSite(s.inputs.get(102)!);
    const received = await up.waitForCount('intervention.received', 2);
    await waitFor('the transfer out to complete', async () => {
      const l = await centralLog(s.cdb, iv.guid);
      return l.find((r) => r.transfer_id === transferId)?.state === 'completed';
    });

    const w2db = w2.database!;
    const stored = await interventions(w2db, iv.guid);
    expect(stored.map((r) => [r.state, r.payload])).toEqual([['active', '{"out":1}']]);
    expect(received.map((m) => [m.body.transferId, m.body.status, m.body.localId])).toEqual([
      [transferId, 'stored', Number(stored[0]!.id)],
      [transferId, 'stored', Number(stored[0]!.id)],
    ]);
    expect((await siteTransfers(w2db, iv.guid)).map((t) => [t.transfer_id, t.direction, t.state])).toEqual([
      [transferId, 'in', 'stored'],
    ]);
    expect(await interventions(s.cdb, iv.guid)).toHaveLength(0);
    const out = (await centralLog(s.cdb, iv.guid)).filter((r) => r.transfer_id === transferId);
    expect(out.map((r) => [r.state, Number(r.to_local_id)])).toEqual([['completed', Number(stored[0]!.id)]]);
    expect(await deadLetters(ch, world.topology.siteQueue(102))).toBe(0);
    expect(await deadLetters(ch, world.topology.centralInterventionQueue)).toBe(0);
  });

  it('source-deleted, received and transfer replayed after both moves completed: nothing changes anywhere', async () => {
    const s = await startWorld(world, kind, [101, 102]);
    const w1 = s.sites.get(101)!;
    const w2 = s.sites.get(102)!;
    const ch = await world.rawChannel();
    const down = await Observer.start(ch, world.topology.down, ['*.intervention.*']);
    const up = await Observer.start(ch, world.topology.up, ['*.intervention.*']);
    const iv = await w1.interventions!.create({ procedure: { code: 'A', version: 1 }, payload: '{"r":1}' });
    await w1.interventions!.requestTransfer([iv.guid]);
    await waitFor('the move up to complete', async () => (await centralLog(s.cdb, iv.guid))[0]?.state === 'completed');
    await s.central.interventionService!.requestTransferOut(iv.guid, 102);
    await waitFor('the move out to complete', async () => {
      const l = await centralLog(s.cdb, iv.guid);
      return l.length === 2 && l[1]!.state === 'completed';
    });
    await up.waitForCount('intervention.received', 1);

    const snapshot = async (dbs: Database[]) => {
      const out: unknown[] = [];
      for (const db of dbs) out.push(await interventions(db, iv.guid), await siteTransfers(db, iv.guid));
      return out;
    };
    const sites = [w1.database!, w2.database!];
    const before = {
      central: [await interventions(s.cdb, iv.guid), await centralLog(s.cdb, iv.guid)],
      sites: await snapshot(sites),
    };

    const replays = [
      up.raw('intervention.source-deleted')[0]!,
      up.raw('intervention.received')[0]!,
      up.raw('intervention.transfer')[0]!,
    ];
    for (const m of replays) {
      await republish(ch, world.topology.up, m);
      await republish(ch, world.topology.up, m);
    }
    // The replayed transfer is answered "accepted" again (twice), and site 101 confirms again each time.
    await down.waitForCount('intervention.accepted', 3);
    await up.waitForCount('intervention.source-deleted', 1 + 2 + 2);
    await drainAndClose(ch, s.central);

    const cdb = await world.open(s.centralUrl, 'central');
    expect([await interventions(cdb, iv.guid), await centralLog(cdb, iv.guid)]).toEqual(before.central);
    expect(await snapshot(sites)).toEqual(before.sites);
    expect((await interventions(w2.database!, iv.guid)).map((r) => r.state)).toEqual(['active']);
    expect(down.of('intervention.rejected')).toHaveLength(0);
    const upTransferId = up.of('intervention.transfer')[0]!.body.transferId;
    expect(down.of('intervention.accepted').map((m) => m.body.transferId)).toEqual(Array(3).fill(upTransferId));
    expect(await deadLetters(ch, world.topology.centralInterventionQueue)).toBe(0);
    expect(await deadLetters(ch, world.topology.siteQueue(101))).toBe(0);
  });
});
