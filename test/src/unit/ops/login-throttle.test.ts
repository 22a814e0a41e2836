import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LOGIN_THROTTLE,
  FailureTracker,
  LoginThrottle,
  TooManyLoginsError,
  clientAddress,
  type LoginThrottleOptions,
} from '@sitesync/central';

const OPTS: LoginThrottleOptions = {
  freeFailures: 3,
  baseDelaySeconds: 1,
  maxDelaySeconds: 8,
  forgetAfterSeconds: 60,
  maxTracked: 100,
};

/** A clock the test moves by hand. */
function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('login throttle bookkeeping', () => {
  it('lets the free failures through, then locks for a delay that doubles up to the cap', () => {
    const c = clock();
    const tracker = new FailureTracker(OPTS, c.now);
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      expect(tracker.lockedForMs('vera')).toBe(0);
      delays.push(tracker.fail('vera'));
      expect(tracker.lockedForMs('vera')).toBe(delays.at(-1));
      c.advance(delays.at(-1)!);
    }
    expect(delays).toEqual([0, 0, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
    expect(tracker.failures('vera')).toBe(9);
    // Thousands of failures neither overflow nor pass the cap.
    expect(tracker.delayMs(100_000)).toBe(8000);
  });

  it('forgets a key after a success, or once its last failure is older than forgetAfterSeconds', () => {
    const c = clock();
    const tracker = new FailureTracker(OPTS, c.now);
    for (let i = 0; i < 4; i++) tracker.fail('vera');
    tracker.succeed('vera');
    expect(tracker.failures('vera')).toBe(0);
    expect(tracker.fail('vera')).toBe(0);

    for (let i = 0; i < 4; i++) tracker.fail('olga');
    c.advance(59_999);
    expect(tracker.failures('olga')).toBe(4);
    c.advance(1);
    expect(tracker.failures('olga')).toBe(0);
    expect(tracker.lockedForMs('olga')).toBe(0);
    expect(tracker.fail('olga')).toBe(0);
  });

  it('never forgets a key while it is still locked, even with forgetAfterSeconds below the cap', () => {
    const c = clock();
    const tracker = new FailureTracker(
      { ...OPTS, forgetAfterSeconds: 1, maxDelaySeconds: 30, baseDelaySeconds: 30 },
      c.now,
    );
    for (let i = 0; i < 3; i++) tracker.fail('vera');
    c.advance(29_000);
    expect(tracker.lockedForMs('vera')).toBe(1000);
  });

  it('holds at most maxTracked keys however many are tried, dropping the oldest and the expired first', () => {
    const c = clock();
    const tracker = new FailureTracker({ ...OPTS, maxTracked: 50 }, c.now);
    for (let i = 0; i < 3; i++) tracker.fail('target');
    for (let i = 0; i < 10_000; i++) {
      tracker.fail(`rotating-${i}`);
      expect(tracker.size).toBeLessThanOrEqual(50);
    }
    expect(tracker.size).toBe(50);
    expect(tracker.failures('target')).toBe(0);
    expect(tracker.failures('rotating-9999')).toBe(1);
    expect(tracker.failures('rotating-9950')).toBe(1);
    expect(tracker.failures('rotating-9949')).toBe(0);
    // Once they expire, the next failure sweeps them all out.
    c.advance(60_000);
    tracker.fail('late');
    expect(tracker.size).toBe(1);
  });

  it('keys user names and addresses apart, and names the locked ones in the 429', () => {
    const c = clock();
    const throttle = new LoginThrottle(OPTS, c.now);
    const attempt = { user: 'vera', address: '10.0.0.1' };
    for (let i = 0; i < 3; i++) {
      throttle.check(attempt);
      throttle.fail(attempt);
    }
    let err: unknown;
    try {
      throttle.check({ user: 'vera', address: '10.0.0.2' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TooManyLoginsError);
    expect(err).toMatchObject({ status: 429, retryAfterSeconds: 1, userLocked: true, addressLocked: false });
    expect((err as Error).message).toBe('too many failed logins for user "vera"; retry in 1 s');
    expect(() => throttle.check({ user: 'olga', address: '10.0.0.1' })).toThrow(
      'too many failed logins from address 10.0.0.1; retry in 1 s',
    );
    expect(() => throttle.check(attempt)).toThrow(/for user "vera" and from address 10\.0\.0\.1/);
    expect(() => throttle.check({ user: 'olga', address: '10.0.0.2' })).not.toThrow();
    // A malformed header has no user name: only its address counts.
    expect(() => throttle.check({ user: undefined, address: '10.0.0.2' })).not.toThrow();

    c.advance(1000);
    throttle.check(attempt);
    throttle.succeed(attempt);
    expect(throttle.failures(attempt)).toBe(0);
    expect(() => throttle.check({ user: 'vera', address: '10.0.0.9' })).not.toThrow();
  });

  it('bounds what a huge user name costs to remember', () => {
    const throttle = new LoginThrottle({ ...DEFAULT_LOGIN_THROTTLE, freeFailures: 1 });
    throttle.fail({ user: `${'x'.repeat(128)}-one`, address: 'a' });
    expect(() => throttle.check({ user: `${'x'.repeat(128)}-two`, address: 'b' })).toThrow(TooManyLoginsError);
  });
});

describe('client address of a login', () => {
  it('writes IPv4-mapped addresses as IPv4 and cuts IPv6 to its /64', () => {
    expect(clientAddress('::ffff:127.0.0.2', undefined)).toBe('127.0.0.2');
    expect(clientAddress('2001:db8:0:1:aaaa:bbbb:cccc:dddd', undefined)).toBe('2001:db8:0:1::/64');
    expect(clientAddress('2001:db8:0:1::7', undefined)).toBe('2001:db8:0:1::/64');
    expect(clientAddress('2001:DB8::1', undefined)).toBe('2001:db8:0:0::/64');
  });

  it('believes X-Forwarded-For only from a trusted proxy, and only as far as the proxies go', () => {
    expect(clientAddress('203.0.113.9', '1.2.3.4')).toBe('203.0.113.9');
    expect(clientAddress('203.0.113.9', '1.2.3.4', ['10.0.0.1'])).toBe('203.0.113.9');
    expect(clientAddress('10.0.0.1', '1.2.3.4', ['10.0.0.1'])).toBe('1.2.3.4');
    // A client may send its own X-Forwarded-For: only the entries the proxies appended count.
    expect(clientAddress('::ffff:10.0.0.1', 'forged, 6.6.6.6, 1.2.3.4', ['10.0.0.1'])).toBe('1.2.3.4');
    expect(clientAddress('10.0.0.1', ['6.6.6.6', '1.2.3.4, 10.0.0.2'], ['10.0.0.1', '10.0.0.2'])).toBe('1.2.3.4');
    expect(clientAddress('10.0.0.1', 'not-an-address', ['10.0.0.1'])).toBe('10.0.0.1');
  });
});
