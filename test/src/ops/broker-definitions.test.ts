import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Topology,
  brokerDefinitions,
  rabbitPasswordHash,
  siteUserName,
  type BrokerDefinitions,
  ManagementApi,
} from '@sitesync/protocol';
import { amqpUrl, managementUrl } from '../support/services.js';
import { REPO } from '../support/wait.js';

const DEFINITIONS = join(REPO, 'deploy/rabbitmq/definitions.json');
const DEMO_PASSWORDS = JSON.parse(readFileSync(join(REPO, 'deploy/rabbitmq/demo-passwords.json'), 'utf8')) as Record<
  string,
  string
>;

function verifies(hash: string, password: string): boolean {
  const raw = Buffer.from(hash, 'base64');
  const salt = raw.subarray(0, 4);
  return createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from(password)]))
    .digest()
    .equals(raw.subarray(4));
}

function withoutHashes(d: BrokerDefinitions): unknown {
  return { ...d, users: d.users.map((u) => ({ ...u, password_hash: '<hash>' })) };
}

describe('deploy/rabbitmq/definitions.json', () => {
  it('is what the topology in code generates (regenerate with syncctl broker definitions)', () => {
    const committed = JSON.parse(readFileSync(DEFINITIONS, 'utf8')) as BrokerDefinitions;
    const user = (name: string) => ({ name, passwordHash: rabbitPasswordHash(DEMO_PASSWORDS[name]!) });
    const generated = brokerDefinitions(new Topology(), {
      vhost: 'sitesync',
      central: user('sitesync-central'),
      admin: user('sitesync-admin'),
      sites: [101, 102].map((id) => ({ siteId: id, user: user(siteUserName(id)) })),
    });
    expect(withoutHashes(committed)).toEqual(withoutHashes(generated));
    for (const u of committed.users) expect(verifies(u.password_hash, DEMO_PASSWORDS[u.name]!), u.name).toBe(true);
  });
});

const mgmt = managementUrl();
const broker = amqpUrl();
if (!mgmt || !broker)
  console.log('[sitesync tests] skipping broker permission tests: no RabbitMQ with the management plugin');

describe.skipIf(!mgmt || !broker)('per-site broker users (definitions loaded into the local broker)', () => {
  const id = randomBytes(4).toString('hex');
  const vhost = `t${id}`;
  const names = { central: `t${id}-central`, s101: `t${id}-site-101`, s102: `t${id}-site-102` };
  const password = 'a-test-password';
  const topology = new Topology();
  let api: ManagementApi;
  const host = new URL(broker ?? 'amqp://127.0.0.1').host;
  const urlOf = (user: string) => `amqp://${user}:${password}@${host}/${vhost}`;

  beforeAll(async () => {
    api = ManagementApi.fromAmqpUrl(broker!, mgmt);
    const hash = rabbitPasswordHash(password);
    const defs = brokerDefinitions(topology, {
      vhost,
      central: { name: names.central, passwordHash: hash },
      sites: [
        { siteId: 101, user: { name: names.s101, passwordHash: hash } },
        { siteId: 102, user: { name: names.s102, passwordHash: hash } },
      ],
    });
    await api.importDefinitions(defs);
  });

  afterAll(async () => {
    if (!api) return;
    await api.deleteVhost(vhost);
    for (const u of Object.values(names)) await api.deleteUser(u);
  });

  /** Runs `fn` on a fresh confirm channel of `user`; resolves with the broker's refusal, if any. */
  async function attempt(user: string, fn: (ch: amqp.ConfirmChannel) => Promise<unknown>): Promise<string> {
    const conn = await amqp.connect(urlOf(user));
    conn.on('error', () => undefined);
    try {
      const ch = await conn.createConfirmChannel();
      const closed = new Promise<string>((r) => ch.once('error', (e: Error) => r(e.message)));
      const outcome = await Promise.race([
        fn(ch).then(
          () => 'ok',
          (e: Error) => e.message,
        ),
        closed,
      ]);
      return outcome === 'ok'
        ? await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r('ok'), 300))])
        : outcome;
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  const publish = (key: string) => async (ch: amqp.ConfirmChannel) => {
    ch.publish(topology.up, key, Buffer.from('{}'), { persistent: true });
    await ch.waitForConfirms();
  };

  it('the definitions create every queue, and a site finds its own without declaring anything', async () => {
    const queues = await api.queues(vhost);
    for (const q of [
      topology.centralSyncQueue,
      topology.centralInterventionQueue,
      ...topology.siteQueues(101),
      ...topology.siteQueues(102),
    ])
      expect(queues.has(q), q).toBe(true);
    const conn = await amqp.connect(urlOf(names.s101));
    try {
      expect(await topology.ensureSite(() => conn.createChannel(), 101)).toBe('present');
    } finally {
      await conn.close();
    }
  });

  it("site 101 publishes its own routing keys, and is refused 102's", async () => {
    expect(await attempt(names.s101, publish('101.batch'))).toBe('ok');
    expect(await attempt(names.s101, publish('102.batch'))).toMatch(/ACCESS_REFUSED/);
    expect(await attempt(names.s101, publish('101x.batch'))).toMatch(/ACCESS_REFUSED/);
    expect(await attempt(names.s102, publish('102.session.started'))).toBe('ok');
    const depth = await attempt(names.central, async (ch) => {
      const q = await ch.checkQueue(topology.centralSyncQueue);
      if (q.messageCount !== 2) throw new Error(`central.sync holds ${q.messageCount}, expected 2`);
    });
    expect(depth).toBe('ok');
  });

  it('a site user is refused on the dead-letter exchange, with any routing key: it cannot plant a dead letter', async () => {
    const toDlx = (key: string) => async (ch: amqp.ConfirmChannel) => {
      ch.publish(topology.dlx, key, Buffer.from('{}'), {
        persistent: true,
        headers: { 'x-sitesync-reason': 'schema' },
      });
      await ch.waitForConfirms();
    };
    for (const key of [
      topology.centralSyncQueue,
      topology.centralInterventionQueue,
      topology.siteQueue(102),
      topology.siteQueue(101),
      topology.siteRejectsRoute(102),
      topology.siteRejectsRoute(101),
    ]) {
      expect(await attempt(names.s101, toDlx(key)), key).toMatch(/ACCESS_REFUSED/);
    }
    // Nor any other exchange but its own up exchange (the down exchange feeds every site's queue).
    expect(
      await attempt(names.s101, async (ch) => {
        ch.publish(topology.down, '102.batch.ack', Buffer.from('{}'), { persistent: true });
        await ch.waitForConfirms();
      }),
    ).toMatch(/ACCESS_REFUSED/);
    const api2 = await api.queues(vhost);
    for (const q of [topology.siteRejectsQueue(101), topology.siteRejectsQueue(102)]) {
      expect(api2.get(q)?.messages ?? 0, q).toBe(0);
    }
  });

  it("site 101 reads its own queue, not 102's, and may not create or delete anything", async () => {
    expect(await attempt(names.s101, (ch) => ch.consume(topology.siteQueue(101), () => undefined))).toBe('ok');
    expect(await attempt(names.s101, (ch) => ch.consume(topology.siteQueue(102), () => undefined))).toMatch(
      /ACCESS_REFUSED/,
    );
    expect(await attempt(names.s101, (ch) => ch.consume(topology.centralSyncQueue, () => undefined))).toMatch(
      /ACCESS_REFUSED/,
    );
    expect(await attempt(names.s101, (ch) => ch.assertQueue('mine', { durable: true }))).toMatch(/ACCESS_REFUSED/);
    expect(await attempt(names.s101, (ch) => ch.deleteQueue(topology.siteQueue(102)))).toMatch(/ACCESS_REFUSED/);
  });
});

describe.skipIf(!broker)('declaring the topology over an older one', () => {
  it('leaves queues that exist with other arguments alone (a quorum dead-letter queue of an older release) and starts', async () => {
    const { TestWorld } = await import('../support/harness.js');
    const world = new TestWorld(broker!);
    try {
      const ch = await world.rawChannel();
      const dlq = world.topology.deadLetterQueue(world.topology.centralSyncQueue);
      await ch.assertQueue(dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
      expect(central.state).toBe('RUNNING');
      // A plain declare with today's arguments is what would have failed.
      const strict = await world.rawChannel();
      strict.on('error', () => undefined);
      await expect(world.topology.declareCentral(strict)).rejects.toThrow(/PRECONDITION_FAILED/);
    } finally {
      await world.teardown();
    }
  });
});
