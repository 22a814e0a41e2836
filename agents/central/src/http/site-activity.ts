import { SESSION_TABLE, SITE_TABLE, type Database } from '@sitesync/db';
import { formatAge, isoOrNull } from '../status/site-status';

/** The span the activity charts cover. @default 24 hours */
export const DEFAULT_ACTIVITY_HOURS = 24;

/** One session in a site's chart: a bar at the time the central received it, as high as its rows. */
export interface ActivitySession {
  sessionId: string;
  status: string;
  /** When the central received its `session.started` (`created_at`, central clock): the bar's x. */
  at: string;
  /** When the site started it (site clock). */
  siteStartedAt: string | null;
  /** Headers + details + deletions it announced (0 while it is open). */
  rows: number;
  batches: number;
}

/** A point of the lag line: at `at`, the site's lag was `lagSeconds`. */
export interface LagPoint {
  at: string;
  lagSeconds: number;
  /** Set on the point where this complete session's ack brought the lag down. */
  sessionId?: string;
}

export interface SiteActivity {
  site: number;
  from: string;
  to: string;
  sessions: ActivitySession[];
  /**
   * Lag over the span: at each moment, the time since the site started its newest session that was
   * complete (acknowledged) by then, as the Sites table's lag is at this moment. It grows one
   * second a second and drops when a complete session is acknowledged.
   */
  lag: LagPoint[];
  /** The chart: inline SVG, every text escaped. */
  svg: string;
}

interface CompleteSession {
  session_id: unknown;
  id_efector: unknown;
  site_started_at: unknown;
  acked_at: unknown;
}

const ms = (iso: string) => new Date(iso).getTime();

/** Per registered site, its sessions and lag over the last `hours`, with the chart of both. */
export async function readSiteActivity(
  db: Database,
  opts: { now?: Date; hours?: number } = {},
): Promise<SiteActivity[]> {
  const to = opts.now ?? new Date();
  const from = new Date(to.getTime() - (opts.hours ?? DEFAULT_ACTIVITY_HOURS) * 3600_000);
  const fromParam = db.dialect.time(from);
  const sites = await db.query<{ id_efector: unknown }>(
    `SELECT DISTINCT id_efector FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector`,
  );
  const sessions = await db.query<Record<string, unknown>>(
    `SELECT session_id, id_efector, status, site_started_at, created_at, expected_batches, expected_headers, ` +
      `expected_details, expected_deletions FROM ${SESSION_TABLE} WHERE created_at >= ? ORDER BY created_at, session_id`,
    [fromParam],
  );
  const acked = await db.query<CompleteSession>(
    `SELECT session_id, id_efector, site_started_at, acked_at FROM ${SESSION_TABLE} ` +
      `WHERE status = 'complete' AND acked_at >= ? ORDER BY acked_at, session_id`,
    [fromParam],
  );
  // Each site's last complete session before the window (by IX_sync_session_acked: one index probe a site).
  const startedBefore = new Map<number, string | null>();
  for (const s of sites) {
    const [last] = await db.query<{ site_started_at: unknown }>(
      db.dialect.selectLimit(
        `site_started_at FROM ${SESSION_TABLE} WHERE id_efector = ? AND status = 'complete' AND acked_at < ? ` +
          `ORDER BY acked_at DESC`,
        1,
      ),
      [s.id_efector, fromParam],
    );
    if (last) startedBefore.set(Number(s.id_efector), isoOrNull(last.site_started_at));
  }
  return sites.map((s) => {
    const site = Number(s.id_efector);
    const own = sessions
      .filter((r) => Number(r.id_efector) === site)
      .map((r): ActivitySession => ({
        sessionId: String(r.session_id),
        status: String(r.status ?? ''),
        at: isoOrNull(r.created_at)!,
        siteStartedAt: isoOrNull(r.site_started_at),
        rows: ['expected_headers', 'expected_details', 'expected_deletions'].reduce((n, c) => n + Number(r[c] ?? 0), 0),
        batches: Number(r.expected_batches ?? 0),
      }));
    const lag = lagLine(
      startedBefore.get(site) ?? null,
      acked.filter((r) => Number(r.id_efector) === site),
      from,
      to,
    );
    const activity = { site, from: from.toISOString(), to: to.toISOString(), sessions: own, lag };
    return { ...activity, svg: activityChartSvg(activity) };
  });
}

/** The lag line: rising one second a second, dropping at each complete session's ack. */
function lagLine(startedBefore: string | null, acked: CompleteSession[], from: Date, to: Date): LagPoint[] {
  const points: LagPoint[] = [];
  let newestStart = startedBefore === null ? null : ms(startedBefore);
  const lagAt = (t: number) => Math.max(0, Math.round((t - newestStart!) / 1000));
  if (newestStart !== null) points.push({ at: from.toISOString(), lagSeconds: lagAt(from.getTime()) });
  for (const r of acked) {
    const at = isoOrNull(r.acked_at);
    const started = isoOrNull(r.site_started_at);
    if (at === null || started === null) continue;
    const t = ms(at);
    if (newestStart !== null) points.push({ at, lagSeconds: lagAt(t) });
    newestStart = Math.max(newestStart ?? -Infinity, ms(started));
    points.push({ at, lagSeconds: lagAt(t), sessionId: String(r.session_id) });
  }
  if (newestStart !== null) points.push({ at: to.toISOString(), lagSeconds: lagAt(to.getTime()) });
  return points;
}

const WIDTH = 640;
const LEFT = 64;
const RIGHT = 12;
const PANEL = 56;
const ROWS_TOP = 16;
const LAG_TOP = ROWS_TOP + PANEL + 22;
const AXIS_Y = LAG_TOP + PANEL;
const HEIGHT = AXIS_Y + 18;
const PLOT = WIDTH - LEFT - RIGHT;

/** Escapes text for XML content and attribute values. */
export function escapeXml(v: unknown): string {
  return String(v).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

const n = (v: number) => v.toLocaleString('en-US');
const px = (v: number) => String(Math.round(v * 10) / 10);

/**
 * A site's activity as inline SVG: rows per session as bars (coloured by status) over the lag
 * line, on one time axis. The title carries the figures for screen readers; each bar and ack
 * point its own, with `data-*` attributes a script or test can read.
 */
export function activityChartSvg(a: Omit<SiteActivity, 'svg'>): string {
  const t0 = ms(a.from);
  const span = ms(a.to) - t0;
  const x = (iso: string) => LEFT + (Math.min(Math.max(ms(iso) - t0, 0), span) / span) * PLOT;
  const hours = Math.round(span / 3600_000);
  const totalRows = a.sessions.reduce((s, v) => s + v.rows, 0);
  const largest = Math.max(0, ...a.sessions.map((s) => s.rows));
  const maxRows = Math.max(1, largest);
  const maxLag = Math.max(1, ...a.lag.map((p) => p.lagSeconds));
  const lagNow = a.lag.length ? a.lag[a.lag.length - 1]!.lagSeconds : null;
  const failed = a.sessions.filter((s) => s.status === 'incomplete' || s.status === 'abandoned').length;
  const id = `activity-${a.site}`;
  const title =
    `Site ${a.site}, last ${hours} hours: ${n(a.sessions.length)} sessions` +
    (a.sessions.length ? `, ${n(totalRows)} rows (at most ${n(largest)} in one)` : '') +
    (failed ? `, ${n(failed)} incomplete or abandoned` : '') +
    (lagNow === null ? '; never synced completely' : `; lag now ${formatAge(lagNow)}, at most ${formatAge(maxLag)}`) +
    '.';
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="activity" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" ` +
      `height="${HEIGHT}" role="img" aria-labelledby="${id}-title" data-site="${escapeXml(a.site)}">`,
    `<title id="${id}-title">${escapeXml(title)}</title>`,
  ];
  // Frames, axes and labels.
  for (const [top, label, max] of [
    [ROWS_TOP, 'rows', n(largest)],
    [LAG_TOP, 'lag', lagNow === null ? '-' : formatAge(maxLag)],
  ] as const) {
    out.push(
      `<rect class="panel" x="${LEFT}" y="${top}" width="${PLOT}" height="${PANEL}"/>`,
      `<text class="label" x="${LEFT - 6}" y="${top + 10}" text-anchor="end">${escapeXml(max)}</text>`,
      `<text class="label" x="${LEFT - 6}" y="${top + PANEL}" text-anchor="end">0</text>`,
      `<text class="axis-name" x="4" y="${top + PANEL / 2 + 4}">${label}</text>`,
    );
  }
  for (let h = 0; h <= hours; h += Math.max(1, Math.round(hours / 4))) {
    const gx = LEFT + (h / hours) * PLOT;
    const text = h === hours ? 'now' : `-${hours - h}h`;
    out.push(
      `<line class="grid" x1="${px(gx)}" y1="${ROWS_TOP}" x2="${px(gx)}" y2="${AXIS_Y}"/>`,
      `<text class="label" x="${px(gx)}" y="${AXIS_Y + 14}" text-anchor="middle">${text}</text>`,
    );
  }
  // Rows per session.
  const barWidth = Math.max(1.5, Math.min(8, PLOT / Math.max(a.sessions.length, 1) - 1));
  out.push('<g class="sessions">');
  for (const s of a.sessions) {
    const h = s.rows === 0 ? 1 : Math.max(2, (s.rows / maxRows) * (PANEL - 2));
    out.push(
      `<rect class="bar ${escapeXml(s.status)}${s.rows === 0 ? ' nothing' : ''}" x="${px(x(s.at) - barWidth / 2)}" ` +
        `y="${px(ROWS_TOP + PANEL - h)}" width="${px(barWidth)}" height="${px(h)}" data-session="${escapeXml(s.sessionId)}" ` +
        `data-at="${escapeXml(s.at)}" data-rows="${s.rows}" data-status="${escapeXml(s.status)}">` +
        `<title>${escapeXml(`${s.at.slice(11, 16)} UTC: ${n(s.rows)} rows in ${n(s.batches)} batches, ${s.status}`)}</title></rect>`,
    );
  }
  out.push('</g>');
  if (a.sessions.length === 0) {
    out.push(
      `<text class="empty" x="${LEFT + PLOT / 2}" y="${ROWS_TOP + PANEL / 2 + 4}" text-anchor="middle">` +
        `No sessions in the last ${hours} hours</text>`,
    );
  }
  // Lag.
  const y = (lag: number) => LAG_TOP + PANEL - (lag / maxLag) * (PANEL - 2);
  if (a.lag.length) {
    const points = a.lag.map((p) => `${px(x(p.at))},${px(y(p.lagSeconds))}`).join(' ');
    out.push(`<polyline class="lag" points="${points}"/>`, '<g class="acks">');
    for (const p of a.lag.filter((q) => q.sessionId !== undefined)) {
      out.push(
        `<circle class="ack" cx="${px(x(p.at))}" cy="${px(y(p.lagSeconds))}" r="2.5" ` +
          `data-session="${escapeXml(p.sessionId)}" data-at="${escapeXml(p.at)}" data-lag-seconds="${p.lagSeconds}">` +
          `<title>${escapeXml(`${p.at.slice(11, 16)} UTC: complete, lag down to ${formatAge(p.lagSeconds)}`)}</title></circle>`,
      );
    }
    out.push('</g>');
  } else {
    out.push(
      `<text class="empty" x="${LEFT + PLOT / 2}" y="${LAG_TOP + PANEL / 2 + 4}" text-anchor="middle">` +
        `No complete session yet</text>`,
    );
  }
  out.push('</svg>');
  return out.join('');
}
