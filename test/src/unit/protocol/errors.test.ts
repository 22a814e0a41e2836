import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  MessageRejectedError,
  REJECT_REASONS,
  SyncError,
  TransientError,
  isTransientError,
} from '@sitesync/protocol';

/** A real connection error from the operating system: nothing listens on port 1 of localhost. */
function refusedConnection(): Promise<Error> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: 1 });
    s.once('error', (err) => {
      s.destroy();
      resolve(err);
    });
  });
}

describe('error hierarchy', () => {
  it('every sitesync error is an Error and a SyncError, with its own name and a string code', () => {
    const errors: SyncError[] = [
      new SyncError('base', 'X'),
      new TransientError('lost'),
      new MessageRejectedError('schema', 'bad'),
      new ConfigError('bad key', 'db.url'),
    ];
    expect(errors.map((e) => e.name)).toEqual(['SyncError', 'TransientError', 'MessageRejectedError', 'ConfigError']);
    for (const e of errors) {
      expect(e).toBeInstanceOf(Error);
      expect(e).toBeInstanceOf(SyncError);
      expect(typeof e.code).toBe('string');
      expect(e.code.length).toBeGreaterThan(0);
    }
  });

  it('keeps the cause it was given', () => {
    const cause = new Error('socket closed');
    expect(new TransientError('lost', 'AMQP_LOST', { cause }).cause).toBe(cause);
    expect(new ConfigError('x', 'k', { cause }).cause).toBe(cause);
    expect(new MessageRejectedError('invalid-json', 'x', {}, { cause }).cause).toBe(cause);
  });

  it('a transient error defaults its code to TRANSIENT and keeps a given one', () => {
    expect(new TransientError('x').code).toBe('TRANSIENT');
    expect(new TransientError('x', 'DB_UNREACHABLE').code).toBe('DB_UNREACHABLE');
  });

  it('a configuration error names the offending setting and has code CONFIG', () => {
    const e = new ConfigError('pipelines[0].baseEntity: no such table', 'pipelines[0].baseEntity');
    expect(e.key).toBe('pipelines[0].baseEntity');
    expect(e.code).toBe('CONFIG');
    expect(e.message).toContain('no such table');
  });

  it('a rejected message carries its reason, a distinct code per reason, and its context', () => {
    const codes = new Set<string>();
    for (const reason of REJECT_REASONS) {
      const e = new MessageRejectedError(reason, 'why', { messageId: 'm-1', siteId: 7, type: 'batch' });
      expect(e.reason).toBe(reason);
      expect(e.code).toMatch(/^REJECTED_[A-Z_]+$/);
      expect(e.code).not.toContain('-');
      expect(e.context).toEqual({ messageId: 'm-1', siteId: 7, type: 'batch' });
      codes.add(e.code);
    }
    expect(codes.size).toBe(REJECT_REASONS.length);
    expect(new MessageRejectedError('forged-site', 'x').code).toBe('REJECTED_FORGED_SITE');
    expect(new MessageRejectedError('schema', 'x').context).toEqual({});
  });

  it('lists the reasons the design asks the dead-letter queue to tell apart', () => {
    for (const r of [
      'invalid-json',
      'schema',
      'unknown-type',
      'unknown-site',
      'checksum-mismatch',
      'row-hash-mismatch',
      'forged-site',
    ]) {
      expect(REJECT_REASONS).toContain(r);
    }
  });
});

describe('isTransientError decides retry by type or driver code', () => {
  it('retries a TransientError, also when it is wrapped as a cause', () => {
    expect(isTransientError(new TransientError('x'))).toBe(true);
    expect(isTransientError(new Error('outer', { cause: new TransientError('inner') }))).toBe(true);
  });

  it('retries a real refused TCP connection', async () => {
    const err = await refusedConnection();
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(isTransientError(err)).toBe(true);
  });

  it.each([
    ['ECONNRESET'],
    ['ETIMEDOUT'],
    ['ETIMEOUT'], // tedious (SQL Server) connect, socket and request timeouts
    ['ESOCKET'],
    ['ECONNCLOSED'],
    ['SQLITE_BUSY'],
    ['40001'],
    ['40P01'],
    ['ER_LOCK_DEADLOCK'],
    ['PROTOCOL_CONNECTION_LOST'],
  ])('retries driver code %s', (code) => {
    expect(isTransientError(Object.assign(new Error('driver'), { code }))).toBe(true);
  });

  it('retries SQL Server deadlock (1205) and lock timeout (1222) by error number', () => {
    expect(isTransientError(Object.assign(new Error('x'), { number: 1205 }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('x'), { number: 1222 }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('x'), { number: 2627 }))).toBe(false); // duplicate key
  });

  it('looks through a driverError (TypeORM QueryFailedError) and a cause chain', () => {
    const driverError = Object.assign(new Error('deadlock detected'), { code: '40P01' });
    expect(isTransientError(Object.assign(new Error('QueryFailedError'), { driverError }))).toBe(true);
    expect(isTransientError(new Error('a', { cause: new Error('b', { cause: driverError }) }))).toBe(true);
  });

  it('never retries a bad message or bad configuration, whatever caused it', () => {
    const transientCause = Object.assign(new Error('x'), { code: 'ECONNRESET' });
    expect(isTransientError(new MessageRejectedError('schema', 'bad', {}, { cause: transientCause }))).toBe(false);
    expect(isTransientError(new ConfigError('bad', 'k', { cause: transientCause }))).toBe(false);
  });

  it('does not decide by message text', () => {
    expect(isTransientError(new Error('deadlock victim, connection reset, ECONNRESET'))).toBe(false);
    expect(isTransientError(Object.assign(new Error('x'), { code: 'ER_DUP_ENTRY' }))).toBe(false);
  });

  it('is false for values that are not errors', () => {
    expect(isTransientError(undefined)).toBe(false);
    expect(isTransientError(null)).toBe(false);
    expect(isTransientError('ECONNRESET')).toBe(false);
    expect(isTransientError({ code: 42 })).toBe(false);
  });

  it('stops following a cause chain after a few levels (no endless loop on a cycle)', () => {
    const a: Error & { cause?: unknown } = new Error('a');
    const b: Error & { cause?: unknown } = new Error('b', { cause: a });
    a.cause = b;
    expect(isTransientError(a)).toBe(false);
  });
});
