import type { Channel, GetMessage } from 'amqplib';
import {
  CENTRAL_INTERVENTION_BINDINGS,
  CENTRAL_SYNC_BINDINGS,
  DEFAULT_MAX_INFLATED_BYTES,
  HEADER_ERROR,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_ORIGINAL_USER,
  HEADER_REASON,
  HEADER_REPLAYS,
  HEADER_SITE,
  UnroutableError,
  inflateBody,
  type BrokerConnection,
  type EncodedMessage,
  type Topology,
} from '@sitesync/protocol';
import type { Queryable } from '@sitesync/db';
import { HEADER_SIGNATURE, type MessageSigner } from './message-signer';
import { senderHeaders, signedReplay } from './dead-lettering';
import { expectedUser } from '../merge/site-registry';
import { SITE_TABLE } from '@sitesync/db';

/** Replays refused past this many, unless forced: a message that keeps failing needs a fix, not a loop. */
export const DEFAULT_MAX_REPLAYS = 3;
/** Body fields masked by `show` unless `--raw`: patient data stays out of terminals and tickets. */
export const MASKED_FIELD =
  /patient|paciente|name|nombre|dni|document|birth|nacimiento|address|direccion|phone|telefono|email/i;

/** What reads and replays dead letters needs: the names, the central's signing key, and who each site is. */
export interface DeadLetterContext {
  topology: Topology;
  signer: MessageSigner;
  /** The sites each broker user speaks for (`EstadoSyncGeneral.broker_user`, default `site-<id>`). */
  sitesOfUser: ReadonlyMap<string, ReadonlySet<number>>;
}

/** Which sites each broker user speaks for, from `EstadoSyncGeneral`. */
export async function loadSitesOfUser(db: Queryable): Promise<Map<string, Set<number>>> {
  const rows = await db.query<{ id_efector: unknown; broker_user: string | null }>(
    `SELECT DISTINCT id_efector, broker_user FROM ${db.dialect.quote(SITE_TABLE)}`,
  );
  const out = new Map<string, Set<number>>();
  for (const r of rows) {
    const site = Number(r.id_efector);
    const user = expectedUser({ id_efector: site, broker_user: r.broker_user });
    out.set(user, (out.get(user) ?? new Set()).add(site));
  }
  return out;
}

/**
 * How far a dead letter's origin is known: `signed` (the central made it and its signature over
 * the origin verifies), `broker` (the broker dead-lettered it: the origin follows from the queue it
 * died in), or `unverified` (anything else: its headers are whatever a sender wrote).
 */
export type DeadLetterTrust = 'signed' | 'broker' | 'unverified';

/** Where a replay sends a dead letter, and the broker user it speaks for ('' for none). */
export interface ReplayRoute {
  exchange: string;
  routingKey: string;
  user: string;
}

/** One dead letter as an operator sees it. */
export interface DeadLetter {
  queue: string;
  messageId: string;
  type: string;
  /** The site its verified route names (the first segment of its routing key); undefined when unverified. */
  siteId: number | undefined;
  /** The site its `x-sitesync-site` header claims: shown, never acted on. */
  claimedSiteId: number | undefined;
  reason: string;
  error: string;
  /** Seconds since it was first published (its timestamp property). */
  ageSeconds: number | undefined;
  trust: DeadLetterTrust;
  /** The verified route back (undefined when `unverified`): the only one a replay uses unforced. */
  route: ReplayRoute | undefined;
  /** Where it came from: the verified route, or, when unverified, what its headers claim. */
  originalExchange: string;
  originalRoutingKey: string;
  replays: number;
  headers: Record<string, unknown>;
  xDeath: unknown[];
  contentEncoding: string | undefined;
  content: Buffer;
}

export interface DeadLetterFilter {
  messageId?: string;
  /** The site its verified route names (never matches an unverified dead letter). */
  siteId?: number;
  /** The site it is listed under (`listedSite`): also matches an unverified one claiming that site. */
  listedSiteId?: number;
  type?: string;
  reason?: string;
}

/**
 * The site a dead letter is listed under: the site its verified route names, else the site its
 * header claims. For grouping on a page only: a replay still needs a verified route.
 */
export function listedSite(d: DeadLetter): number | undefined {
  return d.siteId ?? d.claimedSiteId;
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return undefined;
}

/** Whether a topic routing key matches a binding pattern of `*` and literal words (no `#`). */
function topicMatches(pattern: string, key: string): boolean {
  const p = pattern.split('.');
  const k = key.split('.');
  return p.length === k.length && p.every((w, i) => w === '*' || w === k[i]);
}

/**
 * The route a broker-made dead letter takes back, derived from the queue it died in (which only
 * the broker can have put it in) rather than from its headers: the exchange that feeds that work
 * queue, and the routing key the broker recorded, accepted only if it leads back into the same
 * queue. The user is the message's `user_id` (checked by the broker when it was first published),
 * or the one the central's signature on a replay vouches for.
 */
function brokerRoute(
  ctx: DeadLetterContext,
  queue: string,
  m: GetMessage,
  xDeath: Array<Record<string, unknown>>,
): { route: ReplayRoute; replays: number } | undefined {
  const t = ctx.topology;
  const work = t.workQueueOf(queue);
  if (!work) return undefined;
  const death = xDeath.find((e) => e.queue === work);
  const keys = death?.['routing-keys'];
  const routingKey = Array.isArray(keys) && typeof keys[0] === 'string' ? keys[0] : undefined;
  if (!routingKey) return undefined;
  let exchange: string;
  if (work === t.centralSyncQueue || work === t.centralInterventionQueue) {
    const patterns = work === t.centralSyncQueue ? CENTRAL_SYNC_BINDINGS : CENTRAL_INTERVENTION_BINDINGS;
    if (!patterns.some((p) => topicMatches(p, routingKey))) return undefined;
    exchange = t.up;
  } else {
    const site = /^site\.([1-9]\d{0,9})$/.exec(work.slice(t.prefix.length));
    if (!work.startsWith(t.prefix) || !site || !routingKey.startsWith(`${site[1]}.`)) return undefined;
    exchange = t.down;
  }
  const replay = signedReplay(m, { exchange, routingKey }, ctx.signer);
  if (replay) return { route: { exchange, routingKey, user: replay.user }, replays: replay.replays };
  const userId = typeof m.properties.userId === 'string' ? m.properties.userId : '';
  // A sender may have planted its own x-death entry, which a broker before 3.13 keeps when it
  // dead-letters the message: up the routing key must name a site the publishing user speaks for.
  if (exchange === t.up && !ctx.sitesOfUser.get(userId)?.has(Number(routingKey.split('.')[0]))) return undefined;
  return { route: { exchange, routingKey, user: userId }, replays: 0 };
}

function headerText(h: Record<string, unknown>, key: string): string {
  return typeof h[key] === 'string' ? h[key] : '';
}

function toDeadLetter(ctx: DeadLetterContext, queue: string, m: GetMessage): DeadLetter {
  const h = (m.properties.headers ?? {}) as Record<string, unknown>;
  const xDeath = Array.isArray(h['x-death']) ? (h['x-death'] as Array<Record<string, unknown>>) : [];
  const messageId = typeof m.properties.messageId === 'string' ? m.properties.messageId : '';
  const claimed = {
    queue: headerText(h, HEADER_ORIGINAL_QUEUE),
    exchange: headerText(h, HEADER_ORIGINAL_EXCHANGE),
    routingKey: headerText(h, HEADER_ORIGINAL_ROUTING_KEY),
    user: headerText(h, HEADER_ORIGINAL_USER),
    reason: headerText(h, HEADER_REASON),
    replays: typeof h[HEADER_REPLAYS] === 'number' ? h[HEADER_REPLAYS] : -1,
  };
  let trust: DeadLetterTrust = 'unverified';
  let route: ReplayRoute | undefined;
  let replays = 0;
  let reason = claimed.reason || 'unknown';
  if (
    h[HEADER_SIGNATURE] !== undefined &&
    ctx.signer.verifyDeadLetter(messageId, m.content, claimed, h[HEADER_SIGNATURE])
  ) {
    trust = 'signed';
    route = { exchange: claimed.exchange, routingKey: claimed.routingKey, user: claimed.user };
    replays = claimed.replays;
  } else {
    const derived = brokerRoute(ctx, queue, m, xDeath);
    if (derived) {
      trust = 'broker';
      route = derived.route;
      replays = derived.replays;
      const death = xDeath.find((e) => e.queue === ctx.topology.workQueueOf(queue));
      reason = String(death?.reason ?? 'unknown');
    }
  }
  const first = xDeath[xDeath.length - 1];
  const firstKeys = first?.['routing-keys'];
  const ts = asNumber(m.properties.timestamp);
  return {
    queue,
    messageId,
    type: typeof m.properties.type === 'string' ? m.properties.type : '',
    siteId: route ? asNumber(route.routingKey.split('.')[0]) : undefined,
    claimedSiteId: asNumber(h[HEADER_SITE]),
    reason,
    error: trust === 'signed' ? headerText(h, HEADER_ERROR) : '',
    ageSeconds: ts === undefined ? undefined : Math.max(0, Math.round(Date.now() / 1000 - ts)),
    trust,
    route,
    originalExchange: route?.exchange ?? (claimed.exchange || String(first?.exchange ?? '')),
    originalRoutingKey:
      route?.routingKey ?? (claimed.routingKey || (Array.isArray(firstKeys) ? String(firstKeys[0] ?? '') : '')),
    replays,
    headers: h,
    xDeath,
    contentEncoding: typeof m.properties.contentEncoding === 'string' ? m.properties.contentEncoding : undefined,
    content: m.content,
  };
}

export function matches(d: DeadLetter, f: DeadLetterFilter): boolean {
  return (
    (f.messageId === undefined || d.messageId === f.messageId) &&
    (f.siteId === undefined || d.siteId === f.siteId) &&
    (f.listedSiteId === undefined || listedSite(d) === f.listedSiteId) &&
    (f.type === undefined || d.type === f.type) &&
    (f.reason === undefined || d.reason === f.reason)
  );
}

/**
 * The message body as text (gunzipped), with patient fields masked unless `raw`. A batch's rows
 * (value arrays) are shown as objects named by the pipeline's columns, so they can be read and
 * masked by column.
 */
export function bodyText(d: DeadLetter, raw = false): string {
  let text: string;
  try {
    text = inflateBody(d.content, d.contentEncoding, DEFAULT_MAX_INFLATED_BYTES).toString('utf8');
  } catch {
    return `<${d.content.length} bytes, not readable or inflating past ${DEFAULT_MAX_INFLATED_BYTES} bytes>`;
  }
  if (raw) return text;
  try {
    return JSON.stringify(mask(namedRows(JSON.parse(text))), null, 2);
  } catch {
    return '<not JSON; use --raw to see it>';
  }
}

/** Column names of a batch shape's table, when the body has them. */
function columnNames(table: unknown): string[] | undefined {
  const columns = (table as { columns?: unknown } | null)?.columns;
  if (!Array.isArray(columns)) return undefined;
  const names = columns.map((c) => (c as { name?: unknown } | null)?.name);
  return names.every((n): n is string => typeof n === 'string') ? names : undefined;
}

/**
 * A batch with its rows as objects (column -> value). A row whose values do not pair with the
 * columns (a malformed dead letter, or a shape whose column names cannot be read) becomes
 * `{ "?": values }`, which `mask` hides whole.
 */
function namedRows(body: unknown): unknown {
  const b = body as { pipeline?: { header?: unknown; detail?: unknown }; changes?: unknown } | null;
  if (!b || typeof b !== 'object' || !Array.isArray(b.changes)) return body;
  const headerCols = columnNames(b.pipeline?.header);
  const detailCols = columnNames(b.pipeline?.detail);
  const named = (row: unknown, cols: string[] | undefined) =>
    !Array.isArray(row)
      ? row
      : cols && row.length === cols.length
        ? Object.fromEntries(cols.map((c, i) => [c, row[i] as unknown]))
        : { '?': row };
  return {
    ...b,
    changes: b.changes.map((c: unknown) => {
      const u = c as { header?: unknown; details?: unknown } | null;
      if (!u || typeof u !== 'object') return c;
      return {
        ...u,
        header: named(u.header, headerCols),
        details: Array.isArray(u.details) ? u.details.map((d) => named(d, detailCols)) : u.details,
      };
    }),
  };
}

function mask(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return v.map((x) => mask(x, key));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mask(x, k)]));
  }
  return (MASKED_FIELD.test(key) || key === '?') && v !== null ? '***' : v;
}

/**
 * Reads every message of `queue` without removing it: messages are taken unacknowledged and go
 * back when the channel closes. `take` (if given) picks messages to keep out: it receives each
 * one and the channel, and acks what it consumed.
 */
export async function scanQueue(
  broker: BrokerConnection,
  ctx: DeadLetterContext,
  queue: string,
  take?: (d: DeadLetter, m: GetMessage, ch: Channel) => Promise<void>,
): Promise<DeadLetter[]> {
  return broker.withChannel(async (ch) => {
    const out: DeadLetter[] = [];
    const { messageCount } = await ch.checkQueue(queue);
    for (let i = 0; i < messageCount; i++) {
      const m = await ch.get(queue, { noAck: false });
      if (!m) break;
      const d = toDeadLetter(ctx, queue, m);
      out.push(d);
      if (take) await take(d, m, ch);
    }
    return out;
  });
}

/**
 * The dead-letter queues: the central's shared ones (what the broker dead-letters, and what the
 * central cannot attribute to a site), and per registered site, the one for what the central
 * rejected from it and the one beside the site's own queue.
 */
export function deadLetterQueues(t: Topology, siteIds: number[]): string[] {
  return [
    t.deadLetterQueue(t.centralSyncQueue),
    t.deadLetterQueue(t.centralInterventionQueue),
    ...siteIds.flatMap((s) => [t.siteRejectsQueue(s), t.deadLetterQueue(t.siteQueue(s))]),
  ];
}

/** The dead-letter queues of `deadLetterQueues` that exist (a site's appears once its queues are declared). */
export async function existingDeadLetterQueues(
  broker: BrokerConnection,
  t: Topology,
  siteIds: number[],
): Promise<string[]> {
  const out: string[] = [];
  for (const q of deadLetterQueues(t, siteIds)) {
    const exists = await broker
      .withChannel((ch) => ch.checkQueue(q))
      .then(
        () => true,
        () => false,
      );
    if (exists) out.push(q);
  }
  return out;
}

export interface ReplayResult {
  replayed: DeadLetter[];
  refused: Array<{ letter: DeadLetter; why: string }>;
}

export interface ReplayOptions {
  dryRun?: boolean;
  /** Replay past the replay limit; with `target`, also an unverified dead letter. */
  force?: boolean;
  maxReplays?: number;
  /**
   * An explicit route for an unverified dead letter (only with `force`): its headers are not
   * trusted for one. `user` is the broker user the operator vouches it speaks for (none if unset).
   */
  target?: { exchange: string; routingKey: string; user?: string };
}

/**
 * Publishes each matching dead letter back along its verified route (or, forced, the operator's
 * explicit target), with a replay counter and the central's signature over the user it speaks
 * for, and removes it only once the broker confirmed and routed the copy. A copy that no queue
 * takes is refused and the dead letter kept; an interrupted replay loses nothing, and a duplicate
 * is harmless (every handler deduplicates by message id).
 */
export async function replayDeadLetters(
  broker: BrokerConnection,
  ctx: DeadLetterContext,
  queues: string[],
  filter: DeadLetterFilter,
  opts: ReplayOptions = {},
): Promise<ReplayResult> {
  const result: ReplayResult = { replayed: [], refused: [] };
  const max = opts.maxReplays ?? DEFAULT_MAX_REPLAYS;
  for (const queue of queues) {
    await scanQueue(broker, ctx, queue, async (d, m, ch) => {
      if (!matches(d, filter)) return;
      const forced = opts.force && opts.target ? { user: '', ...opts.target } : undefined;
      const route = d.route ?? forced;
      if (!route) {
        result.refused.push({
          letter: d,
          why: 'unverified: its origin is not signed by the central nor derived from a broker dead-lettering (give --force with --exchange and --routing-key to send it somewhere)',
        });
        return;
      }
      if (d.replays >= max && !opts.force) {
        result.refused.push({ letter: d, why: `already replayed ${d.replays} times (use --force)` });
        return;
      }
      if (opts.dryRun) {
        result.replayed.push(d);
        return;
      }
      const replays = d.replays + 1;
      const headers = senderHeaders(d.headers);
      headers[HEADER_REPLAYS] = replays;
      headers[HEADER_ORIGINAL_USER] = route.user;
      headers[HEADER_SIGNATURE] = ctx.signer.signReplay(d.messageId, d.content, { ...route, replays });
      const p = m.properties;
      const copy: EncodedMessage = {
        routingKey: route.routingKey,
        content: d.content,
        options: {
          persistent: true,
          messageId: d.messageId,
          type: d.type,
          appId: typeof p.appId === 'string' ? p.appId : '',
          timestamp: typeof p.timestamp === 'number' ? p.timestamp : Math.floor(Date.now() / 1000),
          contentType: typeof p.contentType === 'string' ? p.contentType : 'application/json',
          ...(d.contentEncoding ? { contentEncoding: d.contentEncoding } : {}),
          headers,
        },
      };
      try {
        await broker.publish(route.exchange, copy, true);
      } catch (err) {
        if (!(err instanceof UnroutableError)) throw err;
        result.refused.push({
          letter: d,
          why: `no queue is bound to ${route.exchange} for routing key ${route.routingKey}: kept in ${queue}`,
        });
        return; // unacked: it goes back to its queue when the scan's channel closes
      }
      ch.ack(m);
      result.replayed.push(d);
    });
  }
  return result;
}

/** Empties dead-letter queues; returns how many messages each held. */
export async function purgeDeadLetters(broker: BrokerConnection, queues: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await broker.withChannel(async (ch) => {
    for (const q of queues) out[q] = (await ch.purgeQueue(q)).messageCount;
  });
  return out;
}

/** Dead letters in the central's shared dead-letter queues, counted by the site their verified route names. */
export async function centralDeadLettersBySite(
  broker: BrokerConnection,
  ctx: DeadLetterContext,
): Promise<Map<number, number>> {
  const bySite = new Map<number, number>();
  for (const q of deadLetterQueues(ctx.topology, [])) {
    for (const d of await scanQueue(broker, ctx, q)) {
      if (d.siteId !== undefined) bySite.set(d.siteId, (bySite.get(d.siteId) ?? 0) + 1);
    }
  }
  return bySite;
}
