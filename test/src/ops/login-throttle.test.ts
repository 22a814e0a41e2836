import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl } from '../support/services.js';
import { basic, OPERATOR, serve, startSupervisedCentral, TOKEN, VIEWER } from '../support/supervision-page.js';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping login throttling: no RabbitMQ available');

const WRONG = { ...VIEWER, password: 'not-her-password' };
// Small delays so that the lockouts run out within the test: 0.5 s, 1 s, then 2 s at most.
const THROTTLE = { freeFailures: 3, baseDelaySeconds: 0.5, maxDelaySeconds: 2 };

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: string;
}

/** A GET from a chosen loopback address (all of 127.0.0.0/8 is local), so that clients differ by address. */
function get(base: string, path: string, authorization: string, from = '127.0.0.1', extra = {}): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: hostname, port, path, localAddress: from, agent: false, headers: { authorization, ...extra } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          const retryAfter = res.headers['retry-after'];
          resolve({ status: res.statusCode!, retryAfter, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function errorOf(a: Answer): string {
  return (JSON.parse(a.body) as { error: string }).error;
}

/** Retries `send` until it is no longer refused with 429; returns that answer. */
async function afterLockout(send: () => Promise<Answer>, timeoutMs = 10_000): Promise<Answer> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const a = await send();
    if (a.status !== 429 || Date.now() > end) return a;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The central's page and API, its login throttle set to THROTTLE (or `overrides`); returns the base URL. */
async function serveCentral(world: TestWorld, overrides: Record<string, unknown> = {}): Promise<string> {
  const central = await startSupervisedCentral(world, undefined, { loginThrottle: THROTTLE, ...overrides });
  return serve(world, central);
}

describe.skipIf(!broker)('login throttling of the supervision page and HTTP API', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('answers password guessing with growing 429 lockouts that even the right password waits out', async () => {
    const base = await serveCentral(world);
    const status = (who: { username: string; password: string }, from?: string) =>
      get(base, '/api/status', basic(who), from);

    // 50 different wrong passwords at once: a few are checked, the rest are refused unchecked with 429.
    const guesses = Array.from({ length: 50 }, (_, i) => ({ ...VIEWER, password: `guess-${i}` }));
    const burst = await Promise.all(guesses.map((g) => status(g)));
    const refused = burst.filter((a) => a.status === 429);
    const checked = burst.filter((a) => a.status === 401);
    expect(checked.length + refused.length).toBe(50);
    // Three free failures; one more only if a 0.5 s lockout ran out during the burst.
    expect(checked.length).toBeGreaterThanOrEqual(THROTTLE.freeFailures);
    expect(checked.length).toBeLessThanOrEqual(THROTTLE.freeFailures + 1);
    for (const a of refused) {
      expect(a.retryAfter).toBe('1');
      expect(JSON.parse(a.body)).toEqual({
        error: 'too many failed logins for user "vera" and from address 127.0.0.1; retry in 1 s',
        retryAfterSeconds: 1,
      });
    }

    // Each further failure, once a lockout has run out, doubles the next one, up to 2 s.
    const retryAfter: number[] = [];
    for (let round = 0; round < 3; round++) {
      expect((await afterLockout(() => status(WRONG))).status).toBe(401);
      const locked = await status(WRONG);
      expect(locked.status).toBe(429);
      retryAfter.push(Number(locked.retryAfter));
    }
    expect(retryAfter.slice(1)).toEqual([2, 2]);
    expect(retryAfter[0]).toBeLessThanOrEqual(2);

    // Locked out: the right password is refused too, without being checked.
    const right = await status(VIEWER);
    expect(right.status).toBe(429);
    expect(right.retryAfter).toBe('2');
    // Another user from another address is not held up; from the locked address, or as the locked user, they are.
    expect((await status(OPERATOR, '127.0.0.2')).status).toBe(200);
    const sameAddress = await status(OPERATOR);
    expect(sameAddress.status).toBe(429);
    expect(errorOf(sameAddress)).toMatch(/^too many failed logins from address 127\.0\.0\.1; retry in [12] s$/);
    const sameUser = await status(VIEWER, '127.0.0.3');
    expect(sameUser.status).toBe(429);
    expect(errorOf(sameUser)).toMatch(/^too many failed logins for user "vera"; retry in [12] s$/);

    // Once the lockout runs out the right password is accepted, and vera starts again with free failures.
    const started = Date.now();
    expect((await afterLockout(() => status(VIEWER))).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThan(1000);
    expect((await status(WRONG)).status).toBe(401);
    expect((await status(VIEWER)).status).toBe(200);
    expect((await status(OPERATOR)).status).toBe(200);
  });

  it('counts bearer token guesses and page logins too, and believes X-Forwarded-For only from a trusted proxy', async () => {
    // Nothing here waits a lockout out: long enough ones that none runs out while the test looks at it.
    const throttle = { ...THROTTLE, baseDelaySeconds: 2, maxDelaySeconds: 2, trustedProxies: ['127.0.0.4'] };
    const base = await serveCentral(world, { loginThrottle: throttle });

    const tokens = [];
    for (let i = 0; i < 5; i++) tokens.push(await get(base, '/api/me', `Bearer wrong-token-number-${i}`, '127.0.0.2'));
    expect(tokens.map((a) => a.status)).toEqual([401, 401, 401, 429, 429]);
    expect(tokens[3]!.retryAfter).toBe('2');
    expect(errorOf(tokens[3]!)).toBe('too many failed logins for user "api" and from address 127.0.0.2; retry in 2 s');
    expect((await get(base, '/api/me', `Bearer ${TOKEN}`, '127.0.0.3')).status).toBe(429);
    // The page answers a browser in plain text.
    const page = await get(base, '/', basic(WRONG), '127.0.0.2');
    expect(page.status).toBe(429);
    expect(page.retryAfter).toBe('2');
    expect(page.body).toBe('too many failed logins from address 127.0.0.2; retry in 2 s\n');
    // A request without credentials (a browser's first) is not a failed login.
    for (let i = 0; i < 5; i++) expect((await get(base, '/api/me', '', '127.0.0.5')).status).toBe(401);
    expect((await get(base, '/api/me', basic(OPERATOR), '127.0.0.5')).status).toBe(200);

    // The page polls several endpoints at once with the same header: that is one login, not several.
    for (let i = 0; i < 2; i++) {
      expect((await get(base, '/api/me', basic({ ...OPERATOR, password: `typo-${i}` }), '127.0.0.6')).status).toBe(401);
    }
    const sameHeader = basic(OPERATOR).replace(/^Basic/, 'basic'); // not in the cache yet
    const polls = await Promise.all(Array.from({ length: 10 }, () => get(base, '/api/me', sameHeader, '127.0.0.6')));
    expect(polls.map((a) => a.status)).toEqual(Array(10).fill(200));

    // Behind the trusted proxy each client is its own address; a client's own X-Forwarded-For is not believed.
    const viaProxy = (client: string, who = WRONG) =>
      get(base, '/api/status', basic(who), '127.0.0.4', { 'x-forwarded-for': client });
    // Unknown user names count as much as known ones.
    const mallory = { username: 'mallory', password: 'guess' };
    for (let i = 0; i < 3; i++) expect((await viaProxy('198.51.100.7', mallory)).status).toBe(401);
    const locked = await viaProxy('198.51.100.7', VIEWER);
    expect(errorOf(locked)).toBe('too many failed logins from address 198.51.100.7; retry in 2 s');
    expect((await viaProxy('198.51.100.8', VIEWER)).status).toBe(200);
    const forged = await get(base, '/api/status', basic(VIEWER), '127.0.0.2', { 'x-forwarded-for': '198.51.100.9' });
    expect(errorOf(forged)).toMatch(/from address 127\.0\.0\.2;/);
  });
});
