/**
 * What a hospital feels: the incremental cycle and a week's catch-up over an emulated hospital link
 * (bench/src/wan-link.ts). The legacy upload's connection to the central database goes through one
 * link, the site agent's broker connection through another; the central job and the central agent
 * stay local, as they run in the data centre.
 */
import type { CentralAgent } from '@sitesync/central';
import { prepareSiteDb, register, siteConfig, type BenchContext } from '../agents.js';
import { changeSome, ORDERS_TABLE, RESULTS_TABLE } from '../lab-data.js';
import type { Sizes } from '../options.js';
import type { Progress } from '../progress.js';
import { cpuTotal } from '../cpu.js';
import { RawDb, type RawPg } from '../raw-db.js';
import { SiteProcess } from '../site-processes.js';
import { median } from '../stats.js';
import { WanLink } from '../wan-link.js';
import { legacyCycle, type LegacyCycle } from './legacy.js';
import { timeSession, type TimedSession } from './session-timer.js';

const WAN_SITE = 3;
const TABLES = { header: 'wan_orders', detail: 'wan_results' };
const LEGACY_TABLES = { header: 'wan_legacy_orders', detail: 'wan_legacy_results', pipeline: 'legacy' };
/**
 * Round trips a session waits on (docs/architecture.md, "a session"): its last message up and the
 * `session.ack` down. Since 2026-12-04 no publish waits for the confirm of the one before it (the
 * confirms of `session.started` and of the batches were two more round trips); the confirms come
 * back while the central merges.
 */
export const SESSION_ROUND_TRIPS = 1;
/** How many times each changed header is edited in the two catch-up scenarios (same net change). */
export const CATCH_UP_EDITS = [1, 5] as const;

/**
 * A session's time as the broker link saw it (gaps of at least half an RTT between the site's sends).
 * `waitsOnFarSide` counts the gaps in which something came back to the site: the round trips the
 * session actually waited on.
 */
export interface SessionTime {
  /** Start of the session to the site's first byte on the link (local work: lock, version, hooks). */
  beforeFirstSendSeconds: number;
  waitsOnFarSide: number;
  waitingOnFarSideSeconds: number;
  /** Gaps with nothing delivered to the site meanwhile: the site's own work between sends. */
  ownGapsSeconds: number;
  /** The site's last send (usually its consumer ack of `session.ack`) to the end of the session. */
  afterLastSendSeconds: number;
}

export interface LinkShape {
  bitsPerSecond: number;
  rttMs: number;
}

export interface WanResult {
  link: LinkShape;
  headers: number;
  changedHeaders: number;
  /** Median legacy cycle over the link (upload through it, the central job local). */
  legacySeconds: number;
  /** Median bytes the legacy cycle put on its link (both directions, framing included). */
  legacyWireBytes: number;
  /** Median sitesync session over the link, start to `session.ack`. */
  sitesyncSeconds: number;
  /** Median bytes the session put on the broker link (both directions, AMQP framing included). */
  sitesyncWireBytes: number;
  speedup: number;
  /**
   * The least a session of these bytes can take on this link: its bytes up / bandwidth (the
   * busier direction) + SESSION_ROUND_TRIPS × RTT.
   */
  floorSeconds: number;
  floorRoundTrips: number;
  /** sitesyncSeconds / floorSeconds. */
  ofFloor: number;
  /**
   * Median session of the same size with the link unshaped (same site, right after): what the
   * session costs without the link (CPU, databases, broker). sitesyncSeconds - this ≈ the link's part.
   */
  sitesyncUnshapedSeconds: number;
  /** legacySeconds / floorSeconds: the speedup the link would allow a session of these bytes. */
  speedupAtFloor: number;
  rounds: Array<{
    legacySeconds: number;
    legacyWireBytes: number;
    sitesyncSeconds: number;
    sitesyncWireBytes: { up: number; down: number };
    floorSeconds: number;
    unshapedSeconds: number;
    time: SessionTime;
    /** CPU seconds of the shaped session, every process group but `other` (bench/src/cpu.ts). */
    cpuSeconds: number;
  }>;
}

export interface CatchUpScenario {
  /** Edits of each changed header during the week. */
  editsPerHeader: number;
  /** Headers that differ from the central's copy after the week (updated, deleted, re-added). */
  netChangedHeaders: number;
  updated: number;
  deleted: number;
  readded: number;
  /** Statements run at the site during the week, each its own transaction (each touches many headers). */
  editStatements: number;
  seconds: number;
  wireBytes: { up: number; down: number };
  bytesPerNetChange: number;
  /** Absent where no legacy cycle was timed after this scenario (`catchUpLegacyCycles`). */
  legacySeconds?: number;
  speedup?: number;
  floorSeconds: number;
  time: SessionTime;
  /** CPU seconds of the session, every process group but `other`. */
  cpuSeconds: number;
}

export interface CatchUpResult {
  link: LinkShape;
  headers: number;
  /** Of the scenario with the most edits (a real week): wire bytes / net changed headers. */
  bytesPerNetChange: number;
  /** bytesPerNetChange with the most edits / with one edit each: 1 when bytes follow only the net change. */
  editGrowth: number;
  /** Legacy cycle / catch-up session, of the scenario with the most edits. */
  speedup?: number;
  scenarios: CatchUpScenario[];
}

export interface WanResults {
  wan?: WanResult;
  catchUp?: CatchUpResult;
}

function viaLink(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

/**
 * A site of `sizes.wanHeaders` behind the emulated link: synced (link unshaped), then `wan` rounds
 * of 1% changes timed through the legacy cycle and one session, then the catch-up scenarios.
 * PostgreSQL only: the legacy upload needs a network connection to the central database.
 */
export async function benchWan(
  ctx: BenchContext,
  central: CentralAgent,
  sizes: Sizes,
  measure: { wan: boolean; catchUp: boolean },
  repoRoot: string,
  progress: Progress,
): Promise<WanResults> {
  if (ctx.dialect !== 'postgres') throw new Error('the wan measurements need PostgreSQL');
  const N = sizes.wanHeaders;
  const shape: LinkShape = { bitsPerSecond: sizes.wanBitsPerSecond, rttMs: sizes.wanRttMs };
  const amqp = new URL(ctx.world.amqpUrl);
  const pgu = new URL(ctx.world.pgUrl);
  const brokerLink = await WanLink.start({
    targetHost: amqp.hostname,
    targetPort: Number(amqp.port) || 5672,
    ...shape,
  });
  const pgLink = await WanLink.start({ targetHost: pgu.hostname, targetPort: Number(pgu.port) || 5432, ...shape });
  const closers: Array<() => Promise<void>> = [() => brokerLink.close(), () => pgLink.close()];
  try {
    brokerLink.setShaping(false);
    pgLink.setShaping(false);
    progress.phase(`${ctx.dialect} · wan: seeding a site of ${N.toLocaleString('en-US')} headers`);
    const siteUrl = await prepareSiteDb(ctx, 'wan', N, (n) => progress.update(n, N, 'headers'));
    await register(central.database!, WAN_SITE, TABLES);
    await register(central.database!, WAN_SITE, LEGACY_TABLES);
    const config = siteConfig(ctx, WAN_SITE, siteUrl, {
      amqp: { url: viaLink(ctx.world.amqpUrl, brokerLink.port), prefix: ctx.world.prefix },
    });
    const site = await SiteProcess.start(repoRoot, {
      dialect: ctx.dialect,
      headers: N,
      seed: false,
      sites: [{ config: { ...config, logLevel: 'warn' }, raw: {} }],
    });
    closers.unshift(() => site.close());
    const siteRaw = await ctx.world.raw(ctx.dialect, 'wan');
    closers.unshift(() => siteRaw.close());
    // The site script's connection to the central database, over the link; the central job's, local.
    const centralViaLink = (await RawDb.open('postgres', {
      pgUrl: viaLink(ctx.world.pgUrl, pgLink.port),
      schema: ctx.world.schemaName('central'),
    })) as RawPg;
    closers.unshift(() => centralViaLink.close());
    const centralJob = await ctx.world.raw(ctx.dialect, 'central');
    closers.unshift(() => centralJob.close());

    progress.phase(`${ctx.dialect} · wan: first sync and first legacy cycle (link unshaped, not timed)`);
    await timeSession(site, central, N * (1 + sizes.detailsPerHeader), progress);
    await legacyCycle(siteRaw, centralViaLink, WAN_SITE, centralJob);
    brokerLink.setShaping(true);
    pgLink.setShaping(true);

    const links = { brokerLink, pgLink, site, siteRaw, centralViaLink, centralJob };
    const out: WanResults = {};
    if (measure.wan) out.wan = await wanRounds(ctx, central, sizes, shape, links, progress);
    if (measure.catchUp) out.catchUp = await catchUp(ctx, central, sizes, shape, links, progress);
    return out;
  } finally {
    for (const close of closers) await close().catch(() => undefined);
  }
}

interface Links {
  brokerLink: WanLink;
  pgLink: WanLink;
  site: SiteProcess;
  siteRaw: RawDb;
  centralViaLink: RawDb;
  centralJob: RawDb;
}

async function legacyOverLink(l: Links): Promise<{ cycle: LegacyCycle; wireBytes: number }> {
  l.pgLink.resetBytes();
  const cycle = await legacyCycle(l.siteRaw, l.centralViaLink, WAN_SITE, l.centralJob);
  return { cycle, wireBytes: l.pgLink.bytes.up + l.pgLink.bytes.down };
}

async function sessionOverLink(
  l: Links,
  central: CentralAgent,
  expectedRows: number,
  progress: Progress,
): Promise<{ s: TimedSession; up: number; down: number; floorSeconds: number; time: SessionTime }> {
  l.brokerLink.resetBytes();
  l.brokerLink.startTrace();
  const t0 = performance.now();
  const s = await timeSession(l.site, central, expectedRows, progress);
  const t1 = performance.now();
  const trace = l.brokerLink.stopTrace();
  const { up, down } = l.brokerLink.bytes;
  // Where the session's time went, seen from the link: the site's waits on the far side (each a
  // round trip plus the central's and the broker's work) and its own work between sends. On a quiet
  // machine a small session shows exactly SESSION_ROUND_TRIPS waits.
  const w = WanLink.waits(trace, l.brokerLink.rttMs / 2);
  const lastUp = trace.filter((e) => e.dir === 'up').at(-1)?.t ?? t0;
  const firstUp = trace.find((e) => e.dir === 'up')?.t ?? t0;
  const time: SessionTime = {
    beforeFirstSendSeconds: (firstUp - t0) / 1000,
    waitsOnFarSide: w.onFarSide,
    waitingOnFarSideSeconds: w.onFarSideMs / 1000,
    ownGapsSeconds: w.ownMs / 1000,
    afterLastSendSeconds: (t1 - lastUp) / 1000,
  };
  const floorSeconds =
    l.brokerLink.serializationSeconds(Math.max(up, down)) + (SESSION_ROUND_TRIPS * l.brokerLink.rttMs) / 1000;
  return { s, up, down, floorSeconds, time };
}

async function wanRounds(
  ctx: BenchContext,
  central: CentralAgent,
  sizes: Sizes,
  link: LinkShape,
  l: Links,
  progress: Progress,
): Promise<WanResult> {
  const N = sizes.wanHeaders;
  const changed = Math.round(N * sizes.changedFraction);
  const rounds: WanResult['rounds'] = [];
  for (let round = 1; round <= sizes.wanRounds; round++) {
    const label = `wan round ${round}/${sizes.wanRounds}`;
    await changeSome(l.siteRaw, N, changed, 100 + round);
    progress.phase(`${ctx.dialect} · ${label}: legacy cycle over the link`);
    const legacy = await legacyOverLink(l);
    progress.phase(`${ctx.dialect} · ${label}: sitesync session over the link`);
    const { s, up, down, floorSeconds, time } = await sessionOverLink(
      l,
      central,
      changed * (1 + sizes.detailsPerHeader),
      progress,
    );
    if (s.result.totals.headers !== changed) {
      throw new Error(`wan session sent ${s.result.totals.headers} headers, expected ${changed}`);
    }
    // The same size of change once more with the link unshaped: the session's cost without the link.
    await changeSome(l.siteRaw, N, changed, 200 + round);
    l.brokerLink.setShaping(false);
    const unshaped = await timeSession(l.site, central, changed * (1 + sizes.detailsPerHeader), progress).finally(() =>
      l.brokerLink.setShaping(true),
    );
    rounds.push({
      legacySeconds: legacy.cycle.seconds,
      legacyWireBytes: legacy.wireBytes,
      sitesyncSeconds: s.seconds,
      sitesyncWireBytes: { up, down },
      floorSeconds,
      unshapedSeconds: unshaped.seconds,
      time,
      cpuSeconds: cpuTotal(s.cpuSeconds),
    });
    progress.result(
      `${label}: legacy ${legacy.cycle.seconds.toFixed(2)} s / ${mb(legacy.wireBytes)}, ` +
        `sitesync ${s.seconds.toFixed(3)} s / ${mb(up + down)} (floor ${floorSeconds.toFixed(3)} s, ` +
        `unshaped ${unshaped.seconds.toFixed(3)} s; ${time.waitsOnFarSide} waits on the far side, ` +
        `${time.waitingOnFarSideSeconds.toFixed(3)} s)`,
    );
  }
  const legacySeconds = median(rounds.map((r) => r.legacySeconds));
  const sitesyncSeconds = median(rounds.map((r) => r.sitesyncSeconds));
  const floorSeconds = median(rounds.map((r) => r.floorSeconds));
  return {
    link,
    headers: N,
    changedHeaders: changed,
    legacySeconds,
    legacyWireBytes: median(rounds.map((r) => r.legacyWireBytes)),
    sitesyncSeconds,
    sitesyncWireBytes: median(rounds.map((r) => r.sitesyncWireBytes.up + r.sitesyncWireBytes.down)),
    speedup: legacySeconds / sitesyncSeconds,
    floorSeconds,
    floorRoundTrips: SESSION_ROUND_TRIPS,
    ofFloor: sitesyncSeconds / floorSeconds,
    sitesyncUnshapedSeconds: median(rounds.map((r) => r.unshapedSeconds)),
    speedupAtFloor: legacySeconds / floorSeconds,
    rounds,
  };
}

/**
 * A week offline: `catchUpFraction` of the headers change, each edited `edits` times in separate
 * transactions: 80% updated (header status, and a result value every other edit), 10% deleted
 * (header and results), 10% deleted and re-added with other content. Then one session.
 * Each scenario uses its own headers, so both have the same net change.
 */
async function weekOfEdits(db: RawDb, ids: number[], edits: number, scenario: number) {
  const nDeleted = Math.round(ids.length * 0.1);
  const nReadded = Math.round(ids.length * 0.1);
  const deleted = ids.slice(0, nDeleted);
  const readded = ids.slice(nDeleted, nDeleted + nReadded);
  const updated = ids.slice(nDeleted + nReadded);
  let statements = 0;
  const run = async (sql: string, params: unknown[]) => {
    statements++;
    await db.run(sql, params);
  };
  // Re-added headers: saved, deleted, inserted back, then edited like the others.
  await db.exec(`DROP TABLE IF EXISTS wan_keep_orders; DROP TABLE IF EXISTS wan_keep_results`);
  await db.run(`CREATE TEMP TABLE wan_keep_orders AS SELECT * FROM ${ORDERS_TABLE} WHERE order_id = ANY(?::int[])`, [
    readded,
  ]);
  await db.run(`CREATE TEMP TABLE wan_keep_results AS SELECT * FROM ${RESULTS_TABLE} WHERE order_id = ANY(?::int[])`, [
    readded,
  ]);
  for (let e = 1; e <= edits; e++) {
    const status = `CATCHUP_${scenario}_${e}`;
    await run(`UPDATE ${ORDERS_TABLE} SET status = ? WHERE order_id = ANY(?::int[])`, [
      status,
      [...updated, ...readded],
    ]);
    if (e % 2 === 1) {
      await run(`UPDATE ${RESULTS_TABLE} SET value = ? WHERE order_id = ANY(?::int[]) AND result_id % 100 = 0`, [
        `${scenario}.${e}`,
        updated,
      ]);
    }
    if (e === 1) {
      await run(`DELETE FROM ${RESULTS_TABLE} WHERE order_id = ANY(?::int[])`, [[...deleted, ...readded]]);
      await run(`DELETE FROM ${ORDERS_TABLE} WHERE order_id = ANY(?::int[])`, [[...deleted, ...readded]]);
      await run(`INSERT INTO ${ORDERS_TABLE} SELECT * FROM wan_keep_orders`, []);
      await run(`INSERT INTO ${RESULTS_TABLE} SELECT * FROM wan_keep_results`, []);
      // Re-added with other content than the central holds.
      await run(`UPDATE ${ORDERS_TABLE} SET status = ? WHERE order_id = ANY(?::int[])`, [
        `READDED_${scenario}`,
        readded,
      ]);
    }
  }
  return { updated: updated.length, deleted: deleted.length, readded: readded.length, statements };
}

async function catchUp(
  ctx: BenchContext,
  central: CentralAgent,
  sizes: Sizes,
  link: LinkShape,
  l: Links,
  progress: Progress,
): Promise<CatchUpResult> {
  const N = sizes.wanHeaders;
  const perScenario = Math.round(N * sizes.catchUpFraction);
  if (perScenario * CATCH_UP_EDITS.length > N) throw new Error('catch-up: not enough headers for disjoint scenarios');
  const scenarios: CatchUpScenario[] = [];
  for (const [k, edits] of CATCH_UP_EDITS.entries()) {
    const label = `catch-up ${k + 1}/${CATCH_UP_EDITS.length} (${perScenario} headers × ${edits} edits)`;
    // Every other header of a scenario's own stretch: spread over the table, disjoint between scenarios.
    const ids = Array.from({ length: perScenario }, (_, i) => 1 + k + CATCH_UP_EDITS.length * i);
    progress.phase(`${ctx.dialect} · ${label}: a week of edits at the site`);
    const w = await weekOfEdits(l.siteRaw, ids, edits, k + 1);
    const net = w.updated + w.deleted + w.readded;
    progress.phase(`${ctx.dialect} · ${label}: one catch-up session over the link`);
    const { s, up, down, floorSeconds, time } = await sessionOverLink(
      l,
      central,
      (w.updated + w.readded) * (1 + sizes.detailsPerHeader),
      progress,
    );
    if (s.result.totals.headers !== w.updated + w.readded || s.result.totals.deletions !== w.deleted) {
      throw new Error(
        `catch-up session sent ${s.result.totals.headers} headers and ${s.result.totals.deletions} deletions, ` +
          `expected ${w.updated + w.readded} and ${w.deleted}`,
      );
    }
    const held = await l.centralJob.all<{ n: string }>(
      `SELECT COUNT(*) AS n FROM "${TABLES.header}" WHERE id_efector = ? AND order_id = ANY(?::int[])`,
      [WAN_SITE, ids],
    );
    if (Number(held[0]!.n) !== w.updated + w.readded) {
      throw new Error(
        `catch-up: the central holds ${held[0]!.n} of the scenario's headers, expected ${w.updated + w.readded}`,
      );
    }
    const timeLegacy = k >= CATCH_UP_EDITS.length - sizes.catchUpLegacyCycles;
    if (timeLegacy) progress.phase(`${ctx.dialect} · ${label}: legacy cycle of the same data over the link`);
    const legacy = timeLegacy ? (await legacyOverLink(l)).cycle.seconds : undefined;
    const bytes = up + down;
    scenarios.push({
      editsPerHeader: edits,
      netChangedHeaders: net,
      updated: w.updated,
      deleted: w.deleted,
      readded: w.readded,
      editStatements: w.statements,
      seconds: s.seconds,
      wireBytes: { up, down },
      bytesPerNetChange: bytes / net,
      ...(legacy === undefined ? {} : { legacySeconds: legacy, speedup: legacy / s.seconds }),
      floorSeconds,
      time,
      cpuSeconds: cpuTotal(s.cpuSeconds),
    });
    progress.result(
      `${label}: session ${s.seconds.toFixed(3)} s / ${mb(bytes)} (${Math.round(bytes / net)} B per net change), ` +
        (legacy === undefined ? 'no legacy cycle timed' : `legacy ${legacy.toFixed(2)} s`),
    );
  }
  const first = scenarios[0]!;
  const last = scenarios[scenarios.length - 1]!;
  return {
    link,
    headers: N,
    bytesPerNetChange: last.bytesPerNetChange,
    editGrowth: last.bytesPerNetChange / first.bytesPerNetChange,
    ...(last.speedup === undefined ? {} : { speedup: last.speedup }),
    scenarios,
  };
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(2)} MB`;
}
