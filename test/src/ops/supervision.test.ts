import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCentralConfig, type CentralAgent, verifyPassword } from '@sitesync/central';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import { plantUnknownPipelineDeadLetter } from '../support/messages.js';
import {
  CHROMIUM,
  OPERATOR,
  TOKEN,
  VIEWER,
  basic,
  hasChromium,
  launchBrowser,
  openPage,
  serve,
  startSupervisedCentral as startCentral,
} from '../support/supervision-page.js';
import { REPO, SYNCCTL, until } from '../support/wait.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping the supervision page: no RabbitMQ available');
if (broker && !hasChromium) {
  console.log(
    `[sitesync tests] skipping the supervision page in a browser: ${CHROMIUM} is missing (apt-get install chromium)`,
  );
}

async function plantDeadLetter(world: TestWorld, central: CentralAgent): Promise<{ messageId: string; dlq: string }> {
  const { batch, dlq } = await plantUnknownPipelineDeadLetter(world, central.database!, 102);
  return { messageId: batch.options.messageId, dlq };
}

/** Runs `syncctl users hash-password` with `input` on its stdin. */
function hashWithSyncctl(input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = execFile(
      process.execPath,
      [join(REPO, SYNCCTL), 'users', 'hash-password'],
      { timeout: 30_000 },
      (err, stdout, stderr) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(input);
  });
}

describe('syncctl users hash-password', () => {
  it('prints a salted hash of the password on stdin that verifies it, and never the password', async () => {
    const password = 'a long enough password';
    const r = await hashWithSyncctl(`${password}\n`);
    expect(r.code).toBe(0);
    const hash = r.stdout.trim();
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await verifyPassword(password, hash)).toBe(true);
    expect(await verifyPassword(`${password}!`, hash)).toBe(false);
    expect(r.stdout + r.stderr).not.toContain(password);
    expect((await hashWithSyncctl(`${password}\n`)).stdout.trim()).not.toBe(hash);
    const short = await hashWithSyncctl('short');
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/at least 8 characters/);
  });
});

describe.skipIf(!broker)('supervision page and HTTP API', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('answers 401 to strangers, lets a viewer read but not act, and shows dead letters without patient data', async () => {
    const central = await startCentral(world);
    const { messageId } = await plantDeadLetter(world, central);
    const base = await serve(world, central);
    const get = (path: string, authorization?: string) =>
      fetch(`${base}${path}`, authorization ? { headers: { authorization } } : {});
    const post = (path: string, body: unknown, authorization: string, headers: Record<string, string> = {}) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization, ...headers },
        body: JSON.stringify(body),
      });

    const anonymous = await get('/');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm="sitesync"/);
    expect((await get('/api/status')).status).toBe(401);
    expect((await get('/api/status', basic({ ...VIEWER, password: 'wrong-password' }))).status).toBe(401);
    expect((await get('/api/status', basic({ username: 'nobody', password: VIEWER.password }))).status).toBe(401);
    expect((await get('/api/status', 'Bearer not-the-token-at-all')).status).toBe(401);
    // Unknown paths outside the page are not ours: the server's plain 404, no challenge.
    expect((await get('/favicon.ico')).status).toBe(404);

    const page = await get('/', basic(VIEWER));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('sitesync');

    const status = await get('/api/status', basic(VIEWER));
    expect(status.status).toBe(200);
    const { sites } = (await status.json()) as { sites: Array<{ site: number; state: string }> };
    expect(sites).toContainEqual(expect.objectContaining({ site: 102, state: 'stale' }));
    expect(await (await get('/api/me', basic(VIEWER))).json()).toEqual({ name: 'vera', role: 'viewer' });
    expect(await (await get('/api/me', `Bearer ${TOKEN}`)).json()).toEqual({ name: 'api', role: 'operator' });
    expect((await get('/api/sessions?limit=5', basic(VIEWER))).status).toBe(200);
    expect((await get('/api/transfers', basic(VIEWER))).status).toBe(200);

    const letters = await get('/api/dead-letters', basic(VIEWER));
    expect(letters.status).toBe(200);
    const text = await letters.text();
    expect(JSON.parse(text)).toEqual({
      deadLetters: [
        expect.objectContaining({
          messageId,
          type: 'batch',
          site: 102,
          reason: 'unknown-site',
          trust: 'signed',
          replays: 0,
        }),
      ],
      failed: [],
    });
    expect(text).not.toMatch(/Pérez|DNI1|patient/);

    const denied = await post('/api/dead-letters/replay', { messageId }, basic(VIEWER));
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { error: string }).error).toMatch(
      /vera is a viewer; this needs the operator role/,
    );
    expect((await post('/api/transfers', { guid: messageId, to: 102 }, basic(VIEWER))).status).toBe(403);

    // An operator's browser could be driven by another site: form bodies and foreign origins are refused.
    const form = await fetch(`${base}/api/dead-letters/replay`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', authorization: basic(OPERATOR) },
      body: JSON.stringify({ messageId }),
    });
    expect(form.status).toBe(415);
    const foreign = await post('/api/dead-letters/replay', { messageId }, basic(OPERATOR), {
      origin: 'https://evil.example',
    });
    expect(foreign.status).toBe(403);
    expect((await post('/api/dead-letters/replay', { messageId: 'no-such-id' }, basic(OPERATOR))).status).toBe(404);
    expect((await get('/api/dead-letters', basic(VIEWER))).status).toBe(200);
    expect(JSON.parse(await (await get('/api/dead-letters', basic(VIEWER))).text())).toMatchObject({
      deadLetters: [{ messageId }],
    });
  });

  it('is off, and says how to turn it on, when no users and no token are configured', async () => {
    const central = await world.startCentral(world.dbUrl('sqlite', 'central'));
    const base = await serve(world, central);
    for (const path of ['/', '/api/status']) {
      const r = await fetch(`${base}${path}`, { headers: { authorization: basic(OPERATOR) } });
      expect(r.status).toBe(404);
      expect(await r.text()).toMatch(/off: configure users .* or apiToken/);
    }
    expect(parseCentralConfig({ amqp: { url: broker }, db: { url: 'sqlite::memory:' } }).users).toEqual([]);
    expect(() =>
      parseCentralConfig({
        amqp: { url: broker },
        db: { url: 'sqlite::memory:' },
        users: [{ name: 'x', passwordHash: 'plain-text-password', role: 'viewer' }],
      }),
    ).toThrow(/users\.0\.passwordHash.*syncctl users hash-password/);
  });

  it.skipIf(!hasChromium)(
    'in a browser, an operator sees the synced site and the dead letter, and Replay applies it',
    async () => {
      const central = await startCentral(world);
      const cdb = central.database!;
      await world.registerSite(cdb, 101);
      const site = await world.startSite(
        await world.prepareSite(101, world.dbUrl('sqlite', 'site101'), { orders: 12 }),
      );
      expect((await site.runSession()).status).toBe('ok');
      const { messageId, dlq } = await plantDeadLetter(world, central);
      const base = await serve(world, central);

      const browser = await launchBrowser(world);
      const problems: string[] = [];
      const open = (who: typeof VIEWER) => openPage(browser, base, who, problems);
      const row = `#dead-letters tr[data-message-id="${messageId}"]`;

      // A viewer sees the dead letter but gets no Replay button.
      const viewer = await open(VIEWER);
      await viewer.waitForSelector(row);
      expect(await viewer.textContent('#who')).toBe('vera (viewer)');
      expect(await viewer.locator(`${row} button`).count()).toBe(0);
      expect(await viewer.isHidden('#move')).toBe(true);

      const page = await open(OPERATOR);
      await page.waitForSelector('#sites tr[data-site="101"][data-state="ok"]');
      expect(await page.textContent('#sites tr[data-site="101"] .badge')).toBe('ok');
      await page.waitForSelector(`${row} button`);
      expect(await page.textContent(row)).toContain('unknown-site');
      expect(await page.textContent('#who')).toBe('olga (operator)');
      expect(await page.textContent('#sessions tbody')).toContain('complete');
      expect(await page.content()).not.toMatch(/Pérez|DNI1/);
      // The management API samples consumers every few seconds: the running site agent shows up as connected.
      await page.waitForSelector('#sites tr[data-site="101"] .badge.connected', { timeout: 30_000 });
      const shot =
        process.env.SITESYNC_UPDATE_SCREENSHOT === '1'
          ? join(REPO, 'docs/supervision.png')
          : join(world.dir, 'supervision.png');
      await page.screenshot({ path: shot, fullPage: true });

      // The operator fixes the cause, then clicks Replay: the batch is merged and the letter leaves the page.
      await world.registerSite(cdb, 102);
      await page.click(`${row} button`);
      await page.waitForSelector(row, { state: 'detached', timeout: 15_000 });
      expect(await page.textContent('#notice')).toContain(`Replayed ${messageId}`);
      await until('the replayed batch to be merged', async () => {
        const r = await cdb.query(`SELECT order_id FROM central_orders WHERE id_efector = 102`);
        return r.length === 1;
      });
      const ch = await world.rawChannel();
      expect((await ch.checkQueue(dlq)).messageCount).toBe(0);
      expect(await page.textContent('#dead-letters tbody')).toContain('No dead letters.');
      expect(problems).toEqual([]);
    },
    120_000,
  );
});
