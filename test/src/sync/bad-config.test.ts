import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as amqp from 'amqplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadPeripheralConfig, parsePeripheralConfig } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { PeripheralAgent } from '@sitesync/peripheral';
import { TestWorld, testLogger, type DbKind } from '../support/harness.js';
import { amqpUrl, postgresUrl } from '../support/services.js';
import { ORDERS_TABLE, RESULTS_TABLE, labPipeline } from '../support/lab-data.js';
import { rowCount } from '../support/messages.js';

const broker = amqpUrl();
const kinds: DbKind[] = ['sqlite', ...(postgresUrl() ? (['postgres'] as const) : [])];
if (!broker) console.log('[sitesync tests] skipping bad config: no RabbitMQ available');

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const CLI = join(ROOT, 'agents/peripheral/bin/sync-peripheral.js');
const SITE = 101;
const ORDERS = 20;
const DETAILS_PER_ORDER = 3;

type RawConfig = Record<string, unknown>;

interface BadCase {
  name: string;
  /** The bad config, made from a good one. */
  config: (good: RawConfig) => RawConfig;
  /** SYNC_* variables set on top of the file. */
  env?: Record<string, string>;
  /** The error's key must contain this. */
  key: string;
  /** The error message (API) and stderr (CLI) must contain each of these. */
  mentions: string[];
}

const JOIN = { order_id: 'order_id' };
const withPipeline = (good: RawConfig, overrides: Parameters<typeof labPipeline>[0]): RawConfig => ({
  ...good,
  pipelines: [labPipeline(overrides)],
});

const CASES: BadCase[] = [
  {
    name: 'missing siteId',
    config: ({ siteId: _drop, ...rest }) => rest,
    key: 'siteId',
    mentions: ['siteId'],
  },
  {
    name: 'unknown base table',
    config: (g) =>
      withPipeline(g, { baseEntity: 'no_such_orders', linkEntities: [{ entity: RESULTS_TABLE, join: JOIN }] }),
    key: 'baseEntity',
    mentions: ['baseEntity', 'no_such_orders'],
  },
  {
    name: 'unknown column in attributes',
    config: (g) => withPipeline(g, { attributes: [...(labPipeline().attributes ?? []), 'no_such_column'] }),
    key: 'attributes',
    mentions: ['attributes', 'no_such_column'],
  },
  {
    name: 'baseEntity "x; DROP TABLE lab_results"',
    config: (g) =>
      withPipeline(g, {
        baseEntity: `x; DROP TABLE ${RESULTS_TABLE}`,
        linkEntities: [{ entity: RESULTS_TABLE, join: JOIN }],
      }),
    key: 'baseEntity',
    mentions: ['baseEntity'],
  },
  {
    name: 'baseEntity that tries to leave a string literal',
    config: (g) =>
      withPipeline(g, {
        baseEntity: `${ORDERS_TABLE}'; DROP TABLE ${RESULTS_TABLE}; --`,
        linkEntities: [{ entity: RESULTS_TABLE, join: JOIN }],
      }),
    key: 'baseEntity',
    mentions: ['baseEntity'],
  },
  {
    name: 'unknown detail table',
    config: (g) => withPipeline(g, { linkEntities: [ORDERS_TABLE, { entity: 'no_such_results', join: JOIN }] }),
    key: 'linkEntities',
    mentions: ['linkEntities', 'no_such_results'],
  },
  {
    name: 'SYNC_SITE_ID=abc',
    config: (g) => g,
    env: { SYNC_SITE_ID: 'abc' },
    key: 'siteId',
    mentions: ['SYNC_SITE_ID'],
  },
];

/** A site with seeded lab tables, a good config for it, and a tap on everything published up. */
async function setup(
  world: TestWorld,
  kind: DbKind,
): Promise<{ dbUrl: string; good: RawConfig; ch: amqp.ConfirmChannel; tap: string }> {
  const dbUrl = world.dbUrl(kind, 'site');
  const input = await world.prepareSite(SITE, dbUrl, { orders: ORDERS, detailsPerOrder: DETAILS_PER_ORDER });
  // A short ack timeout: should a bad config start after all, its session ends quickly (and the test fails).
  const good: RawConfig = { ...input, logLevel: 'silent', ackTimeoutSeconds: 2 };
  const ch = await world.rawChannel();
  await world.topology.declareCentral(ch);
  // Everything any site publishes up, whatever its routing key (deleted with the connection).
  const { queue: tap } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(tap, world.topology.up, '#');
  return { dbUrl, good, ch, tap };
}

/** Nothing was published, and the site's tables are intact. */
async function expectNothingSentNothingHarmed(
  world: TestWorld,
  s: { dbUrl: string; ch: amqp.ConfirmChannel; tap: string },
): Promise<void> {
  // Give a stray publish time to land before counting.
  await new Promise((r) => setTimeout(r, 200));
  expect(
    (await s.ch.checkQueue(world.topology.centralSyncQueue)).messageCount,
    'messages on the central sync queue',
  ).toBe(0);
  expect((await s.ch.checkQueue(s.tap)).messageCount, 'messages published to sync.up').toBe(0);
  const db = await Database.open(s.dbUrl, { role: 'site', migrate: false });
  try {
    expect(await db.describeTable(RESULTS_TABLE), `${RESULTS_TABLE} still exists`).toBeDefined();
    expect(await rowCount(db, RESULTS_TABLE)).toBe(ORDERS * DETAILS_PER_ORDER);
    expect(await rowCount(db, ORDERS_TABLE)).toBe(ORDERS);
  } finally {
    await db.close();
  }
}

function writeConfig(world: TestWorld, name: string, config: RawConfig): string {
  const file = join(world.dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `sync-peripheral run --once` with only the given SYNC_* variables set. */
function runCli(args: string[], env: Record<string, string>, timeoutMs = 40_000): Promise<CliResult> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SYNC_')));
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, 'run', '--once', ...args], {
      cwd: ROOT,
      env: { ...clean, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

describe.skipIf(!broker).each(kinds)(
  'bad config through PeripheralAgent on %s: fails at start naming the key, sends nothing',
  (kind) => {
    let world: TestWorld;
    beforeEach(() => {
      world = new TestWorld(broker!);
    });
    afterEach(async () => {
      await world.teardown();
    });

    it.each(CASES)('$name', async (c) => {
      const s = await setup(world, kind);
      const raw = c.config(s.good);
      const start = async () => {
        const config = c.env
          ? loadPeripheralConfig(writeConfig(world, 'site', raw), c.env)
          : parsePeripheralConfig(raw);
        const agent = new PeripheralAgent(config, testLogger('x'));
        world.onTeardown(() => agent.close());
        await agent.start();
        // Not reached when start() fails as it should; if it did start, a session would show what it sends.
        await agent.runSession().catch(() => undefined);
      };
      const err = await start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, 'start() must fail').toBeInstanceOf(ConfigError);
      const ce = err as ConfigError;
      expect(ce.key, `key of: ${ce.message}`).toContain(c.key);
      for (const m of c.mentions) expect(ce.message).toContain(m);
      await expectNothingSentNothingHarmed(world, s);
    });
  },
);

describe.skipIf(!broker)(
  'bad config through the sync-peripheral CLI: non-zero exit, stderr names the key, sends nothing',
  () => {
    let world: TestWorld;
    beforeEach(() => {
      world = new TestWorld(broker!);
    });
    afterEach(async () => {
      await world.teardown();
    });

    it.each(CASES)('$name', async (c) => {
      const s = await setup(world, 'sqlite');
      const file = writeConfig(world, 'site', c.config(s.good));
      const r = await runCli(['--config', file], c.env ?? {});
      expect(r.signal, `killed? stderr: ${r.stderr}`).toBeNull();
      expect(r.code, `exit code; stderr: ${r.stderr}`).not.toBe(0);
      for (const m of c.mentions) expect(r.stderr, 'stderr').toContain(m);
      await expectNothingSentNothingHarmed(world, s);
    });

    it('SYNC_* variables alone: bad SYNC_SITE_ID with no config file', async () => {
      const s = await setup(world, 'sqlite');
      const pipelineFile = writeConfig(world, 'lab-pipeline', labPipeline() as RawConfig);
      // The pipelines cannot come from the environment, so a file is still needed; SYNC_CONFIG names it.
      const file = writeConfig(world, 'site', { ...s.good, siteId: undefined, pipelines: [{ file: pipelineFile }] });
      const r = await runCli([], { SYNC_CONFIG: file, SYNC_SITE_ID: '12x' });
      expect(r.code, `exit code; stderr: ${r.stderr}`).not.toBe(0);
      expect(r.stderr).toContain('SYNC_SITE_ID');
      await expectNothingSentNothingHarmed(world, s);
    });

    it('control: the same setup with a good config does publish', async () => {
      const s = await setup(world, 'sqlite');
      const file = writeConfig(world, 'site', { ...s.good, ackTimeoutSeconds: 1 });
      const r = await runCli(['--config', file], {});
      expect(r.signal, `killed? stderr: ${r.stderr}`).toBeNull();
      // No central runs, so the session is not acknowledged; what matters is that it was sent.
      expect((await s.ch.checkQueue(s.tap)).messageCount, `published to sync.up; stderr: ${r.stderr}`).toBeGreaterThan(
        0,
      );
      expect((await s.ch.checkQueue(world.topology.centralSyncQueue)).messageCount).toBeGreaterThan(0);
    });
  },
);
