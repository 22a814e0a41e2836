import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import { Database } from '@sitesync/db';
import { register, siteConfig, writeConfig, type BenchContext } from '../agents.js';
import { cpuMeter, type CpuByGroup } from '../cpu.js';
import type { Sizes } from '../options.js';
import type { Progress } from '../progress.js';
import { sleep } from '../stats.js';
import type { WorkerOrder, WorkerSetup } from '../site-worker.js';
import { forkSiteWorker, stopProcess, waitFor, type Worker } from '../site-processes.js';

export interface ConcurrentRun {
  consumers: number;
  singleSiteRowsPerSecond: number;
  aggregateRowsPerSecond: number;
  fractionOfSingle: number;
  seconds: number;
  cpuSeconds: CpuByGroup;
}

export interface ConcurrentResult {
  sites: number;
  headersPerSite: number;
  /** With one central consumer (the target). */
  singleSiteRowsPerSecond: number;
  aggregateRowsPerSecond: number;
  fractionOfSingle: number;
  twoConsumers: ConcurrentRun;
  /** Aggregate rows/s with two consumers over one. */
  consumerScaling: number;
}

/** A site process (one or several sites). */

/** Sites per process for the concurrent run (the single-site baseline has a process of its own). */
const SITES_PER_PROCESS = 5;

/**
 * Sites publishing at once into one central: each central consumer is its own `sync-central run`
 * process, as in production, and the sites run in processes of their own (five per process). One site's first sync is the baseline; then
 * `sizes.concurrentSites` sites start their first sync at the same moment. Rows/s end to end
 * (go until the last `session.ack`). Done with one and with two central consumer processes; between
 * the two, the sites forget what they sent and the central rows are deleted, so both are first syncs.
 */
export async function benchConcurrent(
  ctx: BenchContext,
  sizes: Sizes,
  repoRoot: string,
  progress: Progress,
): Promise<ConcurrentResult> {
  const single = [100];
  const many = Array.from({ length: sizes.concurrentSites }, (_, i) => 101 + i);
  progress.phase(`${ctx.dialect} · concurrent sites: preparing ${many.length + 1} sites`);
  const groups = [single];
  for (let i = 0; i < many.length; i += SITES_PER_PROCESS) groups.push(many.slice(i, i + SITES_PER_PROCESS));
  const workers = await startWorkers(ctx, sizes, repoRoot, groups, progress);
  const runs: ConcurrentRun[] = [];
  try {
    for (const consumers of [1, 2]) {
      if (consumers > 1) await reset(ctx, workers, progress);
      const centrals: ChildProcess[] = [];
      try {
        progress.phase(`${ctx.dialect} · concurrent sites: starting ${consumers} central process(es)`);
        for (let c = 0; c < consumers; c++) centrals.push(startCentralProcess(ctx, repoRoot, c));
        await waitForConsumers(ctx, consumers, centrals);
        const one = await runSites(ctx, sizes, workers.slice(0, 1), progress, `1 site, ${consumers} consumer(s)`);
        const all = await runSites(
          ctx,
          sizes,
          workers.slice(1),
          progress,
          `${many.length} sites, ${consumers} consumer(s)`,
        );
        const run: ConcurrentRun = {
          consumers,
          singleSiteRowsPerSecond: one.rowsPerSecond,
          aggregateRowsPerSecond: all.rowsPerSecond,
          fractionOfSingle: all.rowsPerSecond / one.rowsPerSecond,
          seconds: all.seconds,
          cpuSeconds: all.cpuSeconds,
        };
        runs.push(run);
        progress.result(
          `${consumers} consumer(s): one site ${fmt(run.singleSiteRowsPerSecond)} rows/s, ${many.length} sites ${fmt(run.aggregateRowsPerSecond)} rows/s (${run.fractionOfSingle.toFixed(2)}x)`,
        );
      } finally {
        await Promise.all(centrals.map(stopProcess));
      }
    }
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.send({ type: 'exit' } satisfies WorkerOrder);
    await sleep(500);
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  }
  const [one, two] = runs as [ConcurrentRun, ConcurrentRun];
  return {
    sites: sizes.concurrentSites,
    headersPerSite: sizes.headersPerConcurrentSite,
    singleSiteRowsPerSecond: one.singleSiteRowsPerSecond,
    aggregateRowsPerSecond: one.aggregateRowsPerSecond,
    fractionOfSingle: one.fractionOfSingle,
    twoConsumers: two,
    consumerScaling: two.aggregateRowsPerSecond / one.aggregateRowsPerSecond,
  };
}

/** Registers the sites and starts one prepared site process each (database seeded, agent started). */
async function startWorkers(
  ctx: BenchContext,
  sizes: Sizes,
  repoRoot: string,
  groups: number[][],
  progress: Progress,
): Promise<Worker[]> {
  const central = await Database.open(ctx.centralUrl, { role: 'central' });
  try {
    for (const id of groups.flat()) await register(central, id, { header: 'conc_orders', detail: 'conc_results' });
  } finally {
    await central.close();
  }
  const workers: Worker[] = groups.map((siteIds) => {
    const setup: WorkerSetup = {
      dialect: ctx.dialect,
      headers: sizes.headersPerConcurrentSite,
      sites: siteIds.map((siteId) => {
        const name = `conc${siteId}`;
        return {
          config: { ...siteConfig(ctx, siteId, ctx.world.dbUrl(ctx.dialect, name)), logLevel: 'warn' },
          raw:
            ctx.dialect === 'sqlite'
              ? { path: ctx.world.sqlitePath(name) }
              : { pgUrl: ctx.world.pgUrl, schema: ctx.world.schemaName(name) },
        };
      }),
    };
    return forkSiteWorker(repoRoot, setup);
  });
  try {
    let ready = 0;
    const total = groups.flat().length;
    await Promise.all(
      workers.map((w) =>
        waitFor(w, 'ready').then(() => {
          ready += w.siteIds.length;
          progress.update(ready, total, 'sites ready');
        }),
      ),
    );
  } catch (err) {
    for (const w of workers) w.child.kill('SIGKILL');
    throw err;
  }
  return workers;
}

/** Sites forget what they sent; the central forgets their rows: the next sessions are first syncs again. */
async function reset(ctx: BenchContext, workers: Worker[], progress: Progress): Promise<void> {
  progress.phase(`${ctx.dialect} · concurrent sites: resetting sites and central rows`);
  const central = await Database.open(ctx.centralUrl, { role: 'central' });
  try {
    const ids = workers.flatMap((w) => w.siteIds).join(', ');
    for (const t of ['conc_results', 'conc_orders', 'sync_ledger'])
      await central.execute(`DELETE FROM ${central.dialect.quote(t)} WHERE id_efector IN (${ids})`);
  } finally {
    await central.close();
  }
  await Promise.all(
    workers.map((w) => {
      const ready = waitFor(w, 'ready');
      w.child.send({ type: 'reset' } satisfies WorkerOrder);
      return ready;
    }),
  );
}

function startCentralProcess(ctx: BenchContext, repoRoot: string, n: number): ChildProcess {
  const config = writeConfig(ctx, `central-${n}`, {
    amqp: { url: ctx.world.amqpUrl, prefix: ctx.world.prefix },
    db: { url: ctx.centralUrl },
    logLevel: 'warn',
  });
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'agents/central/bin/sync-central.js'), 'run', '--config', config],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM')
      process.stderr.write(`\nsync-central ${n} exited ${code ?? signal}: ${err}\n`);
  });
  return child;
}

async function waitForConsumers(ctx: BenchContext, n: number, centrals: ChildProcess[]): Promise<void> {
  const conn = await amqp.connect(ctx.world.amqpUrl);
  try {
    for (let i = 0; i < 600; i++) {
      if (centrals.some((c) => c.exitCode !== null)) throw new Error('a central process exited while starting');
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const q = await ch.checkQueue(ctx.world.topology.centralSyncQueue).catch(() => undefined);
      await ch.close().catch(() => undefined);
      if (q && q.consumerCount >= n) return;
      await sleep(100);
    }
    throw new Error(`central consumers did not start within 60 s`);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function runSites(
  ctx: BenchContext,
  sizes: Sizes,
  workers: Worker[],
  progress: Progress,
  label: string,
): Promise<{ rowsPerSecond: number; seconds: number; cpuSeconds: CpuByGroup }> {
  progress.phase(`${ctx.dialect} · concurrent sites: ${label} syncing`);
  const sites = workers.reduce((n, w) => n + w.siteIds.length, 0);
  const cpu = cpuMeter();
  const go = Date.now();
  let finished = 0;
  const done = Promise.all(
    workers.map((w) =>
      waitFor(w, 'done').then((m) => {
        w.result = m.sites;
        finished += m.sites.length;
        progress.update(finished, sites, 'sites acknowledged');
      }),
    ),
  );
  for (const w of workers) w.child.send({ type: 'go' } satisfies WorkerOrder);
  await done;
  const cpuSeconds = cpu();
  const outcomes = workers.flatMap((w) => w.result!);
  const rows = outcomes.reduce((n, o) => n + o.rows, 0);
  const bad = outcomes.find((o) => o.status !== 'ok');
  if (bad) throw new Error(`site ${bad.siteId} session ended ${bad.status}: ${bad.error ?? ''}`);
  const expected = sites * sizes.headersPerConcurrentSite * (1 + sizes.detailsPerHeader);
  if (rows !== expected) throw new Error(`${label}: sites sent ${rows} rows, expected ${expected}`);
  const seconds = (Math.max(...outcomes.map((o) => o.finishedAt)) - go) / 1000;
  return { rowsPerSecond: rows / seconds, seconds, cpuSeconds };
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
