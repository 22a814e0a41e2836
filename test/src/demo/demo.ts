/**
 * `npm run demo`: two hospital sites and one central, in one process, over a real RabbitMQ.
 *
 * Seeds two SQLite site databases with lab orders, runs an initial load on both sites at once,
 * changes a few rows, runs a second (incremental) session, and checks that the central holds
 * exactly what each site holds. Then it moves one unfinished intervention from site 102 through the
 * central to site 101, which first gets the procedure version it is based on (docs/interventions.md).
 * Everything it writes lives in `.demo/` at the repository root.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import { createLogger, Topology, type Logger, formatTable, parsePeripheralConfig } from '@sitesync/protocol';
import { Database, SITE_TABLE } from '@sitesync/db';
import { CentralAgent, parseCentralConfig, registerSite } from '@sitesync/central';
import { PeripheralAgent, type SessionResult } from '@sitesync/peripheral';
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
/** A lab procedure in two versions: every site gets HEMO.1, only site 102 gets HEMO.2. */
const HEMO = { code: 'HEMO', name: 'Hemograma completo' };
const HEMO_1 = { ...HEMO, version: 1, definition: '{"steps":["extracción","recuento"]}' };
const HEMO_2 = { ...HEMO, version: 2, definition: '{"steps":["extracción","recuento","frotis"]}' };

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
  const queues = [t.centralSyncQueue, t.centralInterventionQueue, ...SITES.map((s) => t.siteQueue(s.id))];
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

function toDate(v: unknown): Date {
  return v instanceof Date ? v : new Date(String(v).replace(' ', 'T') + (/[zZ+]/.test(String(v)) ? '' : 'Z'));
}

function hhmmss(v: unknown): string {
  if (v === null || v === undefined) return '';
  const d = toDate(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toTimeString().slice(0, 8);
}

/** Polls `fn` until it returns something truthy; throws after `timeoutMs`. */
async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function holds(db: Database, code: string, version: number): Promise<boolean> {
  return (
    (await db.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [code, version])).length === 1
  );
}

/**
 * The W1/W2 scenario of the seed documents: HEMO.2 reaches site 102 only; an unfinished intervention
 * made there on HEMO.2 goes to the central, then to site 101, which must get HEMO.2 first.
 */
async function moveIntervention(central: CentralAgent, agents: Map<number, PeripheralAgent>): Promise<boolean> {
  const svc = central.interventionService!;
  const cdb = central.database!;
  const [db101, db102] = [agents.get(101)!.database!, agents.get(102)!.database!];
  say();
  say('Interventions: procedure HEMO version 1 published to both sites, version 2 to site 102 only');
  await svc.publishProcedure(HEMO_1, 'all');
  await svc.publishProcedure(HEMO_2, [102]);
  await until('the sites to hold their HEMO versions', async () => {
    const [a, b] = [await holds(db101, 'HEMO', 1), await holds(db102, 'HEMO', 2)];
    return a && b;
  });
  // Some finished work of each site's own first, so local ids differ from system to system.
  const finished = { procedure: { code: 'HEMO', version: 1 }, finished: true, payload: '{}' };
  for (const site of [101, 101, 102]) await agents.get(site)!.interventions!.create(finished);
  const s2 = await agents.get(102)!.interventions!.create({
    procedure: { code: 'HEMO', version: 2 },
    payload: '{"hematocrito":"41%","frotis":null}',
  });
  say(`  site 102: unfinished intervention ${s2.guid} (local id ${s2.id}) on HEMO.2, sent to the central`);
  await agents.get(102)!.interventions!.requestTransfer([s2.guid]);
  const up = await until('the transfer to the central', async () =>
    (await svc.listTransfers({ guid: s2.guid })).find((t) => t.to_site === null && t.state !== 'accepted'),
  );
  if (up.state !== 'completed') {
    say(`  the central did not take it: ${up.state} ${up.reason ?? ''}`);
    return false;
  }
  const missing = !(await holds(db101, 'HEMO', 2));
  say(`  central: holds it as local id ${up.to_local_id}; site 101 ${missing ? 'lacks' : 'already holds'} HEMO.2`);
  say('  operator: move it to site 101');
  const transferId = await svc.requestTransferOut(s2.guid, 101);
  const seen: string[] = [];
  const out = await until(
    'the transfer to site 101',
    async () => {
      const t = (await svc.listTransfers({ guid: s2.guid })).find((x) => x.transfer_id === transferId);
      if (t && seen.at(-1) !== t.state) seen.push(t.state);
      return t && ['completed', 'refused'].includes(t.state) && t;
    },
    30_000,
    5,
  );
  say(`  transfer to site 101, states seen: ${seen.join(' -> ')}`);

  say();
  say('intervention_transfer at the central:');
  const log = await svc.listTransfers({ guid: s2.guid });
  const where = (site: unknown) => (site === null ? 'central' : `site ${site}`);
  say(
    formatTable(
      log.map((t) => ({
        from: where(t.from_site),
        to: where(t.to_site),
        from_local_id: t.from_local_id,
        to_local_id: t.to_local_id,
        procedure: `${t.procedure_code}.${t.procedure_version}`,
        state: t.state,
        reason: t.reason ?? '',
        created: hhmmss(t.created_at),
        updated: hhmmss(t.updated_at),
      })),
    ),
  );
  say();

  // HEMO.2 was stored at site 101 before the intervention arrived there.
  const proc = await db101.query<{ created_at: unknown }>(
    `SELECT created_at FROM procedure_version WHERE code = 'HEMO' AND version = 2`,
  );
  const at101 = await db101.query<{ id: number; state: string; updated_at: unknown }>(
    `SELECT id, state, updated_at FROM intervention WHERE guid = ?`,
    [s2.guid],
  );
  const procFirst =
    missing && proc.length === 1 && at101.length === 1 && toDate(proc[0]!.created_at) <= toDate(at101[0]!.updated_at);
  say(`HEMO.2 reached site 101 before the intervention: ${procFirst ? 'yes' : 'NO'}`);

  const elsewhere =
    (await cdb.query(`SELECT id FROM intervention WHERE guid = ?`, [s2.guid])).length +
    (await db102.query(`SELECT id FROM intervention WHERE guid = ?`, [s2.guid])).length;
  const onlyAt101 =
    out.state === 'completed' &&
    at101.length === 1 &&
    at101[0]!.state === 'active' &&
    Number(out.to_local_id) === Number(at101[0]!.id) &&
    elsewhere === 0;
  const localId = at101[0] ? ` (local id ${at101[0].id})` : '';
  say(`intervention ${s2.guid} is now only at site 101${localId}: ${onlyAt101 ? 'yes' : 'NO'}`);
  return procFirst && onlyAt101;
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
    parseCentralConfig({
      amqp: { url: broker.url, prefix: DEMO_PREFIX },
      db: { url: dbUrl('central') },
      dispatchIntervalMs: 100,
    }),
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
        transferPollSeconds: 0.2,
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
  const moved = await moveIntervention(central, agents);
  converged &&= moved;

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
