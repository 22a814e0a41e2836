/**
 * `npm run bench [-- --quick]`: every measurement of docs/benchmarks.md in one run, on SQLite and
 * (when it answers) PostgreSQL, against the local RabbitMQ. Writes bench/results/latest.json and
 * the results table of docs/benchmarks.md. Exit 0 when everything was measured (targets missed
 * included), 1 when a measurement failed, 2 when the services are missing.
 */
import { connect } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import pg from 'pg';
import { startCentral, type BenchContext } from './agents.js';
import { benchConcurrent } from './measure/concurrent.js';
import { benchMainSite } from './measure/main-site.js';
import { benchMemory } from './measure/memory.js';
import { benchRawBroker, type RawBrokerResult } from './measure/raw-broker.js';
import { benchWan } from './measure/wan.js';
import { parseOptions, type BenchOptions, type DialectName } from './options.js';
import { Progress } from './progress.js';
import {
  evaluate,
  resultsMarkdown,
  rewriteDocs,
  tidy,
  writeJson,
  type BenchReport,
  type DialectResults,
} from './report.js';
import { BenchWorld } from './world.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function answers(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

function hostPort(url: string, port: number): [string, number] {
  const u = new URL(url);
  return [u.hostname || '127.0.0.1', Number(u.port) || port];
}

async function brokerVersion(url: string): Promise<string | undefined> {
  const conn = await amqp.connect(url);
  const v = (conn.connection as unknown as { serverProperties?: { version?: string } }).serverProperties?.version;
  await conn.close();
  return v;
}

async function postgresVersion(url: string): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ server_version: string }>('SHOW server_version');
    return r.rows[0]?.server_version;
  } finally {
    await c.end();
  }
}

async function benchDialect(
  opts: BenchOptions,
  world: BenchWorld,
  dialect: DialectName,
  progress: Progress,
): Promise<DialectResults> {
  const ctx: BenchContext = {
    world,
    dialect,
    logLevel: opts.agentLogLevel,
    centralUrl: world.dbUrl(dialect, 'central'),
  };
  const out: DialectResults = {};
  const errors: Record<string, string> = {};
  const attempt = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      errors[name] = (err as Error).stack ?? String(err);
      progress.result(`${dialect} ${name} FAILED: ${(err as Error).message}`);
    }
  };
  const only = opts.only;
  const central = await startCentral(ctx);
  try {
    if (['initialLoad', 'legacy', 'incremental', 'latency'].some((m) => only.has(m as never))) {
      const profileDir = opts.profile ? join(REPO_ROOT, 'bench/results/profiles') : undefined;
      await attempt('mainSite', async () => {
        Object.assign(out, await benchMainSite(ctx, central, opts.sizes, only, progress, profileDir, REPO_ROOT));
      });
    }
    if (only.has('memory') && opts.quick && dialect !== 'sqlite') {
      out.notMeasured = { memory: 'the quick run measures peripheral memory on SQLite only (the full run on both)' };
    } else if (only.has('memory')) {
      await attempt('memory', async () => {
        out.memory = await benchMemory(ctx, central, opts.sizes, REPO_ROOT, progress);
      });
    }
    if (only.has('wan') || only.has('catchUp')) {
      if (dialect !== 'postgres') {
        const why = 'the legacy upload has no network connection to put on a link on SQLite (PostgreSQL only)';
        out.notMeasured = { ...out.notMeasured, wan: why, catchUp: why };
      } else {
        await attempt('wan', async () => {
          const measure = { wan: only.has('wan'), catchUp: only.has('catchUp') };
          Object.assign(out, await benchWan(ctx, central, opts.sizes, measure, REPO_ROOT, progress));
        });
      }
    }
  } finally {
    await central.close();
  }
  if (only.has('concurrentSites')) {
    await attempt('concurrentSites', async () => {
      out.concurrentSites = await benchConcurrent(ctx, opts.sizes, REPO_ROOT, progress);
    });
  }
  if (Object.keys(errors).length) out.errors = errors;
  return out;
}

async function main(): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const started = new Date();
  const t0 = performance.now();
  const progress = new Progress();
  const [ah, ap] = hostPort(opts.amqpUrl, 5672);
  if (!(await answers(ah, ap))) {
    process.stderr.write(`bench: RabbitMQ does not answer on ${ah}:${ap}; start it (see .ci/run) and retry\n`);
    return 2;
  }
  const skipped: Record<string, string> = {};
  const dialects: DialectName[] = [];
  if (opts.dialects.includes('sqlite')) dialects.push('sqlite');
  if (opts.dialects.includes('postgres')) {
    const [ph, pp] = hostPort(opts.pgUrl, 5432);
    if (await answers(ph, pp)) dialects.push('postgres');
    else skipped.postgres = `nothing answers on ${ph}:${pp}`;
  }
  skipped.mssql = (await socketAnswers('/var/run/docker.sock'))
    ? 'not implemented in the bench yet'
    : 'no Docker engine for a SQL Server container';
  if (dialects.length === 0) {
    process.stderr.write('bench: no database to measure\n');
    return 2;
  }

  const world = new BenchWorld(opts.amqpUrl, opts.pgUrl);
  const onSignal = () => {
    progress.done();
    process.stderr.write('bench: interrupted; removing queues, schemas and files\n');
    void world.teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const byDialect: Partial<Record<DialectName, DialectResults>> = {};
  let rawBroker: RawBrokerResult | undefined;
  let failed = false;
  try {
    process.stderr.write(
      `bench: ${opts.quick ? 'quick' : 'full'} run on ${dialects.join(' and ')}; names prefixed ${world.prefix} / bench_${world.id}_*\n`,
    );
    for (const d of dialects) {
      byDialect[d] = await benchDialect(opts, world, d, progress);
      if (byDialect[d]!.errors) failed = true;
    }
    if (opts.only.has('rawBroker')) {
      const sizeFrom = byDialect.postgres?.initialLoad ?? byDialect.sqlite?.initialLoad;
      const size = Math.round(sizeFrom?.meanBatchBytes ?? 100_000);
      try {
        rawBroker = await benchRawBroker(world, opts.sizes.rawBrokerMessages, size, progress);
      } catch (err) {
        failed = true;
        progress.result(`raw broker FAILED: ${(err as Error).message}`);
      }
    }
  } finally {
    progress.phase('cleaning up (queues, schemas, files)');
    await world.teardown();
    progress.done();
  }

  const primary: DialectName = dialects.includes('postgres') ? 'postgres' : 'sqlite';
  // Top-level figures: the primary dialect's, or the other's where the primary did not measure it.
  const measuredOn: Record<string, DialectName> = {};
  const p: DialectResults = {};
  for (const key of [
    'legacy',
    'incremental',
    'initialLoad',
    'memory',
    'concurrentSites',
    'latency',
    'wan',
    'catchUp',
  ] as const) {
    const d = [primary, ...dialects].find((x) => byDialect[x]?.[key] !== undefined);
    if (!d) continue;
    (p as Record<string, unknown>)[key] = byDialect[d]![key];
    measuredOn[key] = d;
  }
  const report: BenchReport = tidy({
    mode: opts.quick ? 'quick' : 'full',
    command: opts.command,
    startedAt: started.toISOString(),
    durationSeconds: (performance.now() - t0) / 1000,
    machine: {
      cpuModel: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      rabbitmq: await brokerVersion(opts.amqpUrl).catch(() => undefined),
      ...(dialects.includes('postgres') ? { postgres: await postgresVersion(opts.pgUrl).catch(() => undefined) } : {}),
    },
    dialect: primary,
    measuredOn,
    dialects,
    skipped,
    sizes: { ...opts.sizes },
    ...(p.legacy ? { legacy: p.legacy } : {}),
    ...(p.incremental ? { incremental: p.incremental } : {}),
    ...(p.initialLoad ? { initialLoad: p.initialLoad } : {}),
    ...(p.memory ? { memory: p.memory } : {}),
    ...(p.concurrentSites ? { concurrentSites: p.concurrentSites } : {}),
    ...(p.latency ? { latency: p.latency } : {}),
    ...(p.wan ? { wan: p.wan } : {}),
    ...(p.catchUp ? { catchUp: p.catchUp } : {}),
    ...(rawBroker ? { rawBroker } : {}),
    targets: dialects.flatMap((d) => evaluate(d, byDialect[d] ?? {})),
    byDialect,
  });
  const written = opts.partial
    ? ['bench/results/partial.json']
    : ['bench/results/latest.json', `bench/results/${report.mode}.json`];
  for (const f of written) writeJson(join(REPO_ROOT, f), report);
  if (opts.writeDocs && !opts.partial) {
    rewriteDocs(join(REPO_ROOT, 'docs/benchmarks.md'), report.mode, resultsMarkdown(report));
    written.push('docs/benchmarks.md');
  }

  process.stderr.write(`\n${resultsMarkdown(report)}\n\n`);
  for (const t of report.targets) {
    process.stderr.write(
      `target ${t.dialect} ${t.key} ${t.target}: ${t.value ?? 'not measured'} ${t.pass === null ? '' : t.pass ? 'pass' : 'MISSED'}` +
        (t.against ? ` (against ${t.against.key} = ${t.against.value ?? 'not measured'}: ${t.against.what})` : '') +
        '\n',
    );
  }
  process.stderr.write(`bench: done in ${(report.durationSeconds / 60).toFixed(1)} min; wrote ${written.join(', ')}\n`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
