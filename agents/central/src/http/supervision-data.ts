import type { Database } from '@sitesync/db';
import { ManagementApi, type BrokerConnection, type QueueInfo, type Topology } from '@sitesync/protocol';
import type { CentralConfig } from '../config';
import type { CentralInterventions } from '../interventions/central-interventions';
import {
  deadLetterQueues,
  existingDeadLetterQueues,
  replayDeadLetters,
  scanQueue,
  type DeadLetter,
  type DeadLetterContext,
  type DeadLetterFilter,
} from '../dlq/dead-letters';
import { formatAge, isoOrNull, readSiteStatus, withBrokerFigures, type SiteStatus } from '../status/site-status';
import { SESSION_TABLE, SITE_TABLE } from '@sitesync/db';

/** What the page needs of the central agent (`CentralAgent` has all of it). */
export interface SupervisedCentral {
  readonly config: CentralConfig;
  readonly topology: Topology;
  readonly database: Database | undefined;
  readonly brokerConnection: BrokerConnection | undefined;
  readonly interventionService: CentralInterventions | undefined;
  /** Names, the signing key and the sites' users, for reading and replaying dead letters (rejects before start). */
  deadLetterContext(): Promise<DeadLetterContext>;
}

/** A dead letter as the page shows it: no body, no headers (they may hold patient data). */
export interface DeadLetterSummary {
  queue: string;
  messageId: string;
  type: string;
  site: number | null;
  reason: string;
  /** `signed`, `broker` or `unverified` (not replayed from the page: see `syncctl dlq replay --force`). */
  trust: string;
  error: string;
  ageSeconds: number | null;
  age: string;
  replays: number;
}

export interface SessionSummary {
  sessionId: string;
  site: number;
  version: number;
  status: string;
  siteStartedAt: string | null;
  siteFinishedAt: string | null;
  expectedBatches: number | null;
  expectedHeaders: number | null;
  ackedAt: string | null;
  createdAt: string | null;
}

const MANAGEMENT_TIMEOUT_MS = 3000;
// Page polls from several browsers share one scan of the dead-letter queues.
const DEAD_LETTER_CACHE_MS = 2000;
const MAX_ERROR_CHARS = 300;

export function summarize(d: DeadLetter): DeadLetterSummary {
  return {
    queue: d.queue,
    messageId: d.messageId,
    type: d.type,
    site: d.siteId ?? null,
    reason: d.reason,
    trust: d.trust,
    error: d.error.length > MAX_ERROR_CHARS ? `${d.error.slice(0, MAX_ERROR_CHARS)}…` : d.error,
    ageSeconds: d.ageSeconds ?? null,
    age: formatAge(d.ageSeconds),
    replays: d.replays,
  };
}

function numberOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

/** The `sync_session` columns a `SessionSummary` is made of. */
export const SESSION_COLUMNS =
  'session_id, id_efector, version, status, site_started_at, site_finished_at, expected_batches, ' +
  'expected_headers, acked_at, created_at';

/** A `sync_session` row (of `SESSION_COLUMNS`) as the page shows it. */
export function sessionSummary(r: Record<string, unknown>): SessionSummary {
  return {
    sessionId: String(r.session_id),
    site: Number(r.id_efector),
    version: Number(r.version),
    status: String(r.status ?? ''),
    siteStartedAt: isoOrNull(r.site_started_at),
    siteFinishedAt: isoOrNull(r.site_finished_at),
    expectedBatches: numberOrNull(r.expected_batches),
    expectedHeaders: numberOrNull(r.expected_headers),
    ackedAt: isoOrNull(r.acked_at),
    createdAt: isoOrNull(r.created_at),
  };
}

/** The newest `limit` sync sessions, newest first. */
export async function recentSessions(db: Database, limit: number): Promise<SessionSummary[]> {
  const rows = await db.query<Record<string, unknown>>(
    db.dialect.selectLimit(`${SESSION_COLUMNS} FROM ${SESSION_TABLE} ORDER BY created_at DESC, session_id`, limit),
  );
  return rows.map(sessionSummary);
}

/**
 * Reads and replays dead letters for the page. Scans take messages unacknowledged, which hides
 * them from any other scan until the channel closes: so scans and replays run one at a time, or a
 * poll running beside a replay would make the replay miss its message.
 */
export class DeadLetterBoard {
  private queue: Promise<unknown> = Promise.resolve();
  private cached: { at: number; letters: DeadLetter[]; failed: string[] } | undefined;

  constructor(private readonly central: SupervisedCentral) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The dead-letter queues that exist (a site's appears once the site is declared). */
  private async existingQueues(broker: BrokerConnection, db: Database): Promise<string[]> {
    const sites = await db.query<{ id_efector: unknown }>(
      `SELECT DISTINCT id_efector FROM ${db.dialect.quote(SITE_TABLE)}`,
    );
    return existingDeadLetterQueues(
      broker,
      this.central.topology,
      sites.map((r) => Number(r.id_efector)),
    );
  }

  /** Every dead letter (cached for 2 s), and the queues that could not be read. */
  list(broker: BrokerConnection, db: Database): Promise<{ letters: DeadLetter[]; failed: string[] }> {
    const c = this.cached;
    if (c && Date.now() - c.at < DEAD_LETTER_CACHE_MS) return Promise.resolve(c);
    return this.exclusive(async () => {
      const letters: DeadLetter[] = [];
      const failed: string[] = [];
      const ctx = await this.central.deadLetterContext();
      for (const q of await this.existingQueues(broker, db)) {
        try {
          letters.push(...(await scanQueue(broker, ctx, q)));
        } catch {
          failed.push(q);
        }
      }
      this.cached = { at: Date.now(), letters, failed };
      return this.cached;
    });
  }

  /**
   * Replays the dead letters `filter` picks (one by message id, or a group by site and reason), as
   * the central's own broker user: only verified ones, never forced, so past the replay limit or
   * unroutable ones are refused and kept.
   */
  replay(broker: BrokerConnection, db: Database, filter: DeadLetterFilter): ReturnType<typeof replayDeadLetters> {
    return this.exclusive(async () => {
      this.cached = undefined;
      const queues = await this.existingQueues(broker, db);
      return replayDeadLetters(broker, await this.central.deadLetterContext(), queues, filter);
    });
  }
}

/** Queue depths from the management API, or why there are none (the page shows the rows anyway). */
async function brokerQueues(api: ManagementApi | undefined): Promise<Map<string, QueueInfo> | string> {
  if (!api) return 'the management API URL is not usable';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${MANAGEMENT_TIMEOUT_MS} ms`), MANAGEMENT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([api.queues(), timeout]);
  } catch (err) {
    return (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

/** One row per site and pipeline, with broker figures when the management API answers. */
export async function supervisedSiteStatus(
  central: SupervisedCentral,
  db: Database,
  management: ManagementApi | undefined,
  deadLetters: DeadLetter[] | undefined,
): Promise<{ sites: Array<SiteStatus & { lag: string }>; brokerFigures: string }> {
  const rows = await readSiteStatus(db, { staleAfterSeconds: central.config.staleAfterSeconds });
  const queues = await brokerQueues(management);
  let centralBySite: Map<number, number> | undefined;
  if (deadLetters) {
    const t = central.topology;
    const own = new Set(deadLetterQueues(t, []));
    centralBySite = new Map();
    for (const d of deadLetters) {
      if (own.has(d.queue) && d.siteId !== undefined)
        centralBySite.set(d.siteId, (centralBySite.get(d.siteId) ?? 0) + 1);
    }
  }
  const sites = withBrokerFigures(
    rows,
    central.topology,
    typeof queues === 'string' ? undefined : queues,
    centralBySite,
  );
  return {
    sites: sites.map((s) => ({ ...s, lag: formatAge(s.lagSeconds) })),
    brokerFigures: typeof queues === 'string' ? `unavailable: ${queues}` : 'ok',
  };
}

/** The management API client for the central's broker, or undefined when its URL cannot be used. */
export function managementApiFor(config: CentralConfig): ManagementApi | undefined {
  try {
    return ManagementApi.fromAmqpUrl(config.amqp.url, config.amqp.managementUrl);
  } catch {
    return undefined;
  }
}
