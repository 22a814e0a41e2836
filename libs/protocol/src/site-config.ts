import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigOrigin, applyEnvOverrides, configErrorFrom, readConfigFile, type EnvKey } from './config-support';
import { ConfigError } from './errors';
import { BrokerUrlsSchema, DerivedBrokerUrlsSchema, withBrokerUrls } from './broker-urls';
import { SiteIdSchema } from './site-id';
import { HashingFileSchema, type HashingFile } from './pipeline';

export const DEFAULT_MAX_BATCH_ROWS = 5000;
export const DEFAULT_MAX_BATCH_BYTES = 1_000_000;
export const DEFAULT_PAGE_SIZE = 500;
export const DEFAULT_ACK_TIMEOUT_SECONDS = 120;

const ScheduleSchema = z.union([
  z.object({ cron: z.string().min(1) }).strict(),
  z.object({ intervalSeconds: z.number().positive() }).strict(),
]);

export const PeripheralConfigSchema = z
  .object({
    /** The site's efector id. */
    siteId: SiteIdSchema,
    amqp: z
      .object({
        /** The broker, or the nodes of a cluster (an array): connects to the first that answers. */
        url: BrokerUrlsSchema,
        /** Made from `url` (every node); not set in a file. */
        urls: DerivedBrokerUrlsSchema,
        /** Prefix of every exchange and queue name. @default '' */
        prefix: z.string().default(''),
        /** Broker user put in `user_id`; defaults to the URL's user. */
        userId: z.string().optional(),
        /** Delivery attempts on the site queue before the broker dead-letters a message. @default 5 */
        deliveryLimit: z.number().int().positive().default(5),
        /** Unconfirmed publishes in flight. @default 256 */
        confirmWindow: z.number().int().positive().default(256),
        /** PEM files for amqps:// */
        caFile: z.string().optional(),
        certFile: z.string().optional(),
        keyFile: z.string().optional(),
      })
      .strict()
      .transform(withBrokerUrls),
    db: z.object({ url: z.string().min(1) }).strict(),
    /** Hashing files, inline or as `{ "file": "path.json" }` relative to the config file. */
    pipelines: z.array(z.record(z.string(), z.unknown())).min(1),
    /** SQL run on the site database around each session (the legacy stored procedures). */
    hooks: z
      .object({ before: z.string().optional(), legacy: z.string().optional(), after: z.string().optional() })
      .strict()
      .default({}),
    schedule: ScheduleSchema.default({ intervalSeconds: 300 }),
    batch: z
      .object({
        /** Rows (header + details) per batch. @default 5000 */
        maxRows: z.number().int().positive().default(DEFAULT_MAX_BATCH_ROWS),
        /** Uncompressed JSON bytes per batch. @default 1000000 */
        maxBytes: z.number().int().min(1024).default(DEFAULT_MAX_BATCH_BYTES),
        /** Headers read per query. @default 500 */
        pageSize: z.number().int().positive().default(DEFAULT_PAGE_SIZE),
      })
      .strict()
      .default({ maxRows: DEFAULT_MAX_BATCH_ROWS, maxBytes: DEFAULT_MAX_BATCH_BYTES, pageSize: DEFAULT_PAGE_SIZE }),
    /** How long a session waits for the central's `session.ack`. @default 120 */
    ackTimeoutSeconds: z.number().positive().default(DEFAULT_ACK_TIMEOUT_SECONDS),
    /** The session lock expires this long after its last renewal, so a crashed agent blocks the next session at most this long. @default 60 */
    lockTtlSeconds: z.number().positive().default(60),
    /** How often interventions marked for transfer are looked for. @default 2 */
    transferPollSeconds: z.number().positive().default(2),
    /** HTTP port for /metrics and /healthz; 0 = off. @default 0 */
    httpPort: z.number().int().min(0).max(65535).default(0),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  })
  .strict();

export type PeripheralConfigInput = z.input<typeof PeripheralConfigSchema>;
export type PeripheralConfig = Readonly<Omit<z.infer<typeof PeripheralConfigSchema>, 'pipelines'>> & {
  readonly pipelines: readonly HashingFile[];
};

/** Environment variables that override the file, `SYNC_<NAME>` (or `SYNC_<NAME>_FILE` to read a secret). */
const ENV_KEYS: Readonly<Record<string, EnvKey>> = {
  SITE_ID: { path: ['siteId'], type: 'number' },
  AMQP_URL: { path: ['amqp', 'url'], type: 'urls' },
  AMQP_PREFIX: { path: ['amqp', 'prefix'], type: 'string' },
  AMQP_USER_ID: { path: ['amqp', 'userId'], type: 'string' },
  AMQP_DELIVERY_LIMIT: { path: ['amqp', 'deliveryLimit'], type: 'number' },
  AMQP_CA_FILE: { path: ['amqp', 'caFile'], type: 'string' },
  AMQP_CERT_FILE: { path: ['amqp', 'certFile'], type: 'string' },
  AMQP_KEY_FILE: { path: ['amqp', 'keyFile'], type: 'string' },
  DB_URL: { path: ['db', 'url'], type: 'string' },
  SCHEDULE_CRON: { path: ['schedule', 'cron'], type: 'string' },
  SCHEDULE_INTERVAL_SECONDS: { path: ['schedule', 'intervalSeconds'], type: 'number' },
  HOOK_BEFORE: { path: ['hooks', 'before'], type: 'string' },
  HOOK_LEGACY: { path: ['hooks', 'legacy'], type: 'string' },
  HOOK_AFTER: { path: ['hooks', 'after'], type: 'string' },
  ACK_TIMEOUT_SECONDS: { path: ['ackTimeoutSeconds'], type: 'number' },
  HTTP_PORT: { path: ['httpPort'], type: 'number' },
  LOG_LEVEL: { path: ['logLevel'], type: 'string' },
};

/** Validates a raw config (after env overrides) and loads referenced hashing files. */
export function parsePeripheralConfig(raw: unknown, baseDir = process.cwd()): PeripheralConfig {
  const parsed = PeripheralConfigSchema.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error);
  const cfg = parsed.data;
  const pipelines = cfg.pipelines.map((p, i) => {
    let json: unknown = p;
    if (typeof p.file === 'string') {
      const path = resolve(baseDir, p.file);
      try {
        json = JSON.parse(readFileSync(path, 'utf8'));
      } catch (cause) {
        const key = `pipelines.${i}.file`;
        throw new ConfigError(`config key "${key}": cannot read ${path}: ${(cause as Error).message}`, key, { cause });
      }
    }
    const h = HashingFileSchema.safeParse(json);
    if (!h.success) throw configErrorFrom(h.error, `pipelines.${i}.`);
    return h.data;
  });
  const names = new Set<string>();
  pipelines.forEach((p, i) => {
    if (names.has(p.name))
      throw new ConfigError(
        `config key "pipelines.${i}.name": duplicate pipeline name ${p.name}`,
        `pipelines.${i}.name`,
      );
    names.add(p.name);
  });
  return Object.freeze({ ...cfg, pipelines });
}

/** Reads the site config file (optional) and the environment: the only place of the site agent reading `process.env`. */
export function loadPeripheralConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): PeripheralConfig {
  return loadPeripheralConfigWithOrigin(file, env).config;
}

/** `loadPeripheralConfig`, and where each key came from (the file or a `SYNC_*` variable), for errors to name. */
export function loadPeripheralConfigWithOrigin(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { config: PeripheralConfig; origin: ConfigOrigin } {
  const { raw, path } = readConfigFile(file, env);
  const merged = applyEnvOverrides(raw, env, ENV_KEYS);
  // SYNC_PIPELINE_FILES=/config/lab.json,/config/pharmacy.json: the pipelines, for a container configured by environment only.
  const files = env.SYNC_PIPELINE_FILES?.split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  if (files?.length) merged.pipelines = files.map((f) => ({ file: resolve(f) }));
  const origin = new ConfigOrigin(path, env, ENV_KEYS);
  try {
    return { config: parsePeripheralConfig(merged, file ? dirname(resolve(file)) : process.cwd()), origin };
  } catch (err) {
    throw origin.locate(err, 'amqp.url');
  }
}
