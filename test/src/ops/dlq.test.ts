import { describe, expect, it } from 'vitest';
import {
  encodeMessage,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_ORIGINAL_USER,
  HEADER_REASON,
  HEADER_REPLAYS,
} from '@sitesync/protocol';
import { HEADER_SIGNATURE, MessageSigner, registerSite } from '@sitesync/central';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import { labBatch, plantUnknownPipelineDeadLetter } from '../support/messages.js';
import { syncctl as runSyncctl, until } from '../support/wait.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping syncctl dlq: no RabbitMQ available');
/** syncctl with its stdout and stderr as one text. */
async function syncctl(args: string[]): Promise<{ code: number; out: string }> {
  const r = await runSyncctl(args);
  return { code: r.code, out: r.stdout + r.stderr };
}

describe.skipIf(!broker)('syncctl dlq', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('lists, shows (masked), replays once the cause is fixed, refuses endless replays, and purges on confirmation', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    const cdb = central.database!;
    // Site 101 is known, but not its pipeline "lab": its batch is dead-lettered as unknown-site.
    const { batch, dlq, ch } = await plantUnknownPipelineDeadLetter(world, cdb, 101);
    const base = ['--db', centralUrl, 'dlq', '--amqp', broker!, '--prefix', world.prefix];

    const list = await syncctl([...base, 'list', '--json']);
    expect(list.code).toBe(0);
    const groups = JSON.parse(list.out) as Array<{
      queue: string;
      site: string;
      type: string;
      reason: string;
      count: number;
    }>;
    expect(groups).toEqual([
      expect.objectContaining({
        queue: dlq,
        site: '101',
        type: 'batch',
        reason: 'unknown-site',
        trust: 'signed',
        count: 1,
      }),
    ]);

    const shown = await syncctl([...base, 'show', batch.options.messageId]);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain('unknown-site');
    expect(shown.out).toContain('"patient_name": "***"');
    expect(shown.out).toContain('"patient_id": "***"');
    expect(shown.out).not.toContain('DNI1');
    // The rows are shown by column name; the raw body carries them as values.
    expect(shown.out).toContain('"order_id": 1');
    expect((await syncctl([...base, 'show', batch.options.messageId, '--raw'])).out).toContain('"Pérez, Ana"');
    // Looking does not remove anything.
    expect((await ch.checkQueue(dlq)).messageCount).toBe(1);

    const dry = await syncctl([...base, 'replay', '--site', '101', '--dry-run']);
    expect(dry.out).toContain('1 would replay');
    expect((await ch.checkQueue(dlq)).messageCount).toBe(1);

    // The operator fixes the cause, then replays: the batch is merged, the dead letter is gone.
    await registerSite(cdb, {
      siteId: 101,
      pipeline: 'lab',
      headerTable: 'central_orders',
      detailTable: 'central_results',
      brokerUser: 'guest',
    });
    const replay = await syncctl([...base, 'replay', '--reason', 'unknown-site']);
    expect(replay.code).toBe(0);
    expect(replay.out).toContain('1 replayed');
    await until('the replayed batch to be merged', async () => {
      const r = await cdb.query(`SELECT order_id FROM central_orders WHERE id_efector = 101`).catch(() => []);
      return r.length === 1;
    });
    expect((await ch.checkQueue(dlq)).messageCount).toBe(0);

    // A message already replayed 3 times is refused unless forced (a dead letter as the central signs it).
    const tired = encodeMessage('batch', labBatch(101, [{ orderId: 2 }]), {
      siteId: 101,
      appId: 'test',
      userId: 'guest',
    });
    const origin = {
      queue: world.topology.centralSyncQueue,
      exchange: world.topology.up,
      routingKey: '101.batch',
      user: 'guest',
      reason: 'schema',
      replays: 3,
    };
    Object.assign(tired.options.headers, {
      [HEADER_REASON]: origin.reason,
      [HEADER_REPLAYS]: origin.replays,
      [HEADER_ORIGINAL_QUEUE]: origin.queue,
      [HEADER_ORIGINAL_EXCHANGE]: origin.exchange,
      [HEADER_ORIGINAL_ROUTING_KEY]: origin.routingKey,
      [HEADER_ORIGINAL_USER]: origin.user,
      [HEADER_SIGNATURE]: (await MessageSigner.forDatabase(cdb)).signDeadLetter(
        tired.options.messageId,
        tired.content,
        origin,
      ),
    });
    await new Promise<void>((res, rej) =>
      ch.sendToQueue(dlq, tired.content, { ...tired.options, userId: 'guest' }, (err) => (err ? rej(err) : res())),
    );
    const refused = await syncctl([...base, 'replay', '--id', tired.options.messageId]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/already replayed 3 times/);
    expect((await ch.checkQueue(dlq)).messageCount).toBe(1);

    const noConfirm = await syncctl([...base, 'purge']);
    expect(noConfirm.code).toBe(1);
    expect(noConfirm.out).toMatch(/would delete 1 dead letter/);
    expect((await ch.checkQueue(dlq)).messageCount).toBe(1);
    expect((await syncctl([...base, 'purge', '--yes'])).code).toBe(0);
    expect((await ch.checkQueue(dlq)).messageCount).toBe(0);
  });
});
