import { createHash, createHmac, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Logger } from '@sitesync/protocol';
import { DEFAULT_LOGIN_THROTTLE, LoginThrottle, type LoginAttempt, type LoginThrottleOptions } from './login-throttle';

/** `viewer` reads; `operator` also replays dead letters and moves interventions. */
export type Role = 'viewer' | 'operator';
export const ROLES = ['viewer', 'operator'] as const satisfies readonly Role[];

/** A user of the supervision page and HTTP API, as configured (`users` in the central config). */
export interface HttpUser {
  readonly name: string;
  /** From `syncctl users hash-password`: `scrypt$N$r$p$<salt base64>$<hash base64>`. */
  readonly passwordHash: string;
  readonly role: Role;
}

/** Who made a request. The bearer token (`apiToken`) authenticates as the operator `api`. */
export interface Caller {
  readonly name: string;
  readonly role: Role;
}

/** scrypt cost of new hashes: N = 2^15, r = 8, p = 1 (32 MiB, ~0.1 s: slow for guessing, fine for a login). */
export const DEFAULT_SCRYPT_COST = { N: 32768, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
// Bounds on hashes read from config, so a typo cannot make every request allocate gigabytes.
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;
const HASH_PATTERN = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(stored: string): ParsedHash | undefined {
  const m = HASH_PATTERN.exec(stored);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // N must be a power of two above 1.
  if (N < 2 || N > MAX_N || (N & (N - 1)) !== 0 || r < 1 || r > MAX_R || p < 1 || p > MAX_P) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || key.length < 16) return undefined;
  return { N, r, p, salt, key };
}

/** True when `stored` is a hash `verifyPassword` can check (config validation uses it). */
export function isPasswordHash(stored: string): boolean {
  return parseHash(stored) !== undefined;
}

function derive(password: string, salt: Buffer, length: number, cost: { N: number; r: number; p: number }) {
  const options: ScryptOptions = { N: cost.N, r: cost.r, p: cost.p, maxmem: 256 * cost.N * cost.r * cost.p };
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, length, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** A self-describing scrypt hash of `password` with a random salt. */
export async function hashPassword(
  password: string,
  cost: { N: number; r: number; p: number } = DEFAULT_SCRYPT_COST,
): Promise<string> {
  if (password.length === 0) throw new Error('the password is empty');
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Checks `password` against a hash from `hashPassword` in constant time; false for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parseHash(stored);
  if (!h) return false;
  const key = await derive(password, h.salt, h.key.length, h);
  return timingSafeEqual(key, h.key);
}

/** True when `caller` may do what `needed` may (an operator may do everything a viewer may). */
export function hasRole(caller: Caller, needed: Role): boolean {
  return needed === 'viewer' || caller.role === 'operator';
}

const CACHE_TTL_MS = 60_000;
const CACHE_MAX_ENTRIES = 256;
/** The name bearer-token attempts are throttled under: the caller the token authenticates as. */
const TOKEN_USER = 'api';
const MAX_LOGGED_NAME_CHARS = 128;

export interface HttpAuthenticatorOptions {
  /** @default DEFAULT_LOGIN_THROTTLE */
  loginThrottle?: LoginThrottleOptions;
  /** Lockouts are logged (user name, address, failures), never passwords or tokens. */
  log?: Logger;
}

/**
 * Checks the `Authorization` header: HTTP Basic against the configured users, or `Bearer <apiToken>`
 * (an operator, for scripts). The page polls several endpoints every few seconds, and a scrypt check
 * each time would cost a core, so a successful check is remembered for a minute under a keyed hash
 * of the header (never the header itself). Failures are never cached: each costs a full scrypt.
 * Every attempt with credentials goes through a `LoginThrottle` first (see `authenticate`).
 */
export class HttpAuthenticator {
  private readonly users: Map<string, HttpUser>;
  private readonly tokenDigest: Buffer | undefined;
  private readonly cacheKey = randomBytes(32);
  private readonly cache = new Map<string, { caller: Caller; expiresAt: number }>();
  private readonly checking = new Map<string, Promise<Caller | undefined>>();
  private readonly throttle: LoginThrottle;
  private readonly log: Logger | undefined;
  private dummyHash: Promise<string> | undefined;

  constructor(users: readonly HttpUser[], apiToken: string | undefined, opts: HttpAuthenticatorOptions = {}) {
    this.users = new Map(users.map((u) => [u.name, u]));
    this.tokenDigest = apiToken ? createHash('sha256').update(apiToken).digest() : undefined;
    this.throttle = new LoginThrottle(opts.loginThrottle ?? DEFAULT_LOGIN_THROTTLE);
    this.log = opts.log;
  }

  /** False when neither users nor a token are configured: the page and API are off. */
  get enabled(): boolean {
    return this.users.size > 0 || this.tokenDigest !== undefined;
  }

  /**
   * The caller, or undefined when the header is missing or wrong. Throws `TooManyLoginsError`
   * (429) while the claimed user name or the client `address` (see `clientAddress`) is locked out,
   * even for a header that is in the cache, so that a locked-out guess learns nothing. A request
   * without credentials (a browser's first) is not a failure.
   */
  async authenticate(authorization: string | undefined, address = 'unknown'): Promise<Caller | undefined> {
    if (!authorization) return undefined;
    const id = createHmac('sha256', this.cacheKey).update(authorization).digest('base64');
    // The same header sent in parallel (the page polling its endpoints) is checked and counted once;
    // waiting for a check already under way tells no more than it tells whoever started it.
    const pending = this.checking.get(id);
    if (pending) return pending;
    const attempt: LoginAttempt = { user: claimedUser(authorization), address };
    this.throttle.check(attempt);
    const hit = this.cache.get(id);
    if (hit && hit.expiresAt > Date.now()) return hit.caller;
    const checked = this.checkThrottled(authorization, attempt);
    this.checking.set(id, checked);
    try {
      const caller = await checked;
      if (caller) {
        if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
        this.cache.set(id, { caller, expiresAt: Date.now() + CACHE_TTL_MS });
      }
      return caller;
    } finally {
      this.checking.delete(id);
    }
  }

  private async checkThrottled(authorization: string, attempt: LoginAttempt): Promise<Caller | undefined> {
    // Counted as a failure before the (slow) check, so that guesses sent in parallel meet the
    // lockout too instead of all passing the gate while the first is still hashing.
    const lockMs = this.throttle.fail(attempt);
    const caller = await this.check(authorization);
    if (caller) {
      this.throttle.succeed(attempt);
    } else if (lockMs > 0) {
      const failures = this.throttle.failures(attempt);
      const user = attempt.user?.slice(0, MAX_LOGGED_NAME_CHARS);
      this.log?.warn(
        { user, address: attempt.address, failures, lockSeconds: lockMs / 1000 },
        'login locked out after failed attempts',
      );
    }
    return caller;
  }

  private async check(authorization: string): Promise<Caller | undefined> {
    const [scheme, value = ''] = authorization.trim().split(/\s+/, 2);
    if (/^bearer$/i.test(scheme ?? '')) {
      if (!this.tokenDigest) return undefined;
      // Digests have equal lengths, so the comparison leaks neither the token nor its length.
      const given = createHash('sha256').update(value).digest();
      return timingSafeEqual(given, this.tokenDigest) ? { name: 'api', role: 'operator' } : undefined;
    }
    if (!/^basic$/i.test(scheme ?? '')) return undefined;
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    const name = decoded.slice(0, colon);
    const user = this.users.get(name);
    // An unknown name costs as much as a wrong password, so timing does not tell which names exist.
    const ok = await verifyPassword(decoded.slice(colon + 1), user?.passwordHash ?? (await this.dummy()));
    return ok && user ? { name: user.name, role: user.role } : undefined;
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
    return this.dummyHash;
  }
}

/** The user name an `Authorization` header claims: the Basic name, `api` for a bearer token, else none. */
function claimedUser(authorization: string): string | undefined {
  const [scheme, value = ''] = authorization.trim().split(/\s+/, 2);
  if (/^bearer$/i.test(scheme ?? '')) return TOKEN_USER;
  if (!/^basic$/i.test(scheme ?? '')) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(0, colon);
}
