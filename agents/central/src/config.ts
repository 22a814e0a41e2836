import { isIP } from 'node:net';
import { z } from 'zod';
import {
  ConfigError,
  ConfigOrigin,
  DEFAULT_MAX_INFLATED_BYTES,
  DEFAULT_MAX_WIRE_BYTES,
  DEFAULT_SITE_DEAD_LETTER_MAX_BYTES,
  DEFAULT_SITE_DEAD_LETTER_MAX_MESSAGES,
  BrokerUrlsSchema,
  DerivedBrokerUrlsSchema,
  applyEnvOverrides,
  configErrorFrom,
  readConfigFile,
  withBrokerUrls,
} from '@sitesync/protocol';
import { ROLES, isPasswordHash } from './http/auth';
import {
  DEFAULT_LOGIN_BASE_DELAY_SECONDS,
  DEFAULT_LOGIN_FORGET_AFTER_SECONDS,
  DEFAULT_LOGIN_FREE_FAILURES,
  DEFAULT_LOGIN_MAX_DELAY_SECONDS,
  DEFAULT_LOGIN_MAX_TRACKED,
} from './http/login-throttle';
import {
  DEFAULT_INBOX_DAYS,
  DEFAULT_REJECTED_DAYS,
  DEFAULT_RETENTION_BATCH_SIZE,
  DEFAULT_RETENTION_INTERVAL_MINUTES,
  DEFAULT_SESSION_DAYS,
  DEFAULT_TOMBSTONE_DAYS,
  DEFAULT_TRANSFER_LOG_DAYS,
} from './retention/retention-purge';

export const DEFAULT_PREFETCH = 16;

/** A user of the supervision page and HTTP API (see docs/supervision.md). */
const HttpUserSchema = z
  .object({
    /** Basic-auth user name (no ":"). */
    name: z
      .string()
      .min(1)
      .regex(/^[^:\s]+$/, 'no spaces or ":"'),
    /** From `syncctl users hash-password`; never the password itself. */
    passwordHash: z
      .string()
      .refine(isPasswordHash, 'not a hash from `syncctl users hash-password` (scrypt$N$r$p$salt$hash)'),
    role: z.enum(ROLES),
  })
  .strict();

/** Slowing down password and token guessing on the supervision page and API (see docs/supervision.md). */
const LoginThrottleSchema = z
  .object({
    /** Failed logins in a row per user name, and per client address, before the first lockout. @default 5 */
    freeFailures: z.number().int().min(1).default(DEFAULT_LOGIN_FREE_FAILURES),
    /** The first lockout, doubled by each further failure. @default 1 */
    baseDelaySeconds: z.number().positive().default(DEFAULT_LOGIN_BASE_DELAY_SECONDS),
    /** The longest lockout. @default 300 */
    maxDelaySeconds: z.number().positive().default(DEFAULT_LOGIN_MAX_DELAY_SECONDS),
    /** Failures of a user name or address are forgotten this long after its last one. @default 3600 */
    forgetAfterSeconds: z.number().positive().default(DEFAULT_LOGIN_FORGET_AFTER_SECONDS),
    /** User names, and separately addresses, remembered at most (the oldest go first). @default 10000 */
    maxTracked: z.number().int().min(1).default(DEFAULT_LOGIN_MAX_TRACKED),
    /**
     * Reverse proxies whose `X-Forwarded-For` names the client (IP addresses; a comma-separated list
     * in SYNC_LOGIN_TRUSTED_PROXIES). Without them, everyone behind a proxy shares its address. @default []
     */
    trustedProxies: z.preprocess(
      (v) =>
        typeof v === 'string'
          ? v
              .split(',')
              .map((a) => a.trim())
              .filter(Boolean)
          : v,
      z.array(z.string().refine((a) => isIP(a) !== 0, 'not an IP address')).default([]),
    ),
  })
  .strict()
  .refine((t) => t.maxDelaySeconds >= t.baseDelaySeconds, {
    message: 'maxDelaySeconds must be at least baseDelaySeconds',
    path: ['maxDelaySeconds'],
  });

/** Days a kept row lives; 0 = forever. */
const days = (fallback: number) => z.number().int().min(0).default(fallback);

/** How long the central keeps its control tables' finished rows (docs/operations.md, "Retention"). */
const RetentionSchema = z
  .object({
    /** Processed message ids (`sync_inbox`): far beyond any broker redelivery. @default 30 */
    inboxDays: days(DEFAULT_INBOX_DAYS),
    /** Closed sessions (`sync_session`); open ones and those a page shows stay. @default 90 */
    sessionDays: days(DEFAULT_SESSION_DAYS),
    /** Dead-lettered batch marks (`sync_rejected`) of closed sessions. @default 90 */
    rejectedDays: days(DEFAULT_REJECTED_DAYS),
    /** Finished intervention transfers (`intervention_transfer`). @default 365 */
    transferLogDays: days(DEFAULT_TRANSFER_LOG_DAYS),
    /** Ledger tombstones (`sync_ledger.deleted`): a batch older than this must not be replayed. @default 365 */
    tombstoneDays: days(DEFAULT_TOMBSTONE_DAYS),
    /** How often the purge runs (and once at start). @default 60 */
    intervalMinutes: z.number().int().positive().default(DEFAULT_RETENTION_INTERVAL_MINUTES),
    /** Rows per DELETE statement: each commits on its own, so no lock is held long. @default 500 */
    batchSize: z.number().int().min(1).max(5000).default(DEFAULT_RETENTION_BATCH_SIZE),
  })
  .strict()
  .refine((r) => r.tombstoneDays === 0 || (r.inboxDays !== 0 && r.tombstoneDays >= r.inboxDays), {
    message: 'tombstoneDays must be 0 (keep forever) or at least inboxDays (a nonzero inboxDays)',
    path: ['tombstoneDays'],
  });

export const CentralConfigSchema = z
  .object({
    amqp: z
      .object({
        /** The broker, or the nodes of a cluster (an array): connects to the first that answers. */
        url: BrokerUrlsSchema,
        /** Made from `url` (every node); not set in a file. */
        urls: DerivedBrokerUrlsSchema,
        /** Prefix of every exchange and queue name. @default '' */
        prefix: z.string().default(''),
        /** @default 256 */
        confirmWindow: z.number().int().positive().default(256),
        /** Delivery attempts before the broker dead-letters a message. @default 5 */
        deliveryLimit: z.number().int().positive().default(5),
        /**
         * RabbitMQ management API (queue depths for status and metrics, broker users for `syncctl
         * sites add`). @default http://<amqp host>:15672 with the AMQP URL's credentials
         */
        managementUrl: z.string().url().optional(),
        caFile: z.string().optional(),
        certFile: z.string().optional(),
        keyFile: z.string().optional(),
      })
      .strict()
      .transform(withBrokerUrls),
    db: z.object({ url: z.string().min(1) }).strict(),
    /** Limits on what a site controls (docs/operations.md, "Security model"). */
    limits: z
      .object({
        /** A message body larger than this on the wire is dead-lettered `too-large` unread. @default 16 MiB */
        maxWireBytes: z.number().int().min(1024).default(DEFAULT_MAX_WIRE_BYTES),
        /** A body that inflates past this is dead-lettered `too-large`; inflation stops at it. @default 64 MiB */
        maxInflatedBytes: z.number().int().min(1024).default(DEFAULT_MAX_INFLATED_BYTES),
        /** Dead letters kept per site; past it that site's next ones are dropped and counted. @default 10000 */
        siteDeadLetterMaxMessages: z.number().int().positive().default(DEFAULT_SITE_DEAD_LETTER_MAX_MESSAGES),
        /** Bytes of dead letters kept per site. @default 256 MiB */
        siteDeadLetterMaxBytes: z.number().int().positive().default(DEFAULT_SITE_DEAD_LETTER_MAX_BYTES),
      })
      .strict()
      .default({
        maxWireBytes: DEFAULT_MAX_WIRE_BYTES,
        maxInflatedBytes: DEFAULT_MAX_INFLATED_BYTES,
        siteDeadLetterMaxMessages: DEFAULT_SITE_DEAD_LETTER_MAX_MESSAGES,
        siteDeadLetterMaxBytes: DEFAULT_SITE_DEAD_LETTER_MAX_BYTES,
      }),
    /** Unacknowledged deliveries per consumer. @default 16 */
    prefetch: z.number().int().positive().default(DEFAULT_PREFETCH),
    /** How often the central moves pending transfers and procedure versions forward. @default 1000 */
    dispatchIntervalMs: z.number().int().positive().default(1000),
    /** Re-deliver an unanswered transfer (or procedure it waits on) after this long. @default 30 */
    resendAfterSeconds: z.number().positive().default(30),
    /** Bearer token of the HTTP API (`/api/...`); unset = API off. Prefer SYNC_API_TOKEN_FILE. */
    apiToken: z.string().min(16, 'use at least 16 characters').optional(),
    /** Users of the supervision page and API; with none (and no apiToken) both are off. @default [] */
    users: z
      .array(HttpUserSchema)
      .default([])
      .refine((us) => new Set(us.map((u) => u.name)).size === us.length, 'user names must be unique'),
    /** Throttling of failed logins on the page and API. */
    loginThrottle: LoginThrottleSchema.prefault({}),
    /** A site with no completed session for this long is `stale` in status, metrics and the page. @default 3600 */
    staleAfterSeconds: z.number().int().positive().default(3600),
    /** Purging old rows of the control tables (days per table; 0 = keep forever). */
    retention: RetentionSchema.prefault({}),
    /** HTTP port for /metrics, /healthz and the API; 0 = off. @default 0 */
    httpPort: z.number().int().min(0).max(65535).default(0),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  })
  .strict();

export type CentralConfig = Readonly<z.infer<typeof CentralConfigSchema>>;

const ENV_KEYS = {
  AMQP_URL: { path: ['amqp', 'url'], type: 'urls' },
  AMQP_PREFIX: { path: ['amqp', 'prefix'], type: 'string' },
  AMQP_DELIVERY_LIMIT: { path: ['amqp', 'deliveryLimit'], type: 'number' },
  AMQP_MANAGEMENT_URL: { path: ['amqp', 'managementUrl'], type: 'string' },
  AMQP_CA_FILE: { path: ['amqp', 'caFile'], type: 'string' },
  AMQP_CERT_FILE: { path: ['amqp', 'certFile'], type: 'string' },
  AMQP_KEY_FILE: { path: ['amqp', 'keyFile'], type: 'string' },
  DB_URL: { path: ['db', 'url'], type: 'string' },
  MAX_WIRE_BYTES: { path: ['limits', 'maxWireBytes'], type: 'number' },
  MAX_INFLATED_BYTES: { path: ['limits', 'maxInflatedBytes'], type: 'number' },
  SITE_DEAD_LETTER_MAX_MESSAGES: { path: ['limits', 'siteDeadLetterMaxMessages'], type: 'number' },
  SITE_DEAD_LETTER_MAX_BYTES: { path: ['limits', 'siteDeadLetterMaxBytes'], type: 'number' },
  PREFETCH: { path: ['prefetch'], type: 'number' },
  HTTP_PORT: { path: ['httpPort'], type: 'number' },
  API_TOKEN: { path: ['apiToken'], type: 'string' },
  // A JSON array of users (SYNC_USERS_FILE: a file holding it); parsed in loadCentralConfig.
  USERS: { path: ['users'], type: 'string' },
  LOGIN_FREE_FAILURES: { path: ['loginThrottle', 'freeFailures'], type: 'number' },
  LOGIN_BASE_DELAY_SECONDS: { path: ['loginThrottle', 'baseDelaySeconds'], type: 'number' },
  LOGIN_MAX_DELAY_SECONDS: { path: ['loginThrottle', 'maxDelaySeconds'], type: 'number' },
  LOGIN_FORGET_AFTER_SECONDS: { path: ['loginThrottle', 'forgetAfterSeconds'], type: 'number' },
  LOGIN_MAX_TRACKED: { path: ['loginThrottle', 'maxTracked'], type: 'number' },
  LOGIN_TRUSTED_PROXIES: { path: ['loginThrottle', 'trustedProxies'], type: 'string' },
  DISPATCH_INTERVAL_MS: { path: ['dispatchIntervalMs'], type: 'number' },
  RESEND_AFTER_SECONDS: { path: ['resendAfterSeconds'], type: 'number' },
  STALE_AFTER_SECONDS: { path: ['staleAfterSeconds'], type: 'number' },
  RETENTION_INBOX_DAYS: { path: ['retention', 'inboxDays'], type: 'number' },
  RETENTION_SESSION_DAYS: { path: ['retention', 'sessionDays'], type: 'number' },
  RETENTION_REJECTED_DAYS: { path: ['retention', 'rejectedDays'], type: 'number' },
  RETENTION_TRANSFER_LOG_DAYS: { path: ['retention', 'transferLogDays'], type: 'number' },
  RETENTION_TOMBSTONE_DAYS: { path: ['retention', 'tombstoneDays'], type: 'number' },
  RETENTION_INTERVAL_MINUTES: { path: ['retention', 'intervalMinutes'], type: 'number' },
  RETENTION_BATCH_SIZE: { path: ['retention', 'batchSize'], type: 'number' },
  LOG_LEVEL: { path: ['logLevel'], type: 'string' },
} as const;

export function parseCentralConfig(raw: unknown): CentralConfig {
  const parsed = CentralConfigSchema.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error);
  return Object.freeze(parsed.data);
}

/**
 * Whether a central config is given at all: a file (`file` or `SYNC_CONFIG`) or the broker URL in
 * `SYNC_AMQP_URL`. syncctl asks before it reaches for the broker where the database alone would do.
 */
export function hasCentralConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(file || env.SYNC_CONFIG || env.SYNC_AMQP_URL);
}

/**
 * Reads the config file (optional) and `SYNC_*` environment overrides: with `hasCentralConfig`, the
 * only place of the central reading `process.env` (syncctl's entry hands its environment here).
 */
export function loadCentralConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): CentralConfig {
  return loadCentralConfigWithOrigin(file, env).config;
}

/** `loadCentralConfig`, and where each key came from (the file or a `SYNC_*` variable), for errors to name. */
export function loadCentralConfigWithOrigin(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { config: CentralConfig; origin: ConfigOrigin } {
  const { raw, path } = readConfigFile(file, env);
  const merged = applyEnvOverrides(raw, env, ENV_KEYS);
  if ((env.SYNC_USERS !== undefined || env.SYNC_USERS_FILE) && typeof merged.users === 'string') {
    try {
      merged.users = JSON.parse(merged.users) as unknown;
    } catch (cause) {
      const from = env.SYNC_USERS !== undefined ? 'SYNC_USERS' : `SYNC_USERS_FILE (${env.SYNC_USERS_FILE})`;
      throw new ConfigError(`${from}: not a JSON array of users: ${(cause as Error).message}`, 'users', { cause });
    }
  }
  const origin = new ConfigOrigin(path, env, ENV_KEYS);
  try {
    return { config: parseCentralConfig(merged), origin };
  } catch (err) {
    throw origin.locate(err, 'amqp.url');
  }
}
