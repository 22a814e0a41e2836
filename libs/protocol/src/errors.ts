/**
 * Error hierarchy shared by every sitesync package. Subclasses say what the caller must do:
 * retry ({@link TransientError}), dead-letter the message ({@link MessageRejectedError}),
 * or stop ({@link ConfigError}).
 */
export class SyncError extends Error {
  override name = 'SyncError';
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A failure that may succeed if tried again: connection lost, deadlock, lock timeout. */
export class TransientError extends SyncError {
  override name = 'TransientError';
  constructor(message: string, code = 'TRANSIENT', options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

/** Why a message cannot be used. Each value is written into the dead letter's reason header. */
export const REJECT_REASONS = [
  'invalid-json',
  'bad-envelope',
  'checksum-mismatch',
  'unsupported-schema-version',
  'schema',
  'unknown-type',
  'unknown-site',
  'site-disabled',
  'forged-site',
  'row-hash-mismatch',
  'bad-content',
  'too-large',
  'stale-batch',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** The message itself is bad: it goes to the dead-letter queue with `reason`, and nothing of it is applied. */
export class MessageRejectedError extends SyncError {
  override name = 'MessageRejectedError';
  constructor(
    readonly reason: RejectReason,
    message: string,
    readonly context: { messageId?: string; siteId?: number; type?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, `REJECTED_${reason.toUpperCase().replace(/-/g, '_')}`, options);
  }
}

/** Configuration is invalid: the process must not start. `key` names the offending setting. */
export class ConfigError extends SyncError {
  override name = 'ConfigError';
  constructor(
    message: string,
    readonly key: string,
    options?: { cause?: unknown; code?: string },
  ) {
    super(message, options?.code ?? 'CONFIG', options);
  }
}

const TRANSIENT_CODES = new Set([
  // node / network
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  // tedious / mssql: connect, socket and request timeouts (not node's ETIMEDOUT), socket and closed connection
  'ETIMEOUT',
  'ESOCKET',
  'ECONNCLOSED',
  // sqlite
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  // postgres (SQLSTATE)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57P01', // admin_shutdown
  '57P02',
  '57P03', // cannot_connect_now
  '08000',
  '08003',
  '08006',
  '08001',
  '08004',
  // mysql / mariadb
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'PROTOCOL_CONNECTION_LOST',
]);
// SQL Server error numbers: deadlock victim, lock timeout, connection-level failures.
const TRANSIENT_MSSQL_NUMBERS = new Set([1205, 1222, 4060, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929]);

/** Decides retry vs give-up by error type or driver code, never by message text. */
export function isTransientError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    if (e instanceof TransientError) return true;
    if (e instanceof MessageRejectedError || e instanceof ConfigError) return false;
    const anyErr = e as { code?: unknown; number?: unknown; errno?: unknown; driverError?: unknown; cause?: unknown };
    if (typeof anyErr.code === 'string' && TRANSIENT_CODES.has(anyErr.code)) return true;
    if (typeof anyErr.number === 'number' && TRANSIENT_MSSQL_NUMBERS.has(anyErr.number)) return true;
    e = anyErr.driverError ?? anyErr.cause;
  }
  return false;
}

/** A log-friendly view of an error. */
export function errorInfo(err: unknown): { message: string; code?: string; name?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { message: err.message, name: err.name, ...(code !== undefined ? { code: String(code) } : {}) };
  }
  return { message: String(err) };
}
