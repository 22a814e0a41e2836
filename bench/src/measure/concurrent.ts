import { fork, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import { Database } from '@sitesync/db';
import { register, siteConfig, writeConfig, type BenchContext } from '../agents.js';
import { cpuMeter, type CpuByGroup } from '../cpu.js';
import type { Sizes } from '../options.js';
import type { Progress } from '../progress.js';
import { sleep } from '../stats.js';
import type { WorkerMessage, WorkerSetup } from '../site-worker.js';

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

interface Worker {
  child: ChildProcess;
  siteId: number;
  result?: Extract<WorkerMessage, { type: 'done' }>;
}

/**
 * Sites publishing at once into one central: every site and every central consumer is its own
 * process (`sync-central run`), as in production. A single site's first sync is the baseline; then
 * `sizes.concurrentSites` sites start their first sync at the same moment. Rows/s end to end
 * (go until the last `session.ack`). Done with one and with two central consumer processes.
 */
export async function benchConcurrent(
  ctx: BenchContext,
  sizes: Sizes,
  repoRoot: string,
  progress: Progress,
): Promise<ConcurrentResult> {
  const runs: ConcurrentRun[] = [];
  for (const consumers of [1, 2]) {
    const centrals: ChildProcess[] = [];
    try {
      progress.phase(`${ctx.dialect} · concurrent sites: starting ${consumers} central process(es)`);
      for (let c = 0; c < consumers; c++) centrals.push(startCentralProcess(ctx, repoRoot, c));
      await waitForConsumers(ctx, consumers, centrals);
      const base = consumers * 1000;
      const single = await runSites(ctx, sizes, repoRoot, [base], progress, `1 site, ${consumers} consumer(s)`);
      const ids = Array.from({ length: sizes.concurrentSites }, (_, i) => base + 1 + i);
      const many = await runSites(ctx, sizes, repoRoot, ids, progress, `${ids.length} sites, ${consumers} consumer(s)`);
      const run: ConcurrentRun = {
        consumers,
        singleSiteRowsPerSecond: single.rowsPerSecond,
        aggregateRowsPerSecond: many.rowsPerSecond,
        fractionOfSingle: many.rowsPerSecond / single.rowsPerSecond,
        seconds: many.seconds,
        cpuSeconds: many.cpuSeconds,
      };
      runs.push(run);
      progress.result(
        `${consumers} consumer(s): one site ${fmt(run.singleSiteRowsPerSecond)} rows/s, ${ids.length} sites ${fmt(run.aggregateRowsPerSecond)} rows/s (${run.fractionOfSingle.toFixed(2)}x)`,
      );
    } finally {
      await Promise.all(centrals.map(stopProcess));
    }
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

function startCentralProcess(ctx: BenchContext, repoRoot: string, n: number): ChildProcess {
  const config = writeConfig(ctx, `central-${n}`, {
    amqp: { url: ctx.world.amqpUrl, prefix: ctx.world.prefix },
    db: { url: ctx.centralUrl },
    logLevel: 'warn',
  });
  const child = spawn(process.execPath, [join(repoRoot, 'agents/central/bin/sync-central.js'), 'run', '--config', config], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') process.stderr.write(`\nsync-central ${n} exited ${code ?? signal}: ${err}\n`);
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
  repoRoot: string,
  siteIds: number[],
  progress: Progress,
  label: string,
): Promise<{ rowsPerSecond: number; seconds: number; cpuSeconds: CpuByGroup }> {
  progress.phase(`${ctx.dialect} · concurrent sites: preparing ${label}`);
  const central = await Database.open(ctx.centralUrl, { role: 'central' });
  try {
    for (const id of siteIds) await register(central, id, { header: 'conc_orders', detail: 'conc_results' });
  } finally {
    await central.close();
  }
  const workers: Worker[] = siteIds.map((siteId) => {
    const name = `conc${siteId}`;
    const setup: WorkerSetup = {
      config: { ...siteConfig(ctx, siteId, ctx.world.dbUrl(ctx.dialect, name)), logLevel: 'warn' },
      dialect: ctx.dialect,
      raw:
        ctx.dialect === 'sqlite'
          ? { path: ctx.world.sqlitePath(name) }
          : { pgUrl: ctx.world.pgUrl, schema: ctx.world.schemaName(name) },
      headers: sizes.headersPerConcurrentSite,
    };
    const child = fork(join(repoRoot, 'bench/dist/site-worker.js'), [], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.send(setup);
    return { child, siteId };
  });
  try {
    let ready = 0;
    const allReady = Promise.all(
      workers.map((w) =>
        waitFor(w, 'ready').then(() => {
          progress.update(++ready, workers.length, 'sites ready');
        }),
      ),
    );
    await allReady;
    progress.phase(`${ctx.dialect} · concurrent sites: ${label} syncing`);
    const cpu = cpuMeter();
    const go = Date.now();
    let finished = 0;
    const done = Promise.all(
      workers.map((w) =>
        waitFor(w, 'done').then((m) => {
          w.result = m;
          progress.update(++finished, workers.length, 'sites acknowledged');
        }),
      ),
    );
    for (const w of workers) w.child.send({ type: 'go' });
    await done;
    const cpuSeconds = cpu();
    const rows = workers.reduce((n, w) => n + w.result!.rows, 0);
    const bad = workers.find((w) => w.result!.status !== 'ok');
    if (bad) throw new Error(`site ${bad.siteId} session ended ${bad.result!.status}: ${bad.result!.error ?? ''}`);
    const expected = siteIds.length * sizes.headersPerConcurrentSite * (1 + sizes.detailsPerHeader);
    if (rows !== expected) throw new Error(`${label}: sites sent ${rows} rows, expected ${expected}`);
    const seconds = (Math.max(...workers.map((w) => w.result!.finishedAt)) - go) / 1000;
    return { rowsPerSecond: rows / seconds, seconds, cpuSeconds };
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  }
}

function waitFor<T extends WorkerMessage['type']>(w: Worker, type: T): Promise<Extract<WorkerMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    let err = '';
    w.child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    const onMessage = (m: WorkerMessage) => {
      if (m.type === type) {
        cleanup();
        resolve(m as Extract<WorkerMessage, { type: T }>);
      } else if (m.type === 'failed') {
        cleanup();
        reject(new Error(`site ${w.siteId}: ${m.error}`));
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`site ${w.siteId} worker exited ${code} before '${type}': ${err}`));
    };
    const cleanup = () => {
      w.child.off('message', onMessage);
      w.child.off('exit', onExit);
    };
    w.child.on('message', onMessage);
    w.child.on('exit', onExit);
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
