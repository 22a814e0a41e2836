import { gunzipSync } from 'node:zlib';
import type { Channel, GetMessage } from 'amqplib';
import {
  HEADER_ERROR,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_REASON,
  HEADER_REPLAYS,
  HEADER_SITE,
  type BrokerConnection,
  type EncodedMessage,
  type Topology,
} from '@sitesync/protocol';

/** Replays refused past this many, unless forced: a message that keeps failing needs a fix, not a loop. */
export const DEFAULT_MAX_REPLAYS = 3;
/** Body fields masked by `show` unless `--raw`: patient data stays out of terminals and tickets. */
export const MASKED_FIELD =
  /patient|paciente|name|nombre|dni|document|birth|nacimiento|address|direccion|phone|telefono|email/i;

/** One dead letter as an operator sees it. */
export interface DeadLetter {
  queue: string;
  messageId: string;
  type: string;
  siteId: number | undefined;
  reason: string;
  error: string;
  /** Seconds since it was first published (its timestamp property). */
  ageSeconds: number | undefined;
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
  siteId?: number;
  type?: string;
  reason?: string;
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return undefined;
}

function toDeadLetter(queue: string, m: GetMessage): DeadLetter {
  const h = (m.properties.headers ?? {}) as Record<string, unknown>;
  const xDeath = Array.isArray(h['x-death']) ? (h['x-death'] as Array<Record<string, unknown>>) : [];
  const first = xDeath[xDeath.length - 1];
  // Our own dead letters carry the origin in headers; broker ones (delivery limit) in x-death.
  const exchange =
    typeof h[HEADER_ORIGINAL_EXCHANGE] === 'string'
      ? (h[HEADER_ORIGINAL_EXCHANGE] as string)
      : String(first?.exchange ?? '');
  const routingKeys = first?.['routing-keys'];
  const routingKey =
    typeof h[HEADER_ORIGINAL_ROUTING_KEY] === 'string'
      ? (h[HEADER_ORIGINAL_ROUTING_KEY] as string)
      : Array.isArray(routingKeys)
        ? String(routingKeys[0] ?? '')
        : '';
  const ts = asNumber(m.properties.timestamp);
  return {
    queue,
    messageId: typeof m.properties.messageId === 'string' ? m.properties.messageId : '',
    type: typeof m.properties.type === 'string' ? m.properties.type : '',
    siteId: asNumber(h[HEADER_SITE]),
    reason: typeof h[HEADER_REASON] === 'string' ? (h[HEADER_REASON] as string) : String(first?.reason ?? 'unknown'),
    error: typeof h[HEADER_ERROR] === 'string' ? (h[HEADER_ERROR] as string) : '',
    ageSeconds: ts === undefined ? undefined : Math.max(0, Math.round(Date.now() / 1000 - ts)),
    originalExchange: exchange,
    originalRoutingKey: routingKey,
    replays: asNumber(h[HEADER_REPLAYS]) ?? 0,
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
    text = (d.contentEncoding === 'gzip' ? gunzipSync(d.content) : d.content).toString('utf8');
  } catch {
    return `<${d.content.length} bytes, not readable>`;
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
  queue: string,
  take?: (d: DeadLetter, m: GetMessage, ch: Channel) => Promise<void>,
): Promise<DeadLetter[]> {
  return broker.withChannel(async (ch) => {
    const out: DeadLetter[] = [];
    const { messageCount } = await ch.checkQueue(queue);
    for (let i = 0; i < messageCount; i++) {
      const m = await ch.get(queue, { noAck: false });
      if (!m) break;
      const d = toDeadLetter(queue, m);
      out.push(d);
      if (take) await take(d, m, ch);
    }
    return out;
  });
}

/** The dead-letter queues: the central's and one per registered site. */
export function deadLetterQueues(t: Topology, siteIds: number[]): string[] {
  return [t.centralSyncQueue, t.centralInterventionQueue, ...siteIds.map((s) => t.siteQueue(s))].map((q) =>
    t.deadLetterQueue(q),
  );
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

/**
 * Publishes each matching dead letter back to the exchange and routing key it first came from,
 * with a replay counter, and removes it only once the broker confirmed the copy: an interrupted
 * replay loses nothing, and a duplicate is harmless (every handler deduplicates by message id).
 */
export async function replayDeadLetters(
  broker: BrokerConnection,
  queues: string[],
  filter: DeadLetterFilter,
  opts: { dryRun?: boolean; force?: boolean; maxReplays?: number; userId?: string } = {},
): Promise<ReplayResult> {
  const result: ReplayResult = { replayed: [], refused: [] };
  const max = opts.maxReplays ?? DEFAULT_MAX_REPLAYS;
  for (const queue of queues) {
    await scanQueue(broker, queue, async (d, m, ch) => {
      if (!matches(d, filter)) return;
      if (!d.originalExchange && !d.originalRoutingKey) {
        result.refused.push({ letter: d, why: 'origin unknown (no original exchange or routing key)' });
        return;
      }
      if (d.replays >= max && !opts.force) {
        result.refused.push({ letter: d, why: `already replayed ${d.replays} times (use --force)` });
        return;
      }
      result.replayed.push(d);
      if (opts.dryRun) return;
      const headers = { ...d.headers };
      for (const k of [
        HEADER_REASON,
        HEADER_ERROR,
        HEADER_ORIGINAL_EXCHANGE,
        HEADER_ORIGINAL_ROUTING_KEY,
        HEADER_ORIGINAL_QUEUE,
        'x-death',
        'x-first-death-exchange',
        'x-first-death-queue',
        'x-first-death-reason',
        'x-last-death-exchange',
        'x-last-death-queue',
        'x-last-death-reason',
      ]) {
        delete headers[k];
      }
      headers[HEADER_REPLAYS] = d.replays + 1;
      const p = m.properties;
      const copy: EncodedMessage = {
        routingKey: d.originalRoutingKey,
        content: d.content,
        options: {
          persistent: true,
          messageId: d.messageId,
          type: d.type,
          appId: typeof p.appId === 'string' ? p.appId : '',
          // The replaying user; the central trusts HEADER_ORIGINAL_USER only when this is its own user.
          ...(opts.userId ? { userId: opts.userId } : {}),
          timestamp: typeof p.timestamp === 'number' ? p.timestamp : Math.floor(Date.now() / 1000),
          contentType: typeof p.contentType === 'string' ? p.contentType : 'application/json',
          ...(d.contentEncoding ? { contentEncoding: d.contentEncoding } : {}),
          headers,
        },
      };
      await broker.publish(d.originalExchange, copy, true);
      ch.ack(m);
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

/** Dead letters in the central's own dead-letter queues, counted by the site that sent them. */
export async function centralDeadLettersBySite(broker: BrokerConnection, t: Topology): Promise<Map<number, number>> {
  const bySite = new Map<number, number>();
  for (const q of deadLetterQueues(t, [])) {
    for (const d of await scanQueue(broker, q)) {
      if (d.siteId !== undefined) bySite.set(d.siteId, (bySite.get(d.siteId) ?? 0) + 1);
    }
  }
  return bySite;
}
