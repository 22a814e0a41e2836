import type { Database } from '@sitesync/db';
import type { Topology } from '@sitesync/protocol';
import { SESSION_TABLE, SITE_DISABLED_AT_COLUMN, SITE_TABLE } from '@sitesync/db';

/** What the broker says of a queue (as the management API answers, see `ManagementApi.queues`). */
export interface QueueFigures {
  messages: number;
  consumers: number;
}

/** A site is stale when no session completed for this long. @default 1 hour */
export const DEFAULT_STALE_AFTER_SECONDS = 3600;

/**
 * - `ok`: its last session completed and is recent;
 * - `syncing`: a session is under way (and the site was heard from recently);
 * - `stale`: no session completed within the threshold (or never), or a session hangs;
 * - `error`: its last session ended incomplete (rejected or missing batches; see `lastError`);
 * - `disabled`: `syncctl sites disable` turned it off: its messages are dead-lettered, and no
 *   session is expected (so it is never `stale`).
 */
export type SiteState = 'ok' | 'syncing' | 'stale' | 'error' | 'disabled';

export interface SiteStatus {
  site: number;
  pipeline: string;
  state: SiteState;
  /** When the site finished its last session (site clock). */
  lastSiteSession: string | null;
  /** When the central finished merging it. */
  lastMerge: string | null;
  rows: number | null;
  headers: number;
  details: number;
  deletions: number;
  /**
   * Seconds since the start of the site's last completed session: every change older than that is
   * central, so this bounds the age of the oldest change not yet synced. Null: never synced.
   */
  lagSeconds: number | null;
  lastSeen: string | null;
  lastError: string | null;
  /** Messages waiting in the site's queue (acks, orders), when the management API answered. */
  queued?: number | null;
  /** Consumers on the site's queue: 0 means its agent is not connected. */
  consumers?: number | null;
  /** Dead letters of this site (its own dead-letter queue and the central's), when known. */
  deadLetters?: number | null;
}

export function isoOrNull(v: unknown): string | null {
  if (v === null || v === undefined || v === '') return null;
  const d = v instanceof Date ? v : new Date(String(v));
  return Number.isNaN(d.getTime()) ? String(v) : d.toISOString();
}

function secondsSince(iso: string | null, now: Date): number | null {
  return iso === null ? null : Math.max(0, Math.round((now.getTime() - new Date(iso).getTime()) / 1000));
}

/** One row per site and pipeline, from `EstadoSyncGeneral` and the session log. */
export async function readSiteStatus(
  db: Database,
  opts: { staleAfterSeconds?: number; now?: Date } = {},
): Promise<SiteStatus[]> {
  const now = opts.now ?? new Date();
  const staleAfter = opts.staleAfterSeconds ?? DEFAULT_STALE_AFTER_SECONDS;
  const rows = await db.query<Record<string, unknown>>(
    `SELECT id_efector, pipeline, status, ultimo_update_efector_fin, ultimo_sync_fecha_fin, ultimo_sync_registros, ` +
      `header_count, detail_count, deletion_count, last_seen, last_error, ${SITE_DISABLED_AT_COLUMN} ` +
      `FROM ${db.dialect.quote(SITE_TABLE)} ` +
      `ORDER BY id_efector, pipeline`,
  );
  const complete = await db.query<{ id_efector: number; started: unknown }>(
    `SELECT id_efector, MAX(site_started_at) AS started FROM ${SESSION_TABLE} WHERE status = 'complete' GROUP BY id_efector`,
  );
  const lastComplete = new Map(complete.map((r) => [Number(r.id_efector), isoOrNull(r.started)]));
  return rows.map((r) => {
    const site = Number(r.id_efector);
    const lagSeconds = secondsSince(lastComplete.get(site) ?? null, now);
    const lastSeen = isoOrNull(r.last_seen);
    const seenAgo = secondsSince(lastSeen, now);
    const status = String(r.status ?? '');
    let state: SiteState;
    if (r[SITE_DISABLED_AT_COLUMN] !== null && r[SITE_DISABLED_AT_COLUMN] !== undefined) state = 'disabled';
    else if (status === 'error') state = 'error';
    else if (status === 'syncing' && seenAgo !== null && seenAgo <= staleAfter) state = 'syncing';
    else if (lagSeconds === null || lagSeconds > staleAfter || status === 'syncing') state = 'stale';
    else state = 'ok';
    return {
      site,
      pipeline: String(r.pipeline),
      state,
      lastSiteSession: isoOrNull(r.ultimo_update_efector_fin),
      lastMerge: isoOrNull(r.ultimo_sync_fecha_fin),
      rows:
        r.ultimo_sync_registros === null || r.ultimo_sync_registros === undefined
          ? null
          : Number(r.ultimo_sync_registros),
      headers: Number(r.header_count ?? 0),
      details: Number(r.detail_count ?? 0),
      deletions: Number(r.deletion_count ?? 0),
      lagSeconds,
      lastSeen,
      lastError: r.last_error === null || r.last_error === undefined ? null : String(r.last_error),
    };
  });
}

/**
 * Adds what the broker knows: messages waiting in each site's queue, its consumers, and its dead
 * letters: its own dead-letter queue, the queue of what the central rejected from it, and
 * `centralDeadLetters` (the central's shared dead-letter queues, counted by the site they claim).
 */
export function withBrokerFigures(
  rows: SiteStatus[],
  t: Topology,
  queues: ReadonlyMap<string, QueueFigures> | undefined,
  centralDeadLetters: Map<number, number> | undefined,
): SiteStatus[] {
  return rows.map((r) => {
    const q = queues?.get(t.siteQueue(r.site));
    const dlq = queues?.get(t.deadLetterQueue(t.siteQueue(r.site)));
    const rejects = queues?.get(t.siteRejectsQueue(r.site));
    const central = centralDeadLetters?.get(r.site);
    const known = dlq !== undefined || rejects !== undefined || central !== undefined;
    return {
      ...r,
      queued: q ? q.messages : null,
      consumers: q ? q.consumers : null,
      deadLetters: known ? (dlq?.messages ?? 0) + (rejects?.messages ?? 0) + (central ?? 0) : null,
    };
  });
}

/** Human units for an age in seconds. */
export function formatAge(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}
