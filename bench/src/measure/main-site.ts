import { cpus } from 'node:os';
import { join } from 'node:path';
import type { CentralAgent } from '@sitesync/central';
import { forgetSentRows, prepareSiteDb, register, siteConfig, startSite, type BenchContext } from '../agents.js';
import { cpuTotal, type CpuByGroup } from '../cpu.js';
import { changeSome } from '../lab-data.js';
import type { Measurement, Sizes } from '../options.js';
import { profiled, type ProfileSummary } from '../profile.js';
import type { Progress } from '../progress.js';
import type { RawDb, RawPg } from '../raw-db.js';
import { median, percentile, sleep, since } from '../stats.js';
import { legacyCycle, type LegacyCycle } from './legacy.js';
import { rawCopy, rawUpsert, type RawLoadResult } from './raw-load.js';
import { inProcessSite, timeSession, type TimedSession, type TimedSite } from './session-timer.js';
import { SiteProcess } from '../site-processes.js';

export const MAIN_SITE = 1;
const LATENCY_SITE = 2;
const TABLES = { header: 'central_orders', detail: 'central_results' };

export interface InitialLoadResult {
  headers: number;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  batches: number;
  /** Message body bytes published (gzip). */
  bytes: number;
  meanBatchBytes: number;
  rawUpsertRowsPerSecond: number;
  /** The fastest raw method, and rows/s of every method tried. */
  rawUpsertMethod: string;
  rawUpsertMethods: Record<string, number>;
  /** The raw upsert's write side alone (site reads excluded), where the method separates them. */
  rawUpsertWriteOnlyRowsPerSecond?: number;
  rawCopyRowsPerSecond?: number;
  /**
   * The session's CPU seconds over the raw upsert's for the same rows (every process but `other`:
   * the agents, the databases, the broker), the median of the rounds' ratios.
   */
  cpuRatio: number;
  /** CPU seconds of the session and of the raw upsert in the round whose ratio is `cpuRatio`. */
  sessionCpuSeconds: number;
  rawCpuSeconds: number;
  /** Of the round whose fraction is the median (see `rounds`). */
  fractionOfRaw: number;
  /**
   * The fraction the initial load would reach if its CPU time (every process but `other`) were
   * spread over all the machine's cores without a gap: rows × cores / CPU seconds, over the raw
   * upsert's rows/s. Work has to be taken out of the pipeline before `fractionOfRaw` can pass this.
   */
  cpuBoundFraction: number;
  rounds: Array<{
    seconds: number;
    rowsPerSecond: number;
    rawUpsertRowsPerSecond: number;
    rawUpsertMethod: string;
    fractionOfRaw: number;
    /** CPU seconds of the session and of the fastest raw method (every process but `other`), and their ratio. */
    cpuSeconds: number;
    rawCpuSeconds: number;
    cpuRatio: number;
    cpuBoundFraction: number;
  }>;
  cpuSeconds: CpuByGroup;
  rawUpsertCpuSeconds: CpuByGroup;
  profile?: ProfileSummary;
}

interface InitialLoadRound {
  tables: { header: string; detail: string };
  first: TimedSession;
  raw: RawLoadResult;
  copy?: Awaited<ReturnType<typeof rawCopy>>;
  profile?: ProfileSummary;
  fraction: number;
}

/**
 * The central side of making the main site's next session a first load again (the site forgets
 * its own side, `SiteProcess.reset`): the ledger forgets the site's pipeline, its
 * `EstadoSyncGeneral` row names new tables, and the previous round's tables are dropped.
 */
async function forgetCentralRows(
  centralRaw: RawDb,
  next: { header: string; detail: string },
  previous: { header: string; detail: string },
): Promise<void> {
  await centralRaw.run(`DELETE FROM sync_ledger WHERE id_efector = ? AND pipeline = 'lab'`, [MAIN_SITE]);
  // as a first load finds it: no dead ledger entries of the previous round (see forgetSentRows)
  if (centralRaw.dialect === 'postgres') await centralRaw.exec(`VACUUM sync_ledger`);
  await centralRaw.run(
    `UPDATE "EstadoSyncGeneral" SET tabla_encabezado = ?, tabla_detalle = ? WHERE id_efector = ? AND pipeline = 'lab'`,
    [next.header, next.detail, MAIN_SITE],
  );
  await centralRaw.exec(`DROP TABLE IF EXISTS "${previous.detail}"`);
  await centralRaw.exec(`DROP TABLE IF EXISTS "${previous.header}"`);
}

/** The legacy cycle's figures are medians of the timed cycles (each after 1% of the headers changed). */
export interface LegacyResult extends LegacyCycle {
  /** The first cycle, into empty final tables (not timed against sitesync). */
  firstCycleSeconds: number;
  cycles: number[];
}

export interface IncrementalResult {
  headers: number;
  changedHeaders: number;
  /** Median sitesync session, start to session.ack. */
  seconds: number;
  /** Median `sitesync_bytes_sent_total` of the session. */
  bytes: number;
  speedup: number;
  bytesRatio: number;
  rounds: Array<{ legacySeconds: number; seconds: number; bytes: number; headersSent: number; detailsSent: number }>;
  cpuSeconds: CpuByGroup;
  profile?: ProfileSummary;
}

export interface LatencyResult {
  changes: number;
  /** Headers of the site (each session re-reads all of them). */
  siteHeaders: number;
  /** Seconds from the change committed at the site to the row readable centrally. */
  p50: number;
  p95: number;
  max: number;
  scheduleSeconds: number;
}

export interface MainSiteResults {
  initialLoad?: InitialLoadResult;
  legacy?: LegacyResult;
  incremental?: IncrementalResult;
  latency?: LatencyResult;
}

/**
 * The main site of a dialect: first full sync (initial load) against the raw upsert and COPY
 * baselines, then rounds of 1% changes timed through the legacy cycle and one sitesync session,
 * then change-to-central latency on a 1-second schedule.
 */
export async function benchMainSite(
  ctx: BenchContext,
  central: CentralAgent,
  sizes: Sizes,
  only: Set<Measurement>,
  progress: Progress,
  profileDir: string | undefined,
  repoRoot: string,
): Promise<MainSiteResults> {
  const out: MainSiteResults = {};
  const N = sizes.headers;
  const totalRows = N * (1 + sizes.detailsPerHeader);
  progress.phase(`${ctx.dialect} · seeding the main site (${N.toLocaleString('en-US')} headers)`);
  const siteUrl = await prepareSiteDb(ctx, 'site1', N, (n) => progress.update(n, N, 'headers'));
  await register(central.database!, MAIN_SITE, TABLES);
  await register(central.database!, MAIN_SITE, {
    header: 'legacy_orders',
    detail: 'legacy_results',
    pipeline: 'legacy',
  });
  // The site agent runs in a process of its own, as deployed (a site is its own machine), so it
  // does not queue behind the central on one event loop; with --profile it runs in this process,
  // where the profiler sees both agents.
  const config = siteConfig(ctx, MAIN_SITE, siteUrl);
  const site: TimedSite & { reset(): Promise<void>; close(): Promise<void> } = profileDir
    ? await (async () => {
        const agent = await startSite(ctx, config);
        return { ...inProcessSite(agent), reset: () => forgetSentRows(agent), close: () => agent.close() };
      })()
    : await SiteProcess.start(repoRoot, {
        dialect: ctx.dialect,
        headers: N,
        seed: false,
        sites: [{ config: { ...config, logLevel: 'warn' }, raw: {} }],
      });
  const siteRaw = await ctx.world.raw(ctx.dialect, 'site1');
  const centralRaw = await ctx.world.raw(ctx.dialect, 'central');
  try {
    // Initial load: always run (the other measurements start from a synced site). Measured in
    // rounds, each a first load into new central tables followed by the raw baselines on the same
    // rows, so that each fraction pairs two figures taken back to back.
    const rounds = only.has('initialLoad') ? sizes.initialLoadRounds : 1;
    const measured: InitialLoadRound[] = [];
    for (let round = 1; round <= rounds; round++) {
      const tables =
        round === 1 ? TABLES : { header: `${TABLES.header}_${round}`, detail: `${TABLES.detail}_${round}` };
      if (round > 1) {
        await site.reset();
        await forgetCentralRows(centralRaw, tables, measured[measured.length - 1]!.tables);
      }
      const label = rounds > 1 ? ` (round ${round}/${rounds})` : '';
      progress.phase(`${ctx.dialect} · initial load through the agents${label}`);
      const [first, profile] = await profiled(
        round === 1 && profileDir ? join(profileDir, `${ctx.dialect}-initial-load.cpuprofile`) : undefined,
        () => timeSession(site, central, totalRows, progress),
      );
      const loaded = first.result.totals.headers + first.result.totals.details;
      if (loaded !== totalRows) throw new Error(`initial load sent ${loaded} rows, expected ${totalRows}`);
      progress.result(`initial load${label}: ${fmt(totalRows / first.seconds)} rows/s (${first.seconds.toFixed(1)} s)`);
      if (!only.has('initialLoad')) break;
      progress.phase(`${ctx.dialect} · raw upsert baseline${label}`);
      const raw = await rawUpsert(siteRaw, centralRaw, MAIN_SITE, tables, (n, m) => {
        progress.update(n, totalRows, `rows (${m})`);
      });
      progress.result(
        `raw upsert: ${Object.entries(raw.methods)
          .map(([m, r]) => `${m} ${fmt(r)} rows/s`)
          .join(', ')}`,
      );
      let copy: Awaited<ReturnType<typeof rawCopy>> | undefined;
      if (ctx.dialect === 'postgres') {
        progress.phase(`${ctx.dialect} · raw COPY baseline${label}`);
        copy = await rawCopy(siteRaw as RawPg, centralRaw as RawPg, MAIN_SITE, tables);
        progress.result(`raw COPY: ${fmt(copy.rowsPerSecond)} rows/s`);
      }
      measured.push({ tables, first, raw, copy, profile, fraction: totalRows / first.seconds / raw.rowsPerSecond });
    }

    if (only.has('initialLoad')) {
      const cores = cpus().length; // as `machine.cores` of the report
      const bound = (m: InitialLoadRound) => (totalRows * cores) / cpuTotal(m.first.cpuSeconds) / m.raw.rowsPerSecond;
      const ratio = (m: InitialLoadRound) => cpuTotal(m.first.cpuSeconds) / cpuTotal(m.raw.cpuSeconds);
      const middle = (by: (m: InitialLoadRound) => number) =>
        [...measured].sort((a, b) => by(a) - by(b))[Math.floor((measured.length - 1) / 2)]!;
      // The round with the median fraction speaks for the run, and the one with the median CPU
      // ratio for the CPU figures; every round is kept.
      const median = middle((m) => m.fraction);
      const byCpu = middle(ratio);
      const { first, raw, copy } = median;
      const rowsPerSecond = totalRows / first.seconds;
      out.initialLoad = {
        headers: N,
        rows: totalRows,
        seconds: first.seconds,
        rowsPerSecond,
        batches: first.result.totals.batches,
        bytes: first.bytes,
        meanBatchBytes: first.bytes / Math.max(1, first.result.totals.batches),
        rawUpsertRowsPerSecond: raw.rowsPerSecond,
        rawUpsertMethod: raw.method,
        rawUpsertMethods: raw.methods,
        ...(raw.writeOnlyRowsPerSecond ? { rawUpsertWriteOnlyRowsPerSecond: raw.writeOnlyRowsPerSecond } : {}),
        ...(copy ? { rawCopyRowsPerSecond: copy.rowsPerSecond } : {}),
        cpuRatio: ratio(byCpu),
        sessionCpuSeconds: cpuTotal(byCpu.first.cpuSeconds),
        rawCpuSeconds: cpuTotal(byCpu.raw.cpuSeconds),
        fractionOfRaw: rowsPerSecond / raw.rowsPerSecond,
        cpuBoundFraction: bound(median),
        rounds: measured.map((m) => ({
          seconds: m.first.seconds,
          rowsPerSecond: totalRows / m.first.seconds,
          rawUpsertRowsPerSecond: m.raw.rowsPerSecond,
          rawUpsertMethod: m.raw.method,
          fractionOfRaw: m.fraction,
          cpuSeconds: cpuTotal(m.first.cpuSeconds),
          rawCpuSeconds: cpuTotal(m.raw.cpuSeconds),
          cpuRatio: ratio(m),
          cpuBoundFraction: bound(m),
        })),
        cpuSeconds: byCpu.first.cpuSeconds,
        rawUpsertCpuSeconds: byCpu.raw.cpuSeconds,
        ...(measured[0]!.profile ? { profile: measured[0]!.profile } : {}),
      };
    }

    if (only.has('legacy') || only.has('incremental')) {
      const r = await incrementalRounds(ctx, site, central, siteRaw, centralRaw, sizes, progress, profileDir);
      out.legacy = r.legacy;
      out.incremental = r.incremental;
    }
  } finally {
    await site.close();
    await siteRaw.close();
  }
  try {
    if (only.has('latency')) out.latency = await latency(ctx, central, centralRaw, sizes, progress);
  } finally {
    await centralRaw.close();
  }
  return out;
}

async function incrementalRounds(
  ctx: BenchContext,
  site: TimedSite,
  central: CentralAgent,
  siteRaw: RawDb,
  centralRaw: RawDb,
  sizes: Sizes,
  progress: Progress,
  profileDir: string | undefined,
): Promise<{ legacy: LegacyResult; incremental: IncrementalResult }> {
  const N = sizes.headers;
  const changed = Math.round(N * sizes.changedFraction);
  progress.phase(`${ctx.dialect} · legacy first cycle (fills its final tables)`);
  const firstLegacy = await legacyCycle(siteRaw, centralRaw, MAIN_SITE);
  progress.result(`legacy first cycle: ${firstLegacy.seconds.toFixed(2)} s`);
  const legacyCycles: LegacyCycle[] = [];
  const rounds: IncrementalResult['rounds'] = [];
  let cpuSeconds: CpuByGroup = {};
  let profile: ProfileSummary | undefined;
  for (let round = 1; round <= sizes.incrementalRounds; round++) {
    const label = `round ${round}/${sizes.incrementalRounds}`;
    progress.phase(`${ctx.dialect} · incremental ${label}: change ${changed} headers, legacy cycle`);
    await changeSome(siteRaw, N, changed, round);
    const legacy = await legacyCycle(siteRaw, centralRaw, MAIN_SITE);
    legacyCycles.push(legacy);
    progress.phase(`${ctx.dialect} · incremental ${label}: sitesync session`);
    const expectedRows = changed * (1 + sizes.detailsPerHeader);
    const [s, prof] = await profiled(
      round === 1 && profileDir ? join(profileDir, `${ctx.dialect}-incremental.cpuprofile`) : undefined,
      () => timeSession(site, central, expectedRows, progress),
    );
    if (prof) profile = prof;
    if (round === 1) cpuSeconds = s.cpuSeconds;
    if (s.result.totals.headers !== changed) {
      throw new Error(`incremental session sent ${s.result.totals.headers} headers, expected ${changed}`);
    }
    rounds.push({
      legacySeconds: legacy.seconds,
      seconds: s.seconds,
      bytes: s.bytes,
      headersSent: s.result.totals.headers,
      detailsSent: s.result.totals.details,
    });
    progress.result(
      `${label}: legacy ${legacy.seconds.toFixed(2)} s / ${mb(legacy.bytes)}, sitesync ${s.seconds.toFixed(2)} s / ${mb(s.bytes)}`,
    );
  }
  const legacySeconds = median(legacyCycles.map((c) => c.seconds));
  const legacyBytes = median(legacyCycles.map((c) => c.bytes));
  const seconds = median(rounds.map((r) => r.seconds));
  const bytes = median(rounds.map((r) => r.bytes));
  const mid = legacyCycles[Math.floor(legacyCycles.length / 2)]!;
  return {
    legacy: {
      seconds: legacySeconds,
      uploadSeconds: median(legacyCycles.map((c) => c.uploadSeconds)),
      mergeSeconds: median(legacyCycles.map((c) => c.mergeSeconds)),
      bytes: legacyBytes,
      headers: mid.headers,
      details: mid.details,
      firstCycleSeconds: firstLegacy.seconds,
      cycles: legacyCycles.map((c) => c.seconds),
    },
    incremental: {
      headers: N,
      changedHeaders: changed,
      seconds,
      bytes,
      speedup: legacySeconds / seconds,
      bytesRatio: legacyBytes / bytes,
      rounds,
      cpuSeconds,
      ...(profile ? { profile } : {}),
    },
  };
}

/**
 * A site on a 1-second schedule (first synced, untimed); one changed row at a time: time from the
 * change until it is readable centrally.
 */
async function latency(
  ctx: BenchContext,
  central: CentralAgent,
  centralRaw: RawDb,
  sizes: Sizes,
  progress: Progress,
): Promise<LatencyResult> {
  const N = sizes.latencySiteHeaders;
  progress.phase(`${ctx.dialect} · latency: preparing a site of ${N.toLocaleString('en-US')} headers`);
  const url = await prepareSiteDb(ctx, 'latency', N);
  await register(central.database!, LATENCY_SITE, { header: 'lat_orders', detail: 'lat_results' });
  const site = await startSite(ctx, siteConfig(ctx, LATENCY_SITE, url, { schedule: { intervalSeconds: 1 } }));
  const siteRaw = await ctx.world.raw(ctx.dialect, 'latency');
  try {
    await timeSession(inProcessSite(site), central, N * (1 + sizes.detailsPerHeader), progress);
    progress.phase(`${ctx.dialect} · latency: ${sizes.latencyChanges} single-row changes, 1 s schedule`);
    site.schedule();
    return await probeLatency(ctx, siteRaw, centralRaw, sizes, progress);
  } finally {
    await site.close();
    await siteRaw.close();
  }
}

async function probeLatency(
  ctx: BenchContext,
  siteRaw: RawDb,
  centralRaw: RawDb,
  sizes: Sizes,
  progress: Progress,
): Promise<LatencyResult> {
  const samples: number[] = [];
  const N = sizes.latencySiteHeaders;
  for (let i = 1; i <= sizes.latencyChanges; i++) {
    progress.update(i - 1, sizes.latencyChanges, 'changes');
    // A random phase against the schedule.
    await sleep(Math.random() * 1000);
    const orderId = 1 + ((i * 7919) % N);
    const marker = `latency probe ${i} ${Date.now()}`;
    const t0 = performance.now();
    await siteRaw.run(`UPDATE lab_orders SET notes = ? WHERE order_id = ?`, [marker, orderId]);
    for (;;) {
      const r = await centralRaw.all<{ notes: string }>(
        `SELECT notes FROM lat_orders WHERE id_efector = ? AND order_id = ?`,
        [LATENCY_SITE, orderId],
      );
      if (r[0]?.notes === marker) break;
      if (since(t0) > 300) throw new Error(`latency probe ${i}: not merged after 300 s`);
      await sleep(10);
    }
    samples.push(since(t0));
  }
  progress.update(sizes.latencyChanges, sizes.latencyChanges, 'changes');
  const res = {
    changes: samples.length,
    siteHeaders: N,
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    max: Math.max(...samples),
    scheduleSeconds: 1,
  };
  progress.result(`latency: p50 ${res.p50.toFixed(2)} s, p95 ${res.p95.toFixed(2)} s`);
  return res;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(2)} MB`;
}
