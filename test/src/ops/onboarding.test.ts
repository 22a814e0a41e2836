import * as amqp from 'amqplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SiteStatus } from '@sitesync/central';
import { TestWorld } from '../support/harness.js';
import { amqpUrl, managementUrl } from '../support/services.js';
import { centralSnapshot, siteSnapshot } from '../support/compare.js';
import { syncctl, until } from '../support/wait.js';
import { ManagementApi } from '@sitesync/protocol';

const broker = amqpUrl();
const mgmt = managementUrl();
if (!broker || !mgmt) console.log('[sitesync tests] skipping onboarding: no RabbitMQ with the management plugin');

describe.skipIf(!broker || !mgmt)('syncctl sites add and status', () => {
  let world: TestWorld;
  let api: ManagementApi;
  beforeEach(() => {
    world = new TestWorld(broker!);
    api = ManagementApi.fromAmqpUrl(broker!, mgmt);
  });
  afterEach(async () => {
    await world.teardown();
  });

  it('onboards a site end to end (row, broker user, queue), the site syncs with its own user, and status shows it', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    const central = await world.startCentral(centralUrl);
    const cfgFile = world.writeCentralConfig(centralUrl);
    const user = `t${world.id}-site-101`;
    world.onTeardown(() => api.deleteUser(user));

    const addSite = (...args: string[]) => syncctl(['-c', cfgFile, 'sites', 'add', ...args]);
    const add = await addSite(
      '101',
      '--pipeline',
      'lab',
      '--header-table',
      'central_orders',
      '--detail-table',
      'central_results',
      '--user',
      user,
    );
    expect(add.stderr).toContain(`broker user ${user} may publish only 101.*`);
    expect(add.code).toBe(0);
    const printed = JSON.parse(add.stdout) as { siteId: number; amqp: { url: string; prefix: string } };
    expect(printed.siteId).toBe(101);
    expect(printed.amqp.prefix).toBe(world.prefix);
    expect(decodeURIComponent(new URL(printed.amqp.url).username)).toBe(user);
    expect((await api.queues()).get(world.topology.siteQueue(101))).toBeDefined();

    // A second add of the same site is refused before anything changes.
    const again = await addSite('101', '--pipeline', 'lab', '--header-table', 'x');
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('site 101 pipeline lab already exists');

    // The site runs with the printed credentials: it may publish only as 101, and that is enough.
    const siteUrl = world.dbUrl('sqlite', 'site101');
    const input = await world.prepareSite(101, siteUrl, { orders: 40 });
    const site = await world.startSite({ ...input, amqp: { url: printed.amqp.url, prefix: world.prefix } });
    const r = await site.runSession();
    expect(r.status).toBe('ok');
    expect(await centralSnapshot(central.database!, 101)).toEqual(await siteSnapshot(site.database!));

    // Site 102 is registered but never synced: stale.
    const add102 = await addSite('102', '--no-broker', '--pipeline', 'lab', '--header-table', 'central_orders');
    expect(add102.code).toBe(0);

    // The management API's figures are sampled every few seconds: wait until it has seen the consumer.
    const rows = await until('status to show the connected site', async () => {
      const status = await syncctl(['-c', cfgFile, 'status', '--json']);
      expect(status.code).toBe(0);
      const all = JSON.parse(status.stdout) as SiteStatus[];
      return all.find((x) => x.site === 101)?.consumers === 1 && all;
    });
    const s101 = rows.find((x) => x.site === 101)!;
    expect(s101).toMatchObject({ state: 'ok', headers: 40, details: 200, queued: 0, consumers: 1, deadLetters: 0 });
    expect(s101.lagSeconds).toBeLessThan(60);
    expect(rows.find((x) => x.site === 102)).toMatchObject({ state: 'stale', lagSeconds: null, consumers: null });

    const table = await syncctl(['-c', cfgFile, 'status']);
    expect(table.stdout).toMatch(/101\s+\|?\s*lab\s+\|?\s*ok/);

    // With a threshold shorter than the time since its session, 101 turns stale too.
    await new Promise((res) => setTimeout(res, 2100));
    const later = JSON.parse(
      (await syncctl(['-c', cfgFile, 'status', '--json', '--stale-after', '1'])).stdout,
    ) as SiteStatus[];
    expect(later.find((x) => x.site === 101)!.state).toBe('stale');
  });

  it('check-permissions finds a site user still allowed onto the dead-letter exchange (an older release), and --fix takes it away', async () => {
    const centralUrl = world.dbUrl('sqlite', 'central');
    await world.startCentral(centralUrl);
    const cfgFile = world.writeCentralConfig(centralUrl);
    const user = `t${world.id}-site-101`;
    world.onTeardown(() => api.deleteUser(user));
    const add = await syncctl([
      '-c',
      cfgFile,
      'sites',
      'add',
      '101',
      '--header-table',
      'central_orders',
      '--user',
      user,
    ]);
    expect(add.code, add.stderr).toBe(0);
    const siteUrl = (JSON.parse(add.stdout) as { amqp: { url: string } }).amqp.url;
    const check = (...args: string[]) => syncctl(['-c', cfgFile, 'broker', 'check-permissions', '--json', ...args]);
    const states = async (...args: string[]) => {
      const r = await check(...args);
      return {
        code: r.code,
        rows: JSON.parse(r.stdout) as Array<{ site: number; state: string; differences: string[] }>,
      };
    };
    expect(await states()).toEqual({ code: 0, rows: [expect.objectContaining({ site: 101, state: 'ok' })] });

    // What an earlier release granted: write on the dead-letter exchange too.
    const t = world.topology;
    const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await api.setPermissions(user, {
      configure: '^$',
      write: `^(${esc(t.up)}|${esc(t.dlx)})$`,
      read: `^${esc(t.siteQueue(101))}$`,
    });
    const toDlx = async () => {
      const conn = await amqp.connect(siteUrl);
      conn.on('error', () => undefined);
      try {
        const ch = await conn.createConfirmChannel();
        const refused = new Promise<string>((r) => ch.once('error', (e: Error) => r(e.message)));
        ch.publish(t.dlx, t.centralSyncQueue, Buffer.from('{}'));
        return await Promise.race([ch.waitForConfirms().then(() => 'published'), refused]);
      } finally {
        await conn.close().catch(() => undefined);
      }
    };
    expect(await toDlx()).toBe('published');
    const found = await states();
    expect(found.code).toBe(1);
    expect(found.rows).toEqual([expect.objectContaining({ site: 101, state: 'different' })]);
    expect(found.rows[0]!.differences.join(' ')).toContain(t.dlx.replace(/\./g, '\\.'));

    expect(await states('--fix')).toEqual({ code: 0, rows: [expect.objectContaining({ site: 101, state: 'fixed' })] });
    expect(await toDlx()).toMatch(/ACCESS_REFUSED/);
    expect(await states()).toEqual({ code: 0, rows: [expect.objectContaining({ site: 101, state: 'ok' })] });
    // Drain what the old permission let through, so the queue is left as found.
    const ch = await world.rawChannel();
    await ch.purgeQueue(t.deadLetterQueue(t.centralSyncQueue));
  });
});
