import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DialectName } from './options.js';
import type { ConcurrentResult } from './measure/concurrent.js';
import type { IncrementalResult, InitialLoadResult, LatencyResult, LegacyResult } from './measure/main-site.js';
import type { MemoryResult } from './measure/memory.js';
import type { RawBrokerResult } from './measure/raw-broker.js';
import type { CatchUpResult, WanResult } from './measure/wan.js';

/** Everything measured on one dialect, under the keys the benchmark issue names. */
export interface DialectResults {
  legacy?: LegacyResult;
  incremental?: IncrementalResult;
  initialLoad?: InitialLoadResult;
  memory?: MemoryResult;
  concurrentSites?: ConcurrentResult;
  latency?: LatencyResult;
  wan?: WanResult;
  catchUp?: CatchUpResult;
  /** Set when a measurement failed: the run goes on and reports it. */
  errors?: Record<string, string>;
  /** Measurements left out on purpose, with the reason. */
  notMeasured?: Record<string, string>;
}

export interface Target {
  key: string;
  what: string;
  op: '>=' | '<=';
  value: number;
  /** Where a dialect is held to another value than `value`. */
  byDialect?: Partial<Record<DialectName, number>>;
  /**
   * What the value is measured against, where there is such a figure in the same run: the floor
   * (the best the machine or the link allows) or the baseline the ratio divides by.
   */
  against?: { key: string; what: string };
}

/** The targets the benchmark is held to (docs/benchmarks.md). */
export const TARGETS: Target[] = [
  {
    key: 'incremental.speedup',
    what: 'incremental cycle, legacy s / sitesync s',
    op: '>=',
    value: 10,
    against: { key: 'legacy.seconds', what: 'legacy cycle, s' },
  },
  {
    key: 'incremental.bytesRatio',
    what: 'bytes site -> central, legacy / sitesync',
    op: '>=',
    value: 50,
    against: { key: 'legacy.bytes', what: 'legacy bytes' },
  },
  {
    key: 'initialLoad.cpuRatio',
    what: 'initial load CPU-s, sitesync session / raw upsert of the same rows',
    op: '<=',
    value: 3.5,
    byDialect: { sqlite: 2.5 },
    against: { key: 'initialLoad.rawCpuSeconds', what: 'raw upsert CPU-s' },
  },
  {
    key: 'memory.growth',
    what: 'peripheral peak RSS, large / small site',
    op: '<=',
    value: 1.2,
    against: { key: 'memory.small.peakRssBytes', what: 'small site peak RSS, bytes' },
  },
  {
    key: 'concurrentSites.fractionOfSingle',
    what: '20 sites aggregate rows/s / one site rows/s',
    op: '>=',
    value: 0.8,
    against: { key: 'concurrentSites.singleSiteRowsPerSecond', what: 'one site rows/s' },
  },
  {
    key: 'wan.speedup',
    what: 'incremental cycle over a 10 Mbit/s 40 ms link, legacy s / sitesync s',
    op: '>=',
    value: 100,
    against: { key: 'wan.speedupAtFloor', what: 'legacy s / link floor s of the session' },
  },
  {
    key: 'catchUp.editGrowth',
    what: 'catch-up wire bytes per net change, 5 edits / 1 edit per header',
    op: '<=',
    value: 1.1,
    against: { key: 'catchUp.scenarios.0.bytesPerNetChange', what: 'bytes per net change, 1 edit' },
  },
];

export interface TargetResult {
  key: string;
  dialect: DialectName;
  target: string;
  value: number | null;
  pass: boolean | null;
  against?: { key: string; what: string; value: number | null };
}

export function get(obj: unknown, path: string): number | undefined {
  let cur: unknown = obj;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return typeof cur === 'number' ? cur : undefined;
}

/** The value `t` holds `dialect` to. */
export function targetValue(t: Target, dialect: DialectName): number {
  return t.byDialect?.[dialect] ?? t.value;
}

export function evaluate(dialect: DialectName, r: DialectResults): TargetResult[] {
  return TARGETS.map((t) => {
    const v = get(r, t.key);
    const want = targetValue(t, dialect);
    return {
      key: t.key,
      dialect,
      target: `${t.op} ${want}`,
      value: v ?? null,
      pass: v === undefined ? null : t.op === '>=' ? v >= want : v <= want,
      ...(t.against ? { against: { ...t.against, value: get(r, t.against.key) ?? null } } : {}),
    };
  });
}

/** The primary dialect's measurements sit at the top level too (see `measuredOn`). */
export interface BenchReport extends Omit<DialectResults, 'errors'> {
  mode: 'quick' | 'full';
  command: string;
  startedAt: string;
  durationSeconds: number;
  machine: Record<string, unknown>;
  /** The dialect whose figures are at the top level: PostgreSQL (the server-grade database) when measured. */
  dialect: DialectName;
  /** Which dialect each top-level measurement comes from. */
  measuredOn: Record<string, DialectName>;
  dialects: DialectName[];
  skipped: Record<string, string>;
  sizes: Record<string, number>;
  rawBroker?: RawBrokerResult;
  targets: TargetResult[];
  byDialect: Partial<Record<DialectName, DialectResults>>;
}

/** Rounds every number of the report for readability (ratios to 3 significant digits). */
export function tidy<T>(value: T): T {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) => {
      if (typeof v !== 'number' || Number.isInteger(v)) return v;
      return Math.abs(v) >= 100 ? Math.round(v) : Number(v.toPrecision(3));
    }),
  ) as T;
}

export function writeJson(file: string, report: BenchReport): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
}

const n0 = (x: number | undefined) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const n2 = (x: number | undefined) => (x === undefined ? '–' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const mb = (x: number | undefined) => (x === undefined ? '–' : `${(x / 1e6).toFixed(2)} MB`);
const ms = (x: number | undefined) => (x === undefined ? '–' : `${Math.round(x * 1000)} ms`);
const mib = (x: number | undefined) => (x === undefined ? '–' : `${(x / 2 ** 20).toFixed(0)} MiB`);

/** CPU seconds by process group, largest first (the bench process holds the central agent). */
const cpuGroups = (cpu: Record<string, number>) =>
  Object.entries(cpu)
    .filter(([g]) => g !== 'other')
    .sort((a, b) => b[1] - a[1])
    .map(([g, s]) => `${CPU_GROUP_NAMES[g] ?? g} ${n2(s)}`)
    .join(', ');
const CPU_GROUP_NAMES: Record<string, string> = { bench: 'central', nodeChildren: 'site' };

/** What the table says where a measurement was left out on purpose (the reason is in the JSON). */
const NOT_MEASURED_CELL: Record<string, string> = {
  memory: 'quick: SQLite only',
  wan: 'PostgreSQL only',
  catchUp: 'PostgreSQL only',
};

/** The results table (markdown) of one run. */
export function resultsMarkdown(r: BenchReport): string {
  const ds = r.dialects;
  const head = `| measurement | target | ${ds.join(' | ')} |\n|---|---|${ds.map(() => '---|').join('')}`;
  const againstCell = (tr: TargetResult) =>
    tr.against?.value === null || tr.against === undefined
      ? ''
      : ` (against ${tr.against.value >= 1000 ? n0(tr.against.value) : n2(tr.against.value)})`;
  const targetRows = TARGETS.map((t) => {
    const cells = ds.map((d) => {
      const tr = r.targets.find((x) => x.key === t.key && x.dialect === d);
      const measurement = t.key.split('.')[0]!;
      if (!tr || tr.value === null)
        return r.byDialect[d]?.notMeasured?.[measurement]
          ? (NOT_MEASURED_CELL[measurement] ?? 'left out')
          : 'not measured';
      return `${n2(tr.value)} **${tr.pass ? 'pass' : 'FAIL'}**${againstCell(tr)}`;
    });
    const against = t.against ? `; against: \`${t.against.key}\` (${t.against.what})` : '';
    const values = [...new Set(ds.map((d) => targetValue(t, d)))];
    const wanted = values.length === 1 ? String(values[0]) : ds.map((d) => `${targetValue(t, d)} (${d})`).join(', ');
    return `| \`${t.key}\` (${t.what}${against}) | ${t.op === '>=' ? '≥' : '≤'} ${wanted} | ${cells.join(' | ')} |`;
  });
  const ctx = (label: string, f: (x: DialectResults) => string) =>
    `| ${label} | | ${ds.map((d) => f(pick(r, d))).join(' | ')} |`;
  const contextRows = [
    ctx('legacy cycle (s) / bytes', (x) => `${n2(x.legacy?.seconds)} s / ${mb(x.legacy?.bytes)}`),
    ctx(
      'sitesync incremental session (s) / bytes',
      (x) => `${n2(x.incremental?.seconds)} s / ${mb(x.incremental?.bytes)}`,
    ),
    ctx(
      'initial load, rows/s (s), of the median round',
      (x) => `${n0(x.initialLoad?.rowsPerSecond)} (${n2(x.initialLoad?.seconds)} s)`,
    ),
    ctx('initial load: fraction of raw rows/s, of the median round (the fraction its CPU would allow)', (x) =>
      x.initialLoad ? `${n2(x.initialLoad.fractionOfRaw)} (${n2(x.initialLoad.cpuBoundFraction)})` : '–',
    ),
    ctx('initial load: CPU ratio of each round', (x) =>
      x.initialLoad?.rounds?.length ? x.initialLoad.rounds.map((r) => n2(r.cpuRatio)).join(' / ') : '–',
    ),
    ctx(
      'initial load: CPU-s of the median-ratio round, sitesync / raw upsert (sitesync by process; central: the bench process)',
      (x) =>
        x.initialLoad?.sessionCpuSeconds !== undefined
          ? `${n2(x.initialLoad.sessionCpuSeconds)} / ${n2(x.initialLoad.rawCpuSeconds)} (${cpuGroups(x.initialLoad.cpuSeconds)})`
          : '–',
    ),
    ctx('raw upsert, rows/s (fastest method)', (x) =>
      x.initialLoad ? `${n0(x.initialLoad.rawUpsertRowsPerSecond)} (${x.initialLoad.rawUpsertMethod})` : '–',
    ),
    ctx('raw COPY into an empty table, rows/s', (x) => n0(x.initialLoad?.rawCopyRowsPerSecond)),
    ctx('peripheral peak RSS, small / large site', (x) =>
      x.memory
        ? `${mib(x.memory.small.peakRssBytes)} / ${mib(x.memory.large.peakRssBytes)} (${n0(x.memory.small.headers)} / ${n0(x.memory.large.headers)} headers)`
        : '–',
    ),
    ctx('one site / 20 sites, rows/s (1 consumer)', (x) =>
      x.concurrentSites
        ? `${n0(x.concurrentSites.singleSiteRowsPerSecond)} / ${n0(x.concurrentSites.aggregateRowsPerSecond)}`
        : '–',
    ),
    ctx('2 consumers: one site / 20 sites, rows/s (fraction)', (x) =>
      x.concurrentSites
        ? `${n0(x.concurrentSites.twoConsumers.singleSiteRowsPerSecond)} / ${n0(x.concurrentSites.twoConsumers.aggregateRowsPerSecond)} (${n2(x.concurrentSites.twoConsumers.fractionOfSingle)})`
        : '–',
    ),
    ctx('latency p50 / p95 (s), 1 s schedule', (x) =>
      x.latency ? `${n2(x.latency.p50)} / ${n2(x.latency.p95)}` : '–',
    ),
    ctx('wan: legacy cycle (s) / wire bytes', (x) =>
      x.wan ? `${n2(x.wan.legacySeconds)} s / ${mb(x.wan.legacyWireBytes)}` : '–',
    ),
    ctx('wan: sitesync session / wire bytes / link floor, ×floor; same session unshaped', (x) =>
      x.wan
        ? `${ms(x.wan.sitesyncSeconds)} / ${mb(x.wan.sitesyncWireBytes)} / ${ms(x.wan.floorSeconds)}, ×${n2(x.wan.ofFloor)}; ${ms(x.wan.sitesyncUnshapedSeconds)}`
        : '–',
    ),
    ctx('catch-up: bytes per net change, 1 / 5 edits per header', (x) =>
      x.catchUp ? x.catchUp.scenarios.map((c) => n0(c.bytesPerNetChange)).join(' / ') : '–',
    ),
    ctx('catch-up: session (s) / legacy cycle (s) / speedup, 5 edits', (x) => {
      const c = x.catchUp?.scenarios[x.catchUp.scenarios.length - 1];
      return c
        ? `${ms(c.seconds)} / ${c.legacySeconds === undefined ? '–' : `${n2(c.legacySeconds)} s`} / ${c.speedup === undefined ? '–' : n2(c.speedup)}`
        : '–';
    }),
  ];
  const b = r.rawBroker;
  const broker = b
    ? `Raw broker (context, same for both dialects): ${n0(b.messagesPerSecond)} msg/s, ${b.mbPerSecond.toFixed(1)} MB/s ` +
      `for ${n0(b.messages)} messages of ${n0(b.messageBytes)} bytes (publish alone ${n0(b.publishMessagesPerSecond)} msg/s).`
    : '';
  const m = r.machine;
  const errors = ds
    .flatMap((d) => Object.entries(r.byDialect[d]?.errors ?? {}).map(([k, e]) => `- ${d} ${k}: ${e.split('\n')[0]}`))
    .join('\n');
  const s = r.sizes;
  return [
    `Run: **${r.mode}** — \`${r.command}\`, ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${(r.durationSeconds / 60).toFixed(1)} min.`,
    `Machine: ${String(m.cpuModel)}, ${String(m.cores)} cores, ${String(m.memoryGiB)} GiB, Node ${String(m.node)}, ` +
      `RabbitMQ ${String(m.rabbitmq ?? '?')}${m.postgres ? `, PostgreSQL ${String(m.postgres)}` : ''}; broker, databases and agents share the cores.`,
    `Sizes: ${n0(s.headers)} headers × ${s.detailsPerHeader} details, ${(s.changedFraction! * 100).toFixed(0)}% changed per round ` +
      `(${s.incrementalRounds} rounds, medians); initial load in ${s.initialLoadRounds ?? 1} rounds (median); ` +
      `memory ${n0(s.memorySmallHeaders)} / ${n0(s.memoryLargeHeaders)} headers; ` +
      `${s.concurrentSites} sites × ${n0(s.headersPerConcurrentSite)} headers; ${s.latencyChanges} latency probes on a ${n0(s.latencySiteHeaders)}-header site; ` +
      `wan and catch-up on a ${n0(s.wanHeaders)}-header site behind a ${n2((s.wanBitsPerSecond ?? 0) / 1e6)} Mbit/s, ${s.wanRttMs} ms RTT link ` +
      `(${s.wanRounds} wan rounds; catch-up ${((s.catchUpFraction ?? 0) * 100).toFixed(0)}% of the headers, 1 and 5 edits each).` +
      (Object.keys(r.skipped).length
        ? ` Not measured: ${Object.entries(r.skipped)
            .map(([k, v]) => `${k} (${v})`)
            .join(', ')}.`
        : ''),
    '',
    head,
    ...targetRows,
    ...contextRows,
    '',
    broker,
    ...(errors ? ['', 'Errors:', errors] : []),
  ].join('\n');
}

function pick(r: BenchReport, d: DialectName): DialectResults {
  return r.byDialect[d] ?? {};
}

/** Replaces the text between `<!-- results:<mode>:start -->` and `<!-- results:<mode>:end -->`. */
export function rewriteDocs(file: string, mode: 'quick' | 'full', markdown: string): void {
  const start = `<!-- results:${mode}:start -->`;
  const end = `<!-- results:${mode}:end -->`;
  const block = `${start}\n\n${markdown}\n\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n## Results (${mode})\n\n${block}\n`;
  writeFileSync(file, text);
}
