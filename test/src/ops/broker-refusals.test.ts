import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManagementApi, Topology, brokerDefinitions, rabbitPasswordHash } from '@sitesync/protocol';
import { type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, managementUrl } from '../support/services.js';
import { REPO, until } from '../support/wait.js';

const broker = amqpUrl();
const mgmt = managementUrl();
if (!broker) console.log('[sitesync tests] skipping broker refusal tests: no RabbitMQ available');
if (broker && !mgmt) console.log('[sitesync tests] skipping the broker user tests: no RabbitMQ management plugin');

const BINS = {
  central: join(REPO, 'agents/central/bin/sync-central.js'),
  peripheral: join(REPO, 'agents/peripheral/bin/sync-peripheral.js'),
};

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** An agent bin run with a config file: its output so far, and its exit code once it exited. */
interface Agent {
  output(): string;
  /** The exit code (null when killed by a signal); pending while it runs. */
  exited: Promise<number | null>;
  exitCode(): number | null | undefined;
  kill(): void;
}

function runAgent(which: keyof typeof BINS, cfgFile: string): Agent {
  const child = spawn(process.execPath, [BINS[which], 'run', '-c', cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (c, signal) => {
      code = signal ? null : c;
      r(code);
    }),
  );
  return { output: () => out, exited, exitCode: () => code, kill: () => child.kill('SIGKILL') };
}

/** Resolves with the exit code, or fails when the agent still runs after `ms`. */
function exitWithin(a: Agent, ms: number): Promise<number | null> {
  return Promise.race([
    a.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${a.output().slice(-2000)}`)), ms).unref(),
    ),
  ]);
}

/** The `msg` of each JSON log line. */
function logMessages(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => String((JSON.parse(l) as { msg?: unknown }).msg));
}

async function healthz(port: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
    return res.status;
  } catch {
    return 0;
  }
}

/** `amqp://user:password@<the test broker's host and port>/vhost` */
function brokerUrl(user: string, password: string, vhost?: string): string {
  const u = new URL(broker!);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  if (vhost !== undefined) u.pathname = `/${encodeURIComponent(vhost)}`;
  return u.toString();
}

describe.skipIf(!broker)('the broker refuses an agent, or is not there', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  /** A peripheral config file for `siteId` with broker settings `amqp`; the site database is created and seeded. */
  async function siteConfigFile(
    siteId: number,
    amqp: { url: string; prefix?: string },
    extra: Record<string, unknown> = {},
  ): Promise<string> {
    const input = await world.prepareSite(siteId, world.dbUrl('sqlite', `site${siteId}`), { orders: 5 });
    const file = join(world.dir, `site${siteId}.json`);
    writeFileSync(file, JSON.stringify({ ...input, amqp: { ...input.amqp, ...amqp }, logLevel: 'info', ...extra }));
    return file;
  }

  function centralConfigFile(url: string, extra: Record<string, unknown> = {}): string {
    const file = join(world.dir, 'central.json');
    writeFileSync(
      file,
      JSON.stringify({
        amqp: { url, prefix: world.prefix },
        db: { url: world.dbUrl('sqlite', 'central') },
        logLevel: 'info',
        ...extra,
      }),
    );
    return file;
  }

  it.skipIf(!mgmt)(
    'a wrong broker password stops either agent at once, non-zero, naming the user and amqp.url (never the password)',
    async () => {
      const api = ManagementApi.fromAmqpUrl(broker!, mgmt);
      const user = `t${world.id}-refused`;
      await api.putUser(user, 'the-right-password');
      try {
        await api.setPermissions(user, { configure: '.*', write: '.*', read: '.*' }, '/');
        const url = brokerUrl(user, 'a-wrong-password');
        const agents = [
          runAgent('central', centralConfigFile(url)),
          runAgent('peripheral', await siteConfigFile(101, { url })),
        ];
        try {
          for (const a of agents) {
            // 2: a configuration error (agent-process.ts); a refused user is one.
            expect(await exitWithin(a, 8000), a.output()).toBe(2);
            const out = a.output();
            expect(out).toMatch(new RegExp(`refused the credentials of user ${user}`));
            expect(out).toMatch(/amqp\.url/);
            expect(out).toMatch(/SYNC_AMQP_URL/);
            expect(out).not.toMatch(/a-wrong-password/);
            expect(out).not.toMatch(/unreachable/);
          }
        } finally {
          for (const a of agents) a.kill();
        }
      } finally {
        await api.deleteUser(user);
      }
    },
  );

  it('a virtual host the broker refuses stops the central, non-zero, naming it and amqp.url', async () => {
    const u = new URL(broker!);
    const vhost = `t${world.id}-no-such-vhost`;
    const central = runAgent(
      'central',
      centralConfigFile(brokerUrl(decodeURIComponent(u.username), decodeURIComponent(u.password), vhost)),
    );
    try {
      expect(await exitWithin(central, 8000), central.output()).toBe(2);
      expect(central.output()).toMatch(new RegExp(`refused user \\S+ access to virtual host ${vhost}`));
      expect(central.output()).toMatch(/amqp\.url \(SYNC_AMQP_URL\)/);
    } finally {
      central.kill();
    }
  });

  it.skipIf(!mgmt)(
    "a site configured with another site's broker user stops non-zero after a few attempts, without a reconnect storm",
    async () => {
      const api = ManagementApi.fromAmqpUrl(broker!, mgmt);
      const vhost = `t${world.id}`;
      const password = 'a-test-password';
      const hash = rabbitPasswordHash(password);
      const users = { central: `t${world.id}-central`, s103: `t${world.id}-site-103`, s104: `t${world.id}-site-104` };
      // The deployed shape: definitions give each site a user that may read only its own queue.
      await api.importDefinitions(
        brokerDefinitions(new Topology(), {
          vhost,
          central: { name: users.central, passwordHash: hash },
          sites: [
            { siteId: 103, user: { name: users.s103, passwordHash: hash } },
            { siteId: 104, user: { name: users.s104, passwordHash: hash } },
          ],
        }),
      );
      try {
        // Site 103's broker URL copied into site 104's config (the definitions' names have no prefix).
        const file = await siteConfigFile(104, { url: brokerUrl(users.s103, password, vhost), prefix: '' });
        const started = Date.now();
        const site = runAgent('peripheral', file);
        try {
          const code = await exitWithin(site, 10_000);
          const out = site.output();
          expect(code, out).toBe(2);
          expect(Date.now() - started).toBeLessThan(10_000);
          expect(out).toMatch(new RegExp(`refused .*user ${users.s103}`));
          expect(out).toMatch(/amqp\.url/);
          expect(out).not.toMatch(new RegExp(password));
          // Every attempt logs; today's storm logged about 80 a second.
          const lines = out.split('\n').filter((l) => /broker/i.test(l));
          expect(lines.length, out.slice(-3000)).toBeLessThanOrEqual(10);
        } finally {
          site.kill();
        }
      } finally {
        await api.deleteVhost(vhost);
        for (const u of Object.values(users)) await api.deleteUser(u);
      }
    },
  );

  it('a broker that is not there: each agent keeps trying, /healthz answers 503, and the failure is logged once', async () => {
    const closed = await freePort();
    const url = `amqp://guest:guest@127.0.0.1:${closed}`;
    const ports = { central: await freePort(), peripheral: await freePort() };
    const agents = {
      central: runAgent('central', centralConfigFile(url, { httpPort: ports.central })),
      peripheral: runAgent('peripheral', await siteConfigFile(101, { url }, { httpPort: ports.peripheral })),
    };
    try {
      for (const name of Object.keys(agents))
        await until(
          `${name}'s /healthz to answer`,
          async () => (await healthz(ports[name as 'central'])) === 503,
          8000,
        );
      // Long enough for the backoff to have tried several times (and for today's central to exit 0).
      await new Promise((r) => setTimeout(r, 12_000));
      for (const [name, a] of Object.entries(agents)) {
        const out = a.output();
        expect(a.exitCode(), `${name}: ${out}`).toBe(undefined);
        expect(await healthz(ports[name as 'central'])).toBe(503);
        // The connection's own reports (a site's session that could not start says so in its own line).
        const failures = logMessages(out).filter((m) => /broker (still )?unreachable/.test(m));
        expect(failures, `${name}: ${out}`).toHaveLength(1);
        expect(failures[0]).toMatch(new RegExp(`127\\.0\\.0\\.1:${closed}`));
      }
    } finally {
      for (const a of Object.values(agents)) a.kill();
    }
  }, 30_000);
});
