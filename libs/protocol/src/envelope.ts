import { randomUUID } from 'node:crypto';
import { gunzipSync, gzipSync, constants as zlibConstants } from 'node:zlib';
import { MessageRejectedError } from './errors';
import { bodyChecksum } from './hashing';
import {
  isMessageType,
  MESSAGE_SCHEMAS,
  OLDEST_SCHEMA_VERSION,
  SCHEMA_VERSION,
  schemaVersionOf,
  type MessageBody,
  type MessageType,
} from './messages';
import { BatchSchemaV1 } from './sync-messages';

export const HEADER_SITE = 'x-sitesync-site';
export const HEADER_SCHEMA = 'x-sitesync-schema';
export const HEADER_CHECKSUM = 'x-sitesync-checksum';
/** Set on a dead letter by sitesync: why it was rejected (one of REJECT_REASONS). Broker dead letters carry `x-death` instead. */
export const HEADER_REASON = 'x-sitesync-reason';
/** Set on a dead letter: human-readable detail of the rejection. */
export const HEADER_ERROR = 'x-sitesync-error';
/** Set on a dead letter: the exchange and routing key it first came from, for replay. */
export const HEADER_ORIGINAL_EXCHANGE = 'x-sitesync-original-exchange';
export const HEADER_ORIGINAL_ROUTING_KEY = 'x-sitesync-original-routing-key';
export const HEADER_ORIGINAL_QUEUE = 'x-sitesync-original-queue';
/**
 * Set on a dead letter and on a replay: the broker user that first published it (a replay cannot
 * keep `user_id`). Trusted only where the central's signature over it verifies.
 */
export const HEADER_ORIGINAL_USER = 'x-sitesync-original-user';
/** Set on a replayed dead letter: how many times it was replayed. */
export const HEADER_REPLAYS = 'x-sitesync-replays';

export const CONTENT_TYPE = 'application/json';

/** A message body larger than this on the wire is refused unread (RabbitMQ 4.x refuses > 16 MiB by default too). */
export const DEFAULT_MAX_WIRE_BYTES = 16 * 1024 * 1024;
/** A body that inflates past this is refused: inflation stops at the cap, so memory stays bounded. */
export const DEFAULT_MAX_INFLATED_BYTES = 64 * 1024 * 1024;

/** Size limits on what a sender controls, checked before anything is decoded. */
export interface DecodeLimits {
  /** @default 16 MiB */
  maxWireBytes?: number;
  /** @default 64 MiB */
  maxInflatedBytes?: number;
}

/**
 * The body as bytes, inflated when gzipped, never past `maxInflatedBytes`: zlib stops (and frees
 * what it inflated) as soon as its output passes the cap, so a 2 MB message that would inflate to
 * gigabytes costs at most the cap. Throws a RangeError (`ERR_BUFFER_TOO_LARGE`) past the cap.
 */
export function inflateBody(content: Buffer, encoding: unknown, maxInflatedBytes = DEFAULT_MAX_INFLATED_BYTES): Buffer {
  if (encoding !== 'gzip') {
    if (content.length > maxInflatedBytes) throw tooLarge(maxInflatedBytes);
    return content;
  }
  return gunzipSync(content, { maxOutputLength: maxInflatedBytes });
}

function tooLarge(limit: number): RangeError {
  return Object.assign(new RangeError(`Cannot create a Buffer larger than ${limit} bytes`), {
    code: 'ERR_BUFFER_TOO_LARGE',
  });
}

function isTooLarge(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE';
}
/** Bodies at least this large are gzipped. */
export const DEFAULT_GZIP_THRESHOLD = 4096;

export interface EncodeOptions {
  /** The publishing site's efector id (also the first routing-key segment). */
  siteId: number;
  /** `app_id` property: which program published. */
  appId: string;
  /** `user_id` property: must equal the broker user of the connection (the broker enforces it). */
  userId?: string;
  messageId?: string;
  /** @default 4096; 0 disables compression */
  gzipThreshold?: number;
  /** For replies: the message this one answers. */
  correlationId?: string;
  /**
   * Check the body against its schema before publishing. @default true. The site skips it for
   * batches it built itself from database rows (the central validates every message it receives):
   * it cost ~8% of the initial load's CPU.
   */
  validate?: boolean;
}

/** Everything amqplib's `publish()` needs. */
export interface EncodedMessage {
  routingKey: string;
  content: Buffer;
  options: {
    persistent: true;
    messageId: string;
    type: string;
    appId: string;
    userId?: string;
    timestamp: number;
    contentType: string;
    contentEncoding?: string;
    correlationId?: string;
    /** Per-message TTL in milliseconds, as text (AMQP `expiration`): the broker drops it unread after. */
    expiration?: string;
    headers: Record<string, unknown>;
  };
}

export function routingKeyFor(siteId: number, type: string): string {
  return `${siteId}.${type}`;
}

/** Validates `body` against its schema and builds a persistent, checksummed message. */
export function encodeMessage<T extends MessageType>(
  type: T,
  body: MessageBody<T>,
  opts: EncodeOptions,
): EncodedMessage {
  if (opts.validate !== false) {
    const parsed = MESSAGE_SCHEMAS[type].safeParse(body);
    if (!parsed.success) {
      throw new TypeError(`refusing to publish an invalid ${type}: ${parsed.error.issues[0]?.message ?? 'schema'}`);
    }
  }
  let content = Buffer.from(JSON.stringify(body));
  let contentEncoding: string | undefined;
  const threshold = opts.gzipThreshold ?? DEFAULT_GZIP_THRESHOLD;
  if (threshold > 0 && content.length >= threshold) {
    content = gzipSync(content, { level: zlibConstants.Z_BEST_SPEED });
    contentEncoding = 'gzip';
  }
  const messageId = opts.messageId ?? randomUUID();
  return {
    routingKey: routingKeyFor(opts.siteId, type),
    content,
    options: {
      persistent: true,
      messageId,
      type,
      appId: opts.appId,
      ...(opts.userId ? { userId: opts.userId } : {}),
      timestamp: Math.floor(Date.now() / 1000),
      contentType: CONTENT_TYPE,
      ...(contentEncoding ? { contentEncoding } : {}),
      ...(opts.correlationId ? { correlationId: opts.correlationId } : {}),
      headers: {
        [HEADER_SITE]: opts.siteId,
        [HEADER_SCHEMA]: schemaVersionOf(type),
        [HEADER_CHECKSUM]: bodyChecksum(content),
      },
    },
  };
}

/** The parts of an amqplib message that decoding reads. */
export interface RawMessage {
  content: Buffer;
  properties: {
    messageId?: unknown;
    type?: unknown;
    userId?: unknown;
    appId?: unknown;
    timestamp?: unknown;
    contentEncoding?: unknown;
    headers?: Record<string, unknown> | undefined;
  };
  fields?: { routingKey?: string };
}

/** What every decoded message carries besides its type and body. */
interface DecodedEnvelope {
  messageId: string;
  siteId: number;
  userId: string | undefined;
  appId: string | undefined;
  timestamp: number | undefined;
}

/**
 * A message that passed {@link decodeMessage}: a union discriminated by `type`, so `switch (m.type)`
 * narrows `body` to that type's schema.
 */
export type DecodedMessage<T extends MessageType = MessageType> = {
  [K in T]: DecodedEnvelope & { type: K; body: MessageBody<K> };
}[T];

function headerNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return undefined;
}

/**
 * Checks envelope, checksum, schema version and body schema. Throws {@link MessageRejectedError}
 * naming the reason; never returns a partially valid message.
 */
export function decodeMessage(
  raw: RawMessage,
  expected?: readonly MessageType[],
  limits: DecodeLimits = {},
): DecodedMessage {
  const p = raw.properties;
  const headers = p.headers ?? {};
  const messageId = typeof p.messageId === 'string' ? p.messageId : undefined;
  const ctx = { messageId, type: typeof p.type === 'string' ? p.type : undefined };
  const maxWire = limits.maxWireBytes ?? DEFAULT_MAX_WIRE_BYTES;
  if (raw.content.length > maxWire) {
    throw new MessageRejectedError(
      'too-large',
      `body is ${raw.content.length} bytes on the wire, over the limit of ${maxWire}`,
      ctx,
    );
  }
  if (!messageId) throw new MessageRejectedError('bad-envelope', 'message has no message_id', ctx);
  const type = p.type;
  if (!isMessageType(type) || (expected && !expected.includes(type))) {
    throw new MessageRejectedError('unknown-type', `unknown message type ${JSON.stringify(type)}`, ctx);
  }
  const siteId = headerNumber(headers[HEADER_SITE]);
  if (siteId === undefined) throw new MessageRejectedError('bad-envelope', `header ${HEADER_SITE} missing`, ctx);
  const routedSite = raw.fields?.routingKey?.split('.')[0];
  if (routedSite !== undefined && routedSite !== String(siteId)) {
    throw new MessageRejectedError('forged-site', `routing key names site ${routedSite} but header says ${siteId}`, {
      ...ctx,
      siteId,
    });
  }
  const schemaVersion = headerNumber(headers[HEADER_SCHEMA]);
  if (
    schemaVersion === undefined ||
    !Number.isInteger(schemaVersion) ||
    schemaVersion < OLDEST_SCHEMA_VERSION ||
    schemaVersion > SCHEMA_VERSION
  ) {
    throw new MessageRejectedError(
      'unsupported-schema-version',
      `schema version ${String(headers[HEADER_SCHEMA])} is not one of ${OLDEST_SCHEMA_VERSION}..${SCHEMA_VERSION}`,
      { ...ctx, siteId },
    );
  }
  const checksum = headers[HEADER_CHECKSUM];
  if (typeof checksum !== 'string' || checksum !== bodyChecksum(raw.content)) {
    throw new MessageRejectedError('checksum-mismatch', 'body checksum does not match its header', { ...ctx, siteId });
  }
  const maxInflated = limits.maxInflatedBytes ?? DEFAULT_MAX_INFLATED_BYTES;
  let text: string;
  try {
    text = inflateBody(raw.content, p.contentEncoding, maxInflated).toString('utf8');
  } catch (cause) {
    if (isTooLarge(cause)) {
      throw new MessageRejectedError(
        'too-large',
        `body inflates past the limit of ${maxInflated} bytes (${raw.content.length} bytes on the wire)`,
        { ...ctx, siteId },
        { cause },
      );
    }
    throw new MessageRejectedError('invalid-json', 'body is not valid gzip', { ...ctx, siteId }, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new MessageRejectedError('invalid-json', 'body is not valid JSON', { ...ctx, siteId }, { cause });
  }
  // A version-1 batch (rows as objects) is read by its own schema into the current form.
  const schema = type === 'batch' && schemaVersion === 1 ? BatchSchemaV1 : MESSAGE_SCHEMAS[type];
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || '(root)';
    throw new MessageRejectedError('schema', `${type} body invalid at ${where}: ${issue?.message ?? '?'}`, {
      ...ctx,
      siteId,
    });
  }
  const body = parsed.data as { siteId?: unknown };
  if ('siteId' in body && body.siteId !== siteId) {
    throw new MessageRejectedError('forged-site', `body claims site ${String(body.siteId)} but header says ${siteId}`, {
      ...ctx,
      siteId,
    });
  }
  // The body was parsed by the schema of `type`: the pairing the union states, which TypeScript cannot follow here.
  return {
    type,
    messageId,
    siteId,
    userId: typeof p.userId === 'string' ? p.userId : undefined,
    appId: typeof p.appId === 'string' ? p.appId : undefined,
    timestamp: typeof p.timestamp === 'number' ? p.timestamp : undefined,
    body: parsed.data,
  } as DecodedMessage;
}

/** Narrows a decoded message to one type. */
export function isDecoded<T extends MessageType>(
  m: DecodedMessage,
  type: T,
): m is Extract<DecodedMessage, { type: T }> {
  return m.type === type;
}
