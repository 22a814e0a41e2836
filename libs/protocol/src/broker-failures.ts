/**
 * How the broker fails a connection, told apart so an agent can say what to do: refused (the
 * user, its virtual host or a permission: fix the configuration, never retry), unroutable (a
 * publish no queue took), or unreachable (retry). Also the parts of a broker URL that messages
 * may show (never the password).
 */
import { ConfigError, TransientError } from './errors';

/**
 * A mandatory publish the broker returned (`basic.return`): no queue is bound to its exchange and
 * routing key, so it landed nowhere although the broker confirmed it. Transient: the queue may be
 * declared again; meanwhile the message's source must be kept.
 */
export class UnroutableError extends TransientError {
  override name = 'UnroutableError';
  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    replyText: string,
  ) {
    super(
      `no queue took the message published to ${exchange} with routing key ${routingKey} (${replyText})`,
      'BROKER_UNROUTABLE',
    );
  }
}

/** What the broker refused: the login, the virtual host, or an operation on a channel (a queue, an exchange). */
export type BrokerRefusal = 'credentials' | 'vhost' | 'operation';

/**
 * The broker turned the configured user away: a wrong password or unknown user, no access to the
 * virtual host, or no permission on a queue or exchange this agent must use. Retrying cannot help;
 * the operator fixes `amqp.url` (or the user's permissions). Never carries the password.
 */
export class BrokerRefusedError extends ConfigError {
  override name = 'BrokerRefusedError';
  constructor(
    readonly refusal: BrokerRefusal,
    readonly user: string,
    /** `host:port` of the broker. */
    readonly server: string,
    readonly vhost: string,
    /** What the broker said (`ACCESS_REFUSED - ...`). */
    readonly replyText: string,
    options?: { cause?: unknown },
  ) {
    const key = 'amqp.url (SYNC_AMQP_URL)';
    super(
      refusal === 'credentials'
        ? `the broker at ${server} refused the credentials of user ${user}: correct the user or password in ${key}`
        : refusal === 'vhost'
          ? `the broker at ${server} refused user ${user} access to virtual host ${vhost} (it does not exist, or the user has no permissions there): correct ${key}, or grant the user that virtual host`
          : `the broker at ${server} refused user ${user} an operation this agent needs (${replyText}): ${key} must name this agent's own broker user (each site has its own), or the user needs that permission`,
      'amqp.url',
      { ...options, code: 'BROKER_REFUSED' },
    );
  }
}

/** Time between the reports of a broker that stays unreachable (the first failure is reported at once). */
export const BROKER_FAILURE_LOG_INTERVAL_MS = 60_000;
const AMQP_ACCESS_REFUSED = 403;

/**
 * Whether `err` is the broker refusing the user, and what it refused. Channel errors carry the AMQP
 * reply code; amqplib reports a refusal during the opening handshake only in its message text, so
 * that is read here, once, and nowhere else.
 */
export function brokerRefusalOf(err: unknown): { refusal: BrokerRefusal; replyText: string } | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (code === AMQP_ACCESS_REFUSED) return { refusal: 'operation', replyText: replyTextOf(err.message) };
  if (code !== undefined) return undefined; // a socket error (ECONNREFUSED, ENOTFOUND, ...)
  // amqplib 2.x: connection.close in answer to start-ok (the login) ...
  if (/^Handshake terminated by server: 403 /.test(err.message))
    return { refusal: 'credentials', replyText: replyTextOf(err.message) };
  // ... and in answer to connection.open (the virtual host; amqplib does not keep the reply).
  if (err.message.startsWith('Expected ConnectionOpenOk; got <ConnectionClose'))
    return { refusal: 'vhost', replyText: err.message };
  return undefined;
}

const AMQP_NOT_FOUND = 404;

/**
 * Whether `err` says a queue exists but cannot be used because the cluster node it lives on is down
 * (a classic queue's home node): RabbitMQ answers 404 like for a missing queue, and only its reply
 * text (3.x and 4.x alike) tells them apart. Declaring such a queue fails the same way.
 */
export function queueNodeDownOf(err: unknown): boolean {
  if (!(err instanceof Error) || (err as { code?: unknown }).code !== AMQP_NOT_FOUND) return false;
  return /NOT_FOUND - home node '.*' of durable queue .* is down or inaccessible/.test(err.message);
}

function replyTextOf(message: string): string {
  const m = /with message "(.*)"$/.exec(message);
  return m?.[1] ?? message;
}

/** `host:port` of a broker URL, for messages (never its credentials). */
export function brokerAddressOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === 'amqps:' ? 5671 : 5672)}`;
  } catch {
    return '(not a URL)';
  }
}

/** The virtual host a broker URL names (`/` when none). */
export function brokerVhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
  } catch {
    return '/';
  }
}

/**
 * The broker user a connection URL names (`amqp://user:pass@host`), percent-decoded; `guest` when
 * it names none, as amqplib then logs in as guest. Undefined when the text is not a URL (the
 * connection itself reports that).
 */
export function brokerUserOf(url: string): string | undefined {
  try {
    return decodeURIComponent(new URL(url).username) || 'guest';
  } catch {
    return undefined;
  }
}
