import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADER_REASON, HEADER_SITE, encodeMessage } from '@sitesync/protocol';
import { registerSite } from '@sitesync/central';
import type { Database } from '@sitesync/db';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { changeResult } from '../support/lab-data.js';
import { LAB_SHAPE, declareRejectQueues, labBatch, labUpsert, publishRaw } from '../support/messages.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import {
  OPERATOR,
  VIEWER,
  hasChromium,
  launchBrowser,
  openPage,
  serve,
  startSupervisedCentral,
} from '../support/supervision-page.js';
import { REPO, until } from '../support/wait.js';

const broker = amqpUrl();
const centralKind = postgresUrl() ? 'postgres' : 'sqlite';
const updateScreenshots = process.env.SITESYNC_UPDATE_SCREENSHOT === '1';

/** Where a test's screenshot goes: docs/ when asked to update them, else the test's own folder. */
function screenshotPath(world: TestWorld, name: string): string {
  return updateScreenshots ? join(REPO, 'docs', name) : join(world.dir, name);
}

interface SessionRow {
  session_id: string;
  id_efector: unknown;
  status: string;
  expected_batches: unknown;
  expected_headers: unknown;
  expected_details: unknown;
  expected_deletions: unknown;
  site_started_at: unknown;
  acked_at: unknown;
}

async function sessionsOf(db: Database, site: number): Promise<SessionRow[]> {
  return db.query<SessionRow>(
    `SELECT session_id, id_efector, status, expected_batches, expected_headers, expected_details, expected_deletions, ` +
      `site_started_at, acked_at FROM sync_session WHERE id_efector = ?`,
    [site],
  );
}

const rowsOf = (s: SessionRow) =>
  Number(s.expected_headers ?? 0) + Number(s.expected_details ?? 0) + Number(s.expected_deletions ?? 0);
const sentNothing = (s: SessionRow) => s.status === 'complete' && Number(s.expected_batches) === 0 && rowsOf(s) === 0;
const time = (v: unknown) => (v instanceof Date ? v : new Date(String(v))).getTime();

describe.skipIf(!broker || !hasChromium)('supervision page that does not drown (headless Chromium)', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('folds the sessions that sent nothing into one line per site, keeps the others listed, and charts each site', async () => {
    const central = await startSupervisedCentral(world, world.dbUrl(centralKind, 'central'));
    const cdb = central.database!;
    for (const id of [101, 103, 104]) await world.registerSite(cdb, id);
    const site101Db = world.dbUrl('sqlite', 'site101');
    const site101 = await world.startSite(await world.prepareSite(101, site101Db, { orders: 3 }));
    const site103 = await world.startSite(
      await world.prepareSite(103, world.dbUrl('sqlite', 'site103'), { orders: 2 }),
    );
    const EMPTY = { 101: 6, 103: 4 } as const;
    expect((await site101.runSession()).status).toBe('ok');
    expect((await site103.runSession()).status).toBe('ok');
    for (let i = 0; i < EMPTY[101]; i++) expect((await site101.runSession()).status).toBe('ok');
    for (let i = 0; i < EMPTY[103]; i++) expect((await site103.runSession()).status).toBe('ok');
    // A change after the empty sessions: the session that sends it is newer than all of them.
    await changeResult(await world.open(site101Db, 'site'), 1, 'changed');
    expect((await site101.runSession()).status).toBe('ok');

    const byId = new Map<number, SessionRow[]>();
    for (const id of [101, 103, 104]) byId.set(id, await sessionsOf(cdb, id));
    expect(byId.get(101)!.filter(sentNothing)).toHaveLength(EMPTY[101]);
    expect(byId.get(103)!.filter(sentNothing)).toHaveLength(EMPTY[103]);
    const sentSomething = [...byId.values()].flat().filter((s) => !sentNothing(s));
    expect(sentSomething).toHaveLength(3);

    const base = await serve(world, central);
    const browser = await launchBrowser(world);
    const problems: string[] = [];
    const page = await openPage(browser, base, VIEWER, problems);
    await page.waitForSelector('#sessions tr.fold');

    // One folded line per site with empty sessions; the sessions that sent something are listed.
    expect(await page.locator('#sessions tr.fold').count()).toBe(2);
    for (const site of [101, 103] as const) {
      const fold = page.locator(`#sessions tr.fold[data-empty-site="${site}"]`);
      expect(await fold.getAttribute('data-count')).toBe(String(EMPTY[site]));
      expect(await fold.locator('summary').textContent()).toMatch(
        new RegExp(`^${EMPTY[site]} empty sessions of site ${site}, last at \\S`),
      );
    }
    expect(await page.locator('#sessions tr[data-session]:visible').count()).toBe(sentSomething.length);
    for (const s of sentSomething)
      expect(await page.isVisible(`#sessions tr[data-session="${s.session_id}"]`)).toBe(true);
    const anEmpty = byId.get(101)!.find(sentNothing)!;
    expect(await page.isVisible(`#sessions tr[data-session="${anEmpty.session_id}"]`)).toBe(false);
    await page.click('#sessions tr.fold[data-empty-site="101"] summary');
    await page.waitForSelector(`#sessions tr[data-session="${anEmpty.session_id}"]`);
    expect(await page.locator('#sessions tr[data-session]:visible').count()).toBe(sentSomething.length + EMPTY[101]);
    // Opened, it stays open across the page's refresh.
    await until('the page to have refreshed', async () => (await page.textContent('#updated'))?.startsWith('updated'));
    const refreshed = await page.textContent('#updated');
    await until('the next refresh', async () => (await page.textContent('#updated')) !== refreshed);
    expect(await page.isVisible(`#sessions tr[data-session="${anEmpty.session_id}"]`)).toBe(true);

    // Each site's chart: one bar per session with its rows, one ack point per complete session
    // with the lag it left (the ack's time less the session's start).
    for (const site of [101, 103]) {
      const sessions = byId.get(site)!;
      const svg = page.locator(`#activity figure[data-site="${site}"] svg[role="img"]`);
      await svg.waitFor();
      const bars = await svg
        .locator('rect.bar')
        .evaluateAll((els) => els.map((e) => [e.getAttribute('data-session'), Number(e.getAttribute('data-rows'))]));
      expect(bars.sort()).toEqual(sessions.map((s) => [s.session_id, rowsOf(s)]).sort());
      const acks = await svg
        .locator('circle.ack')
        .evaluateAll((els) =>
          els.map((e) => [e.getAttribute('data-session'), Number(e.getAttribute('data-lag-seconds'))]),
        );
      const complete = sessions.filter((s) => s.status === 'complete');
      expect(acks.sort()).toEqual(
        complete
          .map((s) => [s.session_id, Math.max(0, Math.round((time(s.acked_at) - time(s.site_started_at)) / 1000))])
          .sort(),
      );
      const total = sessions.reduce((n, s) => n + rowsOf(s), 0);
      const title = await svg.locator('title').first().textContent();
      expect(title).toContain(`Site ${site}, last 24 hours: ${sessions.length} sessions, ${total} rows`);
      expect(title).toMatch(/lag now \d+s, at most \d+s/);
      expect(await svg.getAttribute('aria-labelledby')).toBe(`activity-${site}-title`);
    }
    const quiet = page.locator('#activity figure[data-site="104"] svg');
    expect(await quiet.locator('rect.bar').count()).toBe(0);
    expect(await quiet.textContent()).toContain('No sessions in the last 24 hours');
    expect(await quiet.locator('title').first().textContent()).toContain('never synced completely');

    await page.locator('#activity').screenshot({ path: screenshotPath(world, 'supervision-activity.png') });
    await page.locator('#sessions').screenshot({ path: screenshotPath(world, 'supervision-sessions.png') });
    expect(problems).toEqual([]);
  }, 120_000);

  it('groups dead letters by site and reason; one Replay replays the verified ones of that group only and keeps what no queue takes', async () => {
    const central = await startSupervisedCentral(world);
    const cdb = central.database!;
    const ch = await world.rawChannel();
    // Site 102 knows only pipeline "other": its lab batches are dead-lettered as unknown-site.
    // Site 105 knows "lab": a batch with a wrong row hash is row-hash-mismatch, one of a
    // pipeline it does not know is unknown-site.
    await registerSite(cdb, { siteId: 102, pipeline: 'other', headerTable: 'x_orders', brokerUser: 'guest' });
    await world.registerSite(cdb, 105);
    for (const site of [102, 105]) {
      world.siteConfig(site, world.dbUrl('sqlite', `site${site}`)); // so that teardown removes its queues
      await world.topology.declareSite(ch, site);
    }
    const [rejects102, rejects105] = await declareRejectQueues(ch, world.topology, [102, 105]);
    const send = (site: number, body: ReturnType<typeof labBatch>) =>
      publishRaw(ch, world.topology.up, encodeMessage('batch', body, { siteId: site, appId: 'test', userId: 'guest' }));
    await send(102, labBatch(102, [{ orderId: 21 }]));
    await send(102, labBatch(102, [{ orderId: 22 }]));
    const wrongHash = labBatch(105, [{ orderId: 51 }]);
    wrongHash.changes[0] = { ...labUpsert({ orderId: 51 }), hash: labUpsert({ orderId: 51, value: 'other' }).hash };
    await send(105, wrongHash);
    await send(105, { ...labBatch(105, [{ orderId: 52 }]), pipeline: { ...LAB_SHAPE, name: 'unknown_pipeline' } });
    // A message anyone could have put in 102's queue, claiming site 102 and the same reason: unverified.
    ch.sendToQueue(rejects102!, Buffer.from('{}'), {
      messageId: randomUUID(),
      type: 'batch',
      persistent: true,
      headers: { [HEADER_SITE]: 102, [HEADER_REASON]: 'unknown-site' },
    });
    await ch.waitForConfirms();
    await until('the dead letters', async () => {
      const [a, b] = [await ch.checkQueue(rejects102!), await ch.checkQueue(rejects105!)];
      return a.messageCount === 3 && b.messageCount === 2;
    });

    // The page lists a queue by taking its messages unacknowledged for a moment (scanQueue), and a
    // count of ready messages taken meanwhile misses them: the counts of the two queues while no
    // refresh of the page holds them (the same counts twice in a row, 150 ms apart).
    const readyCounts = async () => {
      const read = async () => [
        (await ch.checkQueue(rejects102!)).messageCount,
        (await ch.checkQueue(rejects105!)).messageCount,
      ];
      return until('the dead-letter counts to settle', async () => {
        const first = await read();
        await new Promise((r) => setTimeout(r, 150));
        const again = await read();
        return first.join() === again.join() && again;
      });
    };
    const base = await serve(world, central);
    const browser = await launchBrowser(world);
    const problems: string[] = [];
    const group = (site: number, reason: string) =>
      `#dead-letters tr.group[data-group-site="${site}"][data-group-reason="${reason}"]`;

    const viewer = await openPage(browser, base, VIEWER, problems);
    await viewer.waitForSelector(group(102, 'unknown-site'));
    expect(await viewer.locator(`${group(102, 'unknown-site')} button`).count()).toBe(0);

    const page = await openPage(browser, base, OPERATOR, problems);
    await page.waitForSelector(`${group(102, 'unknown-site')} button`);
    expect(await page.locator('#dead-letters tr.group').count()).toBe(3);
    const counts = async () =>
      Object.fromEntries(
        await page
          .locator('#dead-letters tr.group')
          .evaluateAll((els) =>
            els.map((e) => [
              `${e.getAttribute('data-group-site')} ${e.getAttribute('data-group-reason')}`,
              Number(e.getAttribute('data-count')),
            ]),
          ),
      );
    expect(await counts()).toEqual({
      '102 unknown-site': 3,
      '105 row-hash-mismatch': 1,
      '105 unknown-site': 1,
    });
    const g102 = page.locator(group(102, 'unknown-site'));
    expect(await g102.locator('td.count').textContent()).toBe('3');
    expect(await g102.textContent()).toContain('2 verified');
    expect(await g102.textContent()).toContain('1 unverified');
    expect(await page.textContent(group(105, 'row-hash-mismatch'))).toContain('1 verified');
    if (updateScreenshots) {
      await page.locator('#dead-letters').screenshot({ path: screenshotPath(world, 'supervision-dead-letters.png') });
    }

    // The operator registers the missing pipeline, then replays the group with one click.
    await world.registerSite(cdb, 102);
    await page.click(`${group(102, 'unknown-site')} button`);
    const notice = await until('the replay to be reported', async () => {
      const text = (await page.textContent('#notice')) ?? '';
      return /replayed \d+, kept/.test(text) && text;
    });
    expect(notice).toMatch(/^Site 102, unknown-site: replayed 2, kept 1 \(1 unverified: /);
    await until('the replayed batches to be merged', async () => {
      const r = await cdb.query(`SELECT order_id FROM central_orders WHERE id_efector = 102 ORDER BY order_id`);
      return r.length === 2;
    });
    // The unverified one stays, alone in its group and without a Replay button; the other groups are untouched.
    expect(await readyCounts()).toEqual([1, 2]);
    await page.waitForSelector(`${group(102, 'unknown-site')}[data-count="1"]`);
    expect(await page.locator(`${group(102, 'unknown-site')} button`).count()).toBe(0);
    expect(await counts()).toEqual({
      '102 unknown-site': 1,
      '105 row-hash-mismatch': 1,
      '105 unknown-site': 1,
    });
    expect(await cdb.query(`SELECT order_id FROM central_orders WHERE id_efector = 105`)).toEqual([]);

    // A group replay no queue takes (the central's batch binding is gone) loses nothing: it is kept, and said so.
    const t = world.topology;
    await ch.unbindQueue(t.centralSyncQueue, t.up, '*.batch');
    await page.click(`${group(105, 'unknown-site')} button`);
    const unroutable = await until('the unroutable replay to be reported', async () => {
      const text = (await page.textContent('#notice')) ?? '';
      return text.startsWith('Site 105') && text;
    });
    expect(unroutable).toMatch(/^Site 105, unknown-site: replayed 0, kept 1 \(1 no queue is bound to .*: kept in /);
    expect((await readyCounts())[1]).toBe(2);
    await page.waitForSelector(`${group(105, 'unknown-site')}[data-count="1"] button`);
    await ch.bindQueue(t.centralSyncQueue, t.up, '*.batch');
    expect(problems).toEqual([]);
  }, 120_000);
});
