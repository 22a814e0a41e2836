import type { ConsumeMessage } from 'amqplib';
import {
  HEADER_ERROR,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_ORIGINAL_USER,
  HEADER_REASON,
  HEADER_REPLAYS,
  type BrokerConnection,
  type EncodedMessage,
  type Topology,
} from '@sitesync/protocol';
import { HEADER_SIGNATURE, type MessageSigner } from './message-signer';

/** Headers only the central may set: a sender's own copies are dropped from every dead letter and replay. */
export const CENTRAL_HEADERS = [
  HEADER_REASON,
  HEADER_ERROR,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_USER,
  HEADER_REPLAYS,
  HEADER_SIGNATURE,
] as const;

/**
 * The headers of `h` without the ones only the central or the broker may set: the central's own,
 * and the broker's dead-letter history (`x-death`, `x-first-death-*`, `x-last-death-*`), which a
 * sender can plant too.
 */
export function senderHeaders(h: Record<string, unknown> | undefined): Record<string, unknown> {
  const out = { ...(h ?? {}) };
  for (const k of CENTRAL_HEADERS) delete out[k];
  for (const k of Object.keys(out))
    if (k === 'x-death' || k.startsWith('x-first-death-') || k.startsWith('x-last-death-')) delete out[k];
  return out;
}

/** The sender's headers to keep on a dead letter: all of them, or a note of their size when too large. */
function keptSenderHeaders(h: Record<string, unknown> | undefined): Record<string, unknown> {
  const kept = senderHeaders(h);
  const size = Buffer.byteLength(JSON.stringify(kept));
  return size <= MAX_KEPT_SENDER_HEADER_BYTES ? kept : { [HEADER_DROPPED_HEADERS]: size };
}

/**
 * The site a message on the up exchange came from: the first segment of its routing key. The
 * broker's topic permissions let a site publish only keys that start with its own id, so this is
 * the one site fact a sender cannot choose. Undefined for anything else.
 */
export function routedSite(msg: ConsumeMessage, t: Topology): number | undefined {
  if (msg.fields.exchange !== t.up) return undefined;
  const first = msg.fields.routingKey.split('.')[0] ?? '';
  return /^[1-9]\d{0,9}$/.test(first) ? Number(first) : undefined;
}

/** Who a message speaks for, and how often it was replayed, as far as the broker and the central vouch. */
export interface Sender {
  /** The broker user; undefined when the broker stamped none. */
  user: string | undefined;
  /** Replays the central's signature vouches for (0 otherwise). */
  replays: number;
}

/**
 * The replay the central's signature vouches for on a message published to `route`, if any: the
 * user it speaks for and its replay count. Headers alone vouch for nothing.
 */
export function signedReplay(
  msg: { content: Buffer; properties: { messageId?: unknown; headers?: unknown } },
  route: { exchange: string; routingKey: string },
  signer: MessageSigner,
): { user: string; replays: number } | undefined {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const user = h[HEADER_ORIGINAL_USER];
  const replays = h[HEADER_REPLAYS];
  const id = msg.properties.messageId;
  if (typeof user !== 'string' || typeof replays !== 'number' || typeof id !== 'string') return undefined;
  const stamp = { ...route, user, replays };
  return signer.verifyReplay(id, msg.content, stamp, h[HEADER_SIGNATURE]) ? { user, replays } : undefined;
}

/**
 * Who a delivered message speaks for: on a replay, the user the central's signature vouches for
 * (bound to the exchange and routing key it was delivered by, so a signed message re-sent
 * elsewhere vouches for nothing); otherwise its `user_id`, which the broker checks against the
 * publishing connection.
 */
export function senderOf(msg: ConsumeMessage, signer: MessageSigner): Sender {
  const replay = signedReplay(msg, msg.fields, signer);
  if (replay) return replay;
  return { user: typeof msg.properties.userId === 'string' ? msg.properties.userId : undefined, replays: 0 };
}

/**
 * Sender headers kept on a dead letter up to this size (as JSON): larger ones are replaced by a
 * note, so that the copy with the central's own headers still encodes (amqplib encodes at most
 * 64 KiB of headers) instead of failing until the broker's delivery limit moves the message to
 * the shared dead-letter queue, around the sender's cap.
 */
export const MAX_KEPT_SENDER_HEADER_BYTES = 16 * 1024;
/** Set on a dead letter whose sender headers were too large to keep: their size in bytes. */
export const HEADER_DROPPED_HEADERS = 'x-sitesync-sender-headers-dropped';

/** A site's own dead-letter queue refused a dead letter (basic.nack): it is at its cap. */
export class SiteDeadLettersFullError extends Error {
  override name = 'SiteDeadLettersFullError';
  constructor(
    readonly site: number,
    readonly queue: string,
  ) {
    super(`the dead-letter queue ${queue} of site ${site} is full`);
  }
}

/**
 * Copies a message the central took from `queue` into a dead-letter queue, with its reason and
 * origin signed by the central, and resolves once the broker confirmed AND routed the copy (the
 * caller acks the original only then, so nothing is lost). What the central rejects from a site
 * goes to that site's own capped queue (`siteRejectsQueue`); what it cannot attribute goes to the
 * queue's shared dead-letter queue. The target queue is re-declared first, so one deleted while the
 * central runs is back before the message goes out. Resolves with the queue; rejects with
 * {@link SiteDeadLettersFullError} when the site's own queue refused the copy.
 */
export async function publishDeadLetter(
  broker: BrokerConnection,
  topology: Topology,
  signer: MessageSigner,
  from: { queue: string; msg: ConsumeMessage; sender: Sender },
  reason: string,
  error: string,
): Promise<string> {
  const { msg, queue } = from;
  const p = msg.properties;
  const site = routedSite(msg, topology);
  const route = site === undefined ? queue : topology.siteRejectsRoute(site);
  const dlq = await broker.withChannel((ch) =>
    topology.ensureDeadLetterQueue(
      ch,
      () => broker.openChannel(),
      route,
      site === undefined ? topology.deadLetterQueueArguments() : topology.siteRejectsQueueArguments(),
    ),
  );
  const messageId = typeof p.messageId === 'string' ? p.messageId : '';
  const origin = {
    queue,
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    user: from.sender.user ?? '',
    reason,
    replays: from.sender.replays,
  };
  const copy: EncodedMessage = {
    routingKey: route,
    content: msg.content,
    options: {
      persistent: true,
      messageId,
      type: typeof p.type === 'string' ? p.type : '',
      appId: typeof p.appId === 'string' ? p.appId : '',
      // user_id is left out: the broker only accepts the publishing connection's own user.
      timestamp: typeof p.timestamp === 'number' ? p.timestamp : Math.floor(Date.now() / 1000),
      contentType: typeof p.contentType === 'string' ? p.contentType : 'application/octet-stream',
      ...(typeof p.contentEncoding === 'string' ? { contentEncoding: p.contentEncoding } : {}),
      headers: {
        ...keptSenderHeaders(p.headers as Record<string, unknown> | undefined),
        [HEADER_REASON]: reason,
        [HEADER_ERROR]: error.slice(0, 1000),
        [HEADER_ORIGINAL_EXCHANGE]: origin.exchange,
        [HEADER_ORIGINAL_ROUTING_KEY]: origin.routingKey,
        [HEADER_ORIGINAL_QUEUE]: queue,
        [HEADER_ORIGINAL_USER]: origin.user,
        [HEADER_REPLAYS]: origin.replays,
        [HEADER_SIGNATURE]: signer.signDeadLetter(messageId, msg.content, origin),
      },
    },
  };
  try {
    await broker.publish(topology.dlx, copy, true);
  } catch (err) {
    // Only the broker's own refusal: a publish lost with its channel is not a full queue.
    if (site !== undefined && (err as { code?: unknown }).code === 'BROKER_NACK')
      throw new SiteDeadLettersFullError(site, dlq);
    throw err;
  }
  return dlq;
}
