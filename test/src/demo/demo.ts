/**
 * `npm run demo`: two hospital sites and one central, in one process, over a real RabbitMQ.
 *
 * Seeds two SQLite site databases with lab orders, runs an initial load on both sites at once,
 * changes a few rows, runs a second (incremental) session, and checks that the central holds
 * exactly what each site holds. Everything it writes lives in `.demo/` at the repository root.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import { createLogger, Topology, type Logger } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { CentralAgent, formatTable, parseCentralConfig, registerSite, SITE_TABLE } from '@sitesync/central';
import { PeripheralAgent, parsePeripheralConfig, type SessionResult } from '@sitesync/peripheral';
import { centralSnapshot, siteSnapshot } from '../support/compare.js';
import {
  changeOrder,
  changeResult,
  createLabTables,
  deleteOrder,
  labPipeline,
  seedLabData,
} from '../support/lab-data.js';

/** The broker image started through testcontainers when no broker answers and Docker is there. */
export const RABBITMQ_IMAGE = 'rabbitmq:4-management';
/** Every exchange and queue of the demo carries this prefix, so it never touches other environments. */
export const DEMO_PREFIX = 'demo.';
const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const HEADER_TABLE = 'lab_orders_central';
const DETAIL_TABLE = 'lab_results_central';
const DETAILS_PER_ORDER = 5;

interface DemoSite {
  id: number;
  orders: number;
  firstOrderId: number;
  seed: number;
}
const SITES: DemoSite[] = [
  { id: 101, orders: 2000, firstOrderId: 1, seed: 101 },
  { id: 102, orders: 1500, firstOrderId: 50_001, seed: 102 },
];

const say = (line = '') => process.stdout.write(`${line}\n`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const n = (x: number) => x.toLocaleString('en-US');
const kb = (bytes: number) =>
  bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
const redact = (url: string) => url.replace(/(\/\/[^:@/]*):[^@/]*@/, '$1:***@');

/** Resources to release at the end, last opened first. */
const closers: Array<() => Promise<unknown>> = [];
async function closeAll(): Promise<void> {
  for (const fn of closers.reverse()) await fn().catch(() => undefined);
}

/** A connection, or the error; `reachable` tells a broker that answered (bad login, vhost) from none at all. */
async function connectBroker(url: string): Promise<{ conn?: amqp.ChannelModel; error?: Error; reachable: boolean }> {
  try {
    return { conn: await amqp.connect(url, { timeout: 3000 }), reachable: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { error: err as Error, reachable: !code || !/^E[A-Z]+$/.test(code) };
  }
}

/** A broker connection: the configured one, else a throwaway container, else undefined (after saying how to get one). */
async function findBroker(): Promise<{ url: string; conn: amqp.ChannelModel; where: string } | undefined> {
  const url = process.env.SYNC_AMQP_URL ?? DEFAULT_AMQP_URL;
  const first = await connectBroker(url);
  if (first.conn) return { url, conn: first.conn, where: redact(url) };
  if (first.reachable) {
    say(`RabbitMQ at ${redact(url)} answered but refused the connection: ${first.error?.message}`);
    say('Check the user, password and virtual host in SYNC_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672).');
    return undefined;
  }

  say(`No RabbitMQ answers at ${redact(url)}.`);
  const tc = await import('testcontainers');
  const docker = await tc.getContainerRuntimeClient().then(
    () => true,
    () => false,
  );
  if (docker) {
    say(`Docker is available: starting ${RABBITMQ_IMAGE} (first time pulls the image)...`);
    const { RabbitMQContainer } = await import('@testcontainers/rabbitmq');
    const container = await new RabbitMQContainer(RABBITMQ_IMAGE).start();
    closers.push(() => container.stop());
    const cUrl = container.getAmqpUrl();
    const c = await connectBroker(cUrl);
    if (c.conn) return { url: cUrl, conn: c.conn, where: `${redact(cUrl)} (container ${RABBITMQ_IMAGE})` };
    say(`The container started but does not answer: ${c.error?.message}`);
    return undefined;
  }
  say('Start one, then run `npm run demo` again:');
  say('  Debian/Ubuntu (as root):  apt-get install rabbitmq-server && rabbitmq-server -detached');
  say(`  Docker:                  docker run -d -p 5672:5672 -p 15672:15672 ${RABBITMQ_IMAGE}`);
  say('  or point SYNC_AMQP_URL at a broker you have (amqp://user:password@host:5672).');
  return undefined;
}

/** Deletes the demo's queues and exchanges, so a rerun starts from an empty broker state. */
async function resetTopology(conn: amqp.ChannelModel, t: Topology): Promise<void> {
  const queues = [t.centralSyncQueue, ...SITES.map((s) => t.siteQueue(s.id))];
  for (const q of [...queues, ...queues.map((q) => t.deadLetterQueue(q))]) {
    // A failed delete closes the channel: use one per call.
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await ch.deleteQueue(q).catch(() => undefined);
    await ch.close().catch(() => undefined);
  }
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  for (const x of [t.up, t.down, t.dlx]) await ch.deleteExchange(x).catch(() => undefined);
  await ch.close().catch(() => undefined);
}

type CounterLike = { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> };

/** Current value of a prom-client counter, summed over the series whose labels match `where`. */
async function counterValue(c: CounterLike, where: Record<string, string> = {}): Promise<number> {
  const match = (labels: Record<string, unknown>) => Object.entries(where).every(([k, v]) => String(labels[k]) === v);
  return (await c.get()).values.reduce((sum, v) => sum + (match(v.labels) ? v.value : 0), 0);
}

/** Runs one session on every site at once, printing progress twice a second and one line per site when done. */
async function sessionOnAllSites(
  central: CentralAgent,
  agents: Map<number, PeripheralAgent>,
  expectedRows: Map<number, number>,
  baselineBytes?: Map<number, number>,
): Promise<Map<number, { result: SessionResult; bytes: number }>> {
  const progress = async (id: number, a: PeripheralAgent) => ({
    bytes: await counterValue(a.metrics.bytesSent),
    sent: await counterValue(a.metrics.rowsSent),
    merged: await counterValue(central.metrics.rowsMerged, { site: String(id) }),
  });
  const before = new Map<number, { bytes: number; sent: number; merged: number }>();
  for (const [id, a] of agents) before.set(id, await progress(id, a));
  const done = new Set<number>();
  const ticker = setInterval(() => {
    void (async () => {
      const parts: string[] = [];
      for (const [id, a] of agents) {
        if (done.has(id)) continue;
        const now = await progress(id, a);
        const of = expectedRows.get(id);
        const b = before.get(id)!;
        parts.push(
          `site ${id}: ${n(now.sent - b.sent)}${of ? `/${n(of)}` : ''} rows published, ${n(now.merged - b.merged)} merged`,
        );
      }
      if (parts.length && done.size < agents.size) say(`  ... ${parts.join('; ')}`);
    })();
  }, 500);
  try {
    const runs = [...agents].map(async ([id, a]) => {
      const result = await a.runSession();
      done.add(id);
      const bytes = (await counterValue(a.metrics.bytesSent)) - before.get(id)!.bytes;
      const t = result.totals;
      const base = baselineBytes?.get(id);
      const size = base ? `${kb(bytes)}, ${((100 * bytes) / base).toFixed(1)}% of the initial load` : kb(bytes);
      const what =
        t.headers + t.deletions === 0
          ? 'nothing to send'
          : `${n(t.headers)} headers, ${n(t.details)} details` +
            (t.deletions ? `, ${n(t.deletions)} deletions` : '') +
            ` in ${n(t.batches)} batch${t.batches === 1 ? '' : 'es'} (${size})`;
      const error = result.error ? ` — ${result.error}` : '';
      say(`  site ${id}: session ${result.status} — ${what} in ${secs(result.durationMs)}${error}`);
      return [id, { result, bytes }] as const;
    });
    return new Map(await Promise.all(runs));
  } finally {
    clearInterval(ticker);
  }
}

function hhmmss(v: unknown): string {
  if (v === null || v === undefined) return '';
  const d = v instanceof Date ? v : new Date(String(v).replace(' ', 'T') + (/[zZ+]/.test(String(v)) ? '' : 'Z'));
  return Number.isNaN(d.getTime()) ? String(v) : d.toTimeString().slice(0, 8);
}

async function main(): Promise<number> {
  say('sitesync demo: two hospital sites (101, 102) sync lab orders to one central over RabbitMQ');
  const broker = await findBroker();
  if (!broker) return 1;
  closers.push(() => broker.conn.close());
  const version = broker.conn.connection.serverProperties.version;
  say(`broker: RabbitMQ ${version} at ${broker.where}, names prefixed "${DEMO_PREFIX}"`);
  const topology = new Topology({ prefix: DEMO_PREFIX });
  await resetTopology(broker.conn, topology);

  // Fresh databases in .demo/ at the repository root.
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const dir = join(root, '.demo');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const dbUrl = (name: string) => `sqlite:${join(dir, `${name}.db`)}`;
  const seeded = Date.now();
  await Promise.all(
    SITES.map(async (s) => {
      const db = await Database.open(dbUrl(`site-${s.id}`), { role: 'site' });
      try {
        await createLabTables(db);
        await seedLabData(db, {
          orders: s.orders,
          detailsPerOrder: DETAILS_PER_ORDER,
          firstOrderId: s.firstOrderId,
          seed: s.seed,
        });
      } finally {
        await db.close();
      }
    }),
  );
  say(
    `seeded ${relative(process.cwd(), dir) || '.'}/site-101.db and site-102.db: ` +
      `${SITES.map((s) => n(s.orders)).join(' + ')} lab orders x ${DETAILS_PER_ORDER} results, ${secs(Date.now() - seeded)}`,
  );

  // The central (its database is created and migrated on start) and the sites' EstadoSyncGeneral rows.
  const log: Logger = createLogger('demo', 'warn');
  const started = Date.now();
  const central = new CentralAgent(
    parseCentralConfig({ amqp: { url: broker.url, prefix: DEMO_PREFIX }, db: { url: dbUrl('central') } }),
    log.child({ agent: 'central' }),
  );
  closers.push(() => central.close());
  await central.start();
  const cdb = central.database!;
  const brokerUser = decodeURIComponent(new URL(broker.url).username) || 'guest';
  for (const s of SITES) {
    // What `syncctl sites add <id> --pipeline lab --header-table ... --detail-table ... --user ...` does.
    await registerSite(cdb, {
      siteId: s.id,
      pipeline: 'lab',
      headerTable: HEADER_TABLE,
      detailTable: DETAIL_TABLE,
      brokerUser,
    });
  }
  const agents = new Map<number, PeripheralAgent>();
  for (const s of SITES) {
    const agent = new PeripheralAgent(
      parsePeripheralConfig({
        siteId: s.id,
        amqp: { url: broker.url, prefix: DEMO_PREFIX },
        db: { url: dbUrl(`site-${s.id}`) },
        pipelines: [labPipeline()],
        ackTimeoutSeconds: 60,
      }),
      log.child({ agent: `site-${s.id}` }),
    );
    closers.push(() => agent.close());
    await agent.start();
    agents.set(s.id, agent);
  }
  say(
    `central + 2 site agents running (${secs(Date.now() - started)}); both sites registered in ${SITE_TABLE} ` +
      `-> ${HEADER_TABLE} / ${DETAIL_TABLE}`,
  );

  say();
  say('Session 1: initial load, both sites at once');
  const first = await sessionOnAllSites(
    central,
    agents,
    new Map(SITES.map((s) => [s.id, s.orders * (1 + DETAILS_PER_ORDER)])),
  );

  // Some work at each site: 3 result values, 1 status, 1 column outside `attributes`, 2 deletions, 3 new orders.
  const expected = { headers: 3 + 1 + 3, details: (3 + 1 + 3) * DETAILS_PER_ORDER, deletions: 2 };
  for (const s of SITES) {
    const db = agents.get(s.id)!.database!;
    const o = (k: number) => s.firstOrderId + k;
    await changeResult(db, o(10), '250.0');
    await changeResult(db, o(20), '4.9');
    await changeResult(db, o(30), '138.0');
    await changeOrder(db, o(40), 'status', 'CANCELLED');
    await changeOrder(db, o(50), 'internal_note', 'called the ward, not for the central');
    await deleteOrder(db, o(60));
    await deleteOrder(db, o(70));
    await seedLabData(db, {
      orders: 3,
      detailsPerOrder: DETAILS_PER_ORDER,
      firstOrderId: s.firstOrderId + s.orders,
      seed: s.seed + 1,
    });
  }
  say();
  say('At each site: changed 3 result values and 1 order status, edited internal_note (not in the hash),');
  say('deleted 2 orders, added 3. Session 2: only those changes travel');
  const second = await sessionOnAllSites(
    central,
    agents,
    new Map(),
    new Map([...first].map(([id, r]) => [id, r.bytes])),
  );
  let onlyChanges = true;
  for (const [id, { result }] of second) {
    const t = result.totals;
    if (t.headers !== expected.headers || t.details !== expected.details || t.deletions !== expected.deletions) {
      onlyChanges = false;
      say(
        `  site ${id}: expected ${expected.headers} headers, ${expected.details} details, ${expected.deletions} deletions`,
      );
    }
  }

  say();
  say(`${SITE_TABLE} at the central:`);
  const state = await cdb.query<Record<string, unknown>>(
    `SELECT id_efector, pipeline, status, ultimo_update_efector_fin, ultimo_sync_fecha_fin, ultimo_sync_registros, ` +
      `header_count, detail_count, deletion_count FROM ${cdb.dialect.quote(SITE_TABLE)} ORDER BY id_efector, pipeline`,
  );
  say(
    formatTable(
      state.map((r) => ({
        ...r,
        ultimo_update_efector_fin: hhmmss(r.ultimo_update_efector_fin),
        ultimo_sync_fecha_fin: hhmmss(r.ultimo_sync_fecha_fin),
      })),
    ),
  );

  say();
  let converged = true;
  for (const s of SITES) {
    const sdb = agents.get(s.id)!.database!;
    const [c, l] = [await centralSnapshot(cdb, s.id, HEADER_TABLE, DETAIL_TABLE), await siteSnapshot(sdb)];
    const same =
      c.headers.length === l.headers.length &&
      c.details.length === l.details.length &&
      c.headers.every((h, i) => h === l.headers[i]) &&
      c.details.every((d, i) => d === l.details[i]);
    const ok =
      same && onlyChanges && first.get(s.id)!.result.status === 'ok' && second.get(s.id)!.result.status === 'ok';
    converged &&= ok;
    say(
      `site ${s.id}: central equals site: ${same ? 'yes' : 'NO'} (${n(l.headers.length)} headers, ${n(l.details.length)} details` +
        `${same ? '' : `; central has ${n(c.headers.length)} / ${n(c.details.length)}`})`,
    );
  }
  say();
  say(
    `${converged ? 'Done' : 'FAILED'} in ${secs(process.uptime() * 1000)}. The databases stay in .demo/; try ` +
      `npx syncctl --db sqlite:.demo/central.db status`,
  );
  return converged ? 0 : 1;
}

async function run(): Promise<void> {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  } finally {
    await closeAll();
  }
  process.exitCode = code;
}

void run();
