import { isIP } from 'node:net';
import { HttpRequestError } from './respond';

/** Failed logins in a row per user name, or per client address, before the first lockout. */
export const DEFAULT_LOGIN_FREE_FAILURES = 5;
/** The first lockout; it doubles with each further failure. */
export const DEFAULT_LOGIN_BASE_DELAY_SECONDS = 1;
/** The longest lockout. */
export const DEFAULT_LOGIN_MAX_DELAY_SECONDS = 300;
/** A user name or address with no failure for this long starts again from zero. */
export const DEFAULT_LOGIN_FORGET_AFTER_SECONDS = 3600;
/** User names, and separately client addresses, remembered at most. */
export const DEFAULT_LOGIN_MAX_TRACKED = 10_000;

/** How failed logins are slowed down (`loginThrottle` in the central config). */
export interface LoginThrottleOptions {
  /** @default 5 */
  readonly freeFailures: number;
  /** @default 1 */
  readonly baseDelaySeconds: number;
  /** @default 300 */
  readonly maxDelaySeconds: number;
  /** @default 3600 */
  readonly forgetAfterSeconds: number;
  /** @default 10000 */
  readonly maxTracked: number;
}

export const DEFAULT_LOGIN_THROTTLE: LoginThrottleOptions = {
  freeFailures: DEFAULT_LOGIN_FREE_FAILURES,
  baseDelaySeconds: DEFAULT_LOGIN_BASE_DELAY_SECONDS,
  maxDelaySeconds: DEFAULT_LOGIN_MAX_DELAY_SECONDS,
  forgetAfterSeconds: DEFAULT_LOGIN_FORGET_AFTER_SECONDS,
  maxTracked: DEFAULT_LOGIN_MAX_TRACKED,
};

interface Failures {
  count: number;
  lastAt: number;
  lockedUntil: number;
}

/**
 * Consecutive failed logins of one kind of key (user names, or client addresses). The n-th
 * failure, from n = `freeFailures` on, locks the key for `baseDelay * 2^(n - freeFailures)`, capped
 * at `maxDelay`. Entries are kept in the order of their last failure and all live equally long after
 * it, so the oldest is always the first to expire: sweeping stops at the first live one, and when
 * `maxTracked` keys are held the one evicted is the one closest to being forgotten anyway.
 */
export class FailureTracker {
  private readonly entries = new Map<string, Failures>();
  private readonly ttlMs: number;

  constructor(
    private readonly opts: LoginThrottleOptions,
    private readonly now: () => number = Date.now,
  ) {
    // Never forget a key while it is still locked.
    this.ttlMs = Math.max(opts.forgetAfterSeconds, opts.maxDelaySeconds) * 1000;
  }

  /** Keys held now (expired ones included until the next sweep). */
  get size(): number {
    return this.entries.size;
  }

  /** Failures recorded for `key` and not yet forgotten. */
  failures(key: string): number {
    return this.live(key)?.count ?? 0;
  }

  /** Milliseconds until `key` may try again; 0 when it may now. */
  lockedForMs(key: string): number {
    const e = this.live(key);
    return e ? Math.max(0, e.lockedUntil - this.now()) : 0;
  }

  /** Records a failure; returns the lockout it starts in milliseconds (0: still free). */
  fail(key: string): number {
    const now = this.now();
    this.sweep(now);
    const e = this.entries.get(key);
    const count = (e?.count ?? 0) + 1;
    const delayMs = this.delayMs(count);
    // Re-inserted so that Map order stays the order of last failures.
    this.entries.delete(key);
    if (this.entries.size >= this.opts.maxTracked) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { count, lastAt: now, lockedUntil: now + delayMs });
    return delayMs;
  }

  /** Forgets the failures of `key` (after a successful login). */
  succeed(key: string): void {
    this.entries.delete(key);
  }

  /** The lockout after the `count`-th consecutive failure, in milliseconds. */
  delayMs(count: number): number {
    if (count < this.opts.freeFailures) return 0;
    // The exponent is bounded so that a long attack cannot overflow to Infinity.
    const doublings = Math.min(count - this.opts.freeFailures, 52);
    return Math.min(this.opts.baseDelaySeconds * 2 ** doublings, this.opts.maxDelaySeconds) * 1000;
  }

  private live(key: string): Failures | undefined {
    const e = this.entries.get(key);
    if (e && e.lastAt + this.ttlMs <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  private sweep(now: number): void {
    for (const [key, e] of this.entries) {
      if (e.lastAt + this.ttlMs > now) return;
      this.entries.delete(key);
    }
  }
}

/** Who is trying to log in: the claimed user name (none for a malformed header) and the client address key. */
export interface LoginAttempt {
  readonly user: string | undefined;
  readonly address: string;
}

/** The answer to a login tried while its user name or address is locked out: HTTP 429. */
export class TooManyLoginsError extends HttpRequestError {
  override name = 'TooManyLoginsError';
  constructor(
    readonly attempt: LoginAttempt,
    /** Whole seconds, as sent in `Retry-After`. */
    readonly retryAfterSeconds: number,
    readonly userLocked: boolean,
    readonly addressLocked: boolean,
  ) {
    const who = [
      ...(userLocked ? [`for user ${JSON.stringify(attempt.user)}`] : []),
      ...(addressLocked ? [`from address ${attempt.address}`] : []),
    ].join(' and ');
    super(429, `too many failed logins ${who}; retry in ${retryAfterSeconds} s`);
  }
}

// Bounds what an attacker-chosen user name costs to remember.
const MAX_USER_KEY_CHARS = 128;

/**
 * Slows down password and token guessing on the supervision page and HTTP API, per claimed user
 * name (against guessing one account from many addresses) and per client address (against trying
 * many names from one place). A locked-out attempt is refused before its password is checked, so
 * even the right password waits; a successful login forgets both keys' failures.
 */
export class LoginThrottle {
  readonly users: FailureTracker;
  readonly addresses: FailureTracker;

  constructor(opts: LoginThrottleOptions = DEFAULT_LOGIN_THROTTLE, now: () => number = Date.now) {
    // Two trackers, so that rotating user names cannot push the addresses out, nor the reverse.
    this.users = new FailureTracker(opts, now);
    this.addresses = new FailureTracker(opts, now);
  }

  /** Throws `TooManyLoginsError` while the attempt's user name or address is locked out. */
  check(attempt: LoginAttempt): void {
    const user = attempt.user === undefined ? 0 : this.users.lockedForMs(userKey(attempt.user));
    const address = this.addresses.lockedForMs(attempt.address);
    const waitMs = Math.max(user, address);
    if (waitMs > 0) throw new TooManyLoginsError(attempt, Math.ceil(waitMs / 1000), user > 0, address > 0);
  }

  /** Records a failed attempt; returns the longest lockout it starts, in milliseconds. */
  fail(attempt: LoginAttempt): number {
    const address = this.addresses.fail(attempt.address);
    return attempt.user === undefined ? address : Math.max(address, this.users.fail(userKey(attempt.user)));
  }

  /** The most consecutive failures recorded for the attempt's user name or address. */
  failures(attempt: LoginAttempt): number {
    const address = this.addresses.failures(attempt.address);
    return attempt.user === undefined ? address : Math.max(address, this.users.failures(userKey(attempt.user)));
  }

  succeed(attempt: LoginAttempt): void {
    this.addresses.succeed(attempt.address);
    if (attempt.user !== undefined) this.users.succeed(userKey(attempt.user));
  }
}

function userKey(name: string): string {
  return name.slice(0, MAX_USER_KEY_CHARS);
}

/**
 * The throttling key of a request's client: its address, IPv4-mapped IPv6 written as IPv4, and
 * IPv6 cut to its /64 (one host usually holds a whole /64, and could otherwise rotate through it).
 * Behind a reverse proxy listed in `trustedProxies`, the client is the right-most `X-Forwarded-For`
 * entry that is not itself a trusted proxy; from anyone else the header is ignored, since a client
 * could write anything there.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trustedProxies: readonly string[] = [],
): string {
  let address = normalizeAddress(peer ?? '') || 'unknown';
  const trusted = new Set(trustedProxies.map(normalizeAddress));
  if (trusted.has(address) && forwardedFor !== undefined) {
    const hops = [forwardedFor].flat().join(',').split(',').map(normalizeAddress);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (!isIP(hop)) break;
      address = hop;
      if (!trusted.has(hop)) break;
    }
  }
  return isIP(address) === 6 ? ipv6Prefix64(address) : address;
}

function normalizeAddress(raw: string): string {
  const a = raw.trim().replace(/%.*$/, '').toLowerCase();
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

function ipv6Prefix64(address: string): string {
  const [head = '', tail] = address.split('::', 2);
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
