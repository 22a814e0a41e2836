import { parseArgs } from 'node:util';

export type DialectName = 'sqlite' | 'postgres';

export const MEASUREMENTS = [
  'initialLoad',
  'legacy',
  'incremental',
  'latency',
  'memory',
  'concurrentSites',
  'rawBroker',
  'wan',
  'catchUp',
] as const;
export type Measurement = (typeof MEASUREMENTS)[number];

/** Data sizes of one run (quick or full). */
export interface Sizes {
  /** Headers of the main site (initial load, legacy, incremental, latency). */
  headers: number;
  detailsPerHeader: number;
  /** Share of headers changed before each incremental round. */
  changedFraction: number;
  /** Incremental rounds (each: change 1%, time legacy, time one sitesync session); medians are reported. */
  incrementalRounds: number;
  /** Initial-load rounds (each: a first load into new central tables, then the raw baselines); the median round is reported. */
  initialLoadRounds: number;
  /** Headers of the small and the large site of the memory measurement. */
  memorySmallHeaders: number;
  memoryLargeHeaders: number;
  concurrentSites: number;
  headersPerConcurrentSite: number;
  latencyChanges: number;
  /** Headers of the site the latency probes run on (every session still scans all of them). */
  latencySiteHeaders: number;
  rawBrokerMessages: number;
  /** Headers of the site behind the emulated hospital link (wan, catchUp; PostgreSQL only). */
  wanHeaders: number;
  /** Rounds of the wan measurement (each: change 1%, legacy cycle and one session over the link; medians). */
  wanRounds: number;
  /** The emulated link: rate of each direction and round-trip delay. */
  wanBitsPerSecond: number;
  wanRttMs: number;
  /** Share of the headers each catch-up scenario changes during its week offline. */
  catchUpFraction: number;
  /**
   * Catch-up scenarios, counted from the last, after which a legacy cycle of the same data is timed
   * (the last one's speedup is `catchUp.speedup`).
   */
  catchUpLegacyCycles: number;
}

export const QUICK_SIZES: Sizes = {
  headers: 20_000,
  detailsPerHeader: 5,
  changedFraction: 0.01,
  incrementalRounds: 3,
  // Five at the small size: a round's fraction swings by ±0.08 here, and with three one cold or
  // disturbed round decided the median too often (a round is ~2 s, so two more cost ~10 s per dialect).
  initialLoadRounds: 5,
  memorySmallHeaders: 10_000,
  memoryLargeHeaders: 200_000,
  concurrentSites: 20,
  headersPerConcurrentSite: 1_000,
  latencyChanges: 10,
  latencySiteHeaders: 5_000,
  rawBrokerMessages: 2_000,
  // The hospital's size, as in a full run: a legacy cycle moves the whole site and a session only
  // what changed, so their ratio grows with the site. At 10k headers the link's own floor for the
  // session's bytes and round trip allowed a speedup of ~80, below the target whatever the code did.
  // One round, and no catch-up legacy cycle (~40 s each over the link; `catchUp.speedup` is no
  // target): a quick run took 4.5 min with one on a slow hour of this machine.
  wanHeaders: 100_000,
  wanRounds: 1,
  wanBitsPerSecond: 10_000_000,
  wanRttMs: 40,
  catchUpFraction: 0.1,
  catchUpLegacyCycles: 0,
};

export const FULL_SIZES: Sizes = {
  headers: 100_000,
  detailsPerHeader: 5,
  changedFraction: 0.01,
  incrementalRounds: 3,
  initialLoadRounds: 3,
  memorySmallHeaders: 10_000,
  memoryLargeHeaders: 1_000_000,
  concurrentSites: 20,
  headersPerConcurrentSite: 5_000,
  latencyChanges: 50,
  latencySiteHeaders: 20_000,
  rawBrokerMessages: 20_000,
  // A legacy cycle of 100k headers takes ~90 s on the link; five per run (3 wan rounds, 2 catch-ups).
  wanHeaders: 100_000,
  wanRounds: 3,
  wanBitsPerSecond: 10_000_000,
  wanRttMs: 40,
  catchUpFraction: 0.1,
  catchUpLegacyCycles: 2,
};

export interface BenchOptions {
  quick: boolean;
  sizes: Sizes;
  /** Dialects asked for; PostgreSQL is used only when it answers. */
  dialects: DialectName[];
  only: Set<Measurement>;
  amqpUrl: string;
  pgUrl: string;
  /** Capture CPU profiles of the timed initial-load and incremental sessions. */
  profile: boolean;
  /** Rewrite docs/benchmarks.md (default: yes). */
  writeDocs: boolean;
  /** Log level of the in-process agents. */
  agentLogLevel: string;
  /** The command line, as recorded in the results. */
  command: string;
  /** --only or --dialect narrowed the run: results go to partial.json, never to latest.json or the docs. */
  partial: boolean;
}

const USAGE = `usage: npm run bench [-- --quick] [--dialect sqlite|postgres] [--only m1,m2] [--profile] [--no-docs]
  measurements: ${MEASUREMENTS.join(', ')}
  environment: SITESYNC_BENCH_AMQP_URL, SITESYNC_BENCH_PG_URL, SITESYNC_BENCH_LOG (agent log level)`;

/** Parses the command line and the environment: the only place the bench reads either. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      dialect: { type: 'string', multiple: true },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'no-docs': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const dialects = (values.dialect ?? ['sqlite', 'postgres']).flatMap((d) => d.split(','));
  for (const d of dialects) {
    if (d !== 'sqlite' && d !== 'postgres') throw new Error(`--dialect ${d}: expected sqlite or postgres\n${USAGE}`);
  }
  const only = new Set<Measurement>();
  for (const m of values.only ? values.only.split(',') : MEASUREMENTS) {
    if (!(MEASUREMENTS as readonly string[]).includes(m)) throw new Error(`--only ${m}: unknown measurement\n${USAGE}`);
    only.add(m as Measurement);
  }
  return {
    quick: values.quick,
    sizes: values.quick ? QUICK_SIZES : FULL_SIZES,
    dialects: dialects as DialectName[],
    only,
    amqpUrl: env.SITESYNC_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    pgUrl: env.SITESYNC_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    profile: values.profile,
    writeDocs: !values['no-docs'],
    agentLogLevel: env.SITESYNC_BENCH_LOG ?? 'silent',
    command: ['npm run bench', ...(argv.length ? ['--', ...argv] : [])].join(' '),
    partial: values.dialect !== undefined || only.size < MEASUREMENTS.length,
  };
}
