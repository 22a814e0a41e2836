import { SESSION_TABLE, type Database } from '@sitesync/db';
import { isoOrNull } from '../status/site-status';
import { SESSION_COLUMNS, sessionSummary, type SessionSummary } from './supervision-data';

/** Empty sessions of a site shown when its folded line is opened (the newest ones). */
export const EMPTY_SESSIONS_SHOWN = 10;

/**
 * A session that sent nothing: it completed, announcing no batch and no row. A site that syncs
 * every minute writes 1,440 of these a day; the page folds them into one line per site.
 */
const EMPTY_SESSION =
  `(status = 'complete' AND expected_batches = 0 AND COALESCE(expected_headers, 0) = 0 ` +
  `AND COALESCE(expected_details, 0) = 0 AND COALESCE(expected_deletions, 0) = 0)`;

/** One site's empty sessions over the span the listed sessions cover. */
export interface EmptySessionFold {
  site: number;
  count: number;
  /** When the central received the newest / oldest of them (`created_at`). */
  lastAt: string | null;
  firstAt: string | null;
  /** The newest `EMPTY_SESSIONS_SHOWN`, newest first. */
  newest: SessionSummary[];
}

export interface SessionOverview {
  /** The newest `limit` sessions that sent something, failed, were abandoned or are open; newest first. */
  sessions: SessionSummary[];
  /** Per site, its empty sessions received since `since` (all of them when null), by site. */
  empty: EmptySessionFold[];
  /** The oldest listed session's `created_at` when the list is full (older ones are not counted either). */
  since: string | null;
}

/**
 * The recent sessions with the empty ones folded per site, so that quiet sites syncing often do
 * not push the sessions worth reading off the page. Both cover the same span: since the oldest
 * session listed (when `limit` were found), else everything kept.
 */
export async function readSessionOverview(db: Database, limit: number): Promise<SessionOverview> {
  const rows = await db.query<Record<string, unknown>>(
    db.dialect.selectLimit(
      `${SESSION_COLUMNS} FROM ${SESSION_TABLE} WHERE NOT ${EMPTY_SESSION} ORDER BY created_at DESC, session_id`,
      limit,
    ),
  );
  const sessions = rows.map(sessionSummary);
  const oldest = rows.length === limit ? rows[rows.length - 1]?.created_at : undefined;
  const since = oldest === undefined || oldest === null ? null : sessions[sessions.length - 1]!.createdAt;
  const spanSql = oldest === undefined || oldest === null ? '' : ' AND created_at >= ?';
  const spanParams = spanSql ? [oldest] : [];
  const folds = await db.query<{ id_efector: unknown; n: unknown; first_at: unknown }>(
    `SELECT id_efector, COUNT(*) AS n, MIN(created_at) AS first_at FROM ${SESSION_TABLE} ` +
      `WHERE ${EMPTY_SESSION}${spanSql} GROUP BY id_efector ORDER BY id_efector`,
    spanParams,
  );
  // The newest few of every site at once (window functions: every supported database has them).
  const newest = await db.query<Record<string, unknown>>(
    `SELECT ${SESSION_COLUMNS} FROM (SELECT ${SESSION_COLUMNS}, ROW_NUMBER() OVER ` +
      `(PARTITION BY id_efector ORDER BY created_at DESC, session_id) AS newest_rank FROM ${SESSION_TABLE} ` +
      `WHERE ${EMPTY_SESSION}${spanSql}) ranked WHERE newest_rank <= ? ORDER BY id_efector, created_at DESC, session_id`,
    [...spanParams, EMPTY_SESSIONS_SHOWN],
  );
  const shownBySite = new Map<number, SessionSummary[]>();
  for (const r of newest.map(sessionSummary)) shownBySite.set(r.site, [...(shownBySite.get(r.site) ?? []), r]);
  const empty = folds.map((f): EmptySessionFold => {
    const site = Number(f.id_efector);
    const shown = shownBySite.get(site) ?? [];
    return {
      site,
      count: Number(f.n),
      lastAt: shown[0]?.createdAt ?? null,
      firstAt: isoOrNull(f.first_at),
      newest: shown,
    };
  });
  return { sessions, empty, since };
}
