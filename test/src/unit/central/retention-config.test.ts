import { describe, expect, it } from 'vitest';
import { loadCentralConfig, parseCentralConfig } from '@sitesync/central';
import { ConfigError } from '@sitesync/protocol';

const BASE = { amqp: { url: 'amqp://localhost' }, db: { url: 'sqlite::memory:' } };
const ENV = { SYNC_AMQP_URL: 'amqp://localhost', SYNC_DB_URL: 'sqlite::memory:' };

describe('retention config', () => {
  it('keeps each table for its documented default when nothing is set', () => {
    expect(parseCentralConfig(BASE).retention).toEqual({
      inboxDays: 30,
      sessionDays: 90,
      rejectedDays: 90,
      transferLogDays: 365,
      tombstoneDays: 365,
      intervalMinutes: 60,
      batchSize: 500,
    });
  });

  it('takes SYNC_RETENTION_* over the file, 0 meaning keep forever', () => {
    const r = loadCentralConfig(undefined, {
      ...ENV,
      SYNC_RETENTION_INBOX_DAYS: '7',
      SYNC_RETENTION_SESSION_DAYS: '0',
      SYNC_RETENTION_REJECTED_DAYS: '14',
      SYNC_RETENTION_TRANSFER_LOG_DAYS: '30',
      SYNC_RETENTION_TOMBSTONE_DAYS: '0',
      SYNC_RETENTION_INTERVAL_MINUTES: '15',
      SYNC_RETENTION_BATCH_SIZE: '100',
    }).retention;
    expect(r).toEqual({
      inboxDays: 7,
      sessionDays: 0,
      rejectedDays: 14,
      transferLogDays: 30,
      tombstoneDays: 0,
      intervalMinutes: 15,
      batchSize: 100,
    });
  });

  it('refuses a bad value at start, naming the key', () => {
    expect(() => loadCentralConfig(undefined, { ...ENV, SYNC_RETENTION_INBOX_DAYS: 'a week' })).toThrow(
      /SYNC_RETENTION_INBOX_DAYS/,
    );
    expect(() => parseCentralConfig({ ...BASE, retention: { sessionDays: -1 } })).toThrow(ConfigError);
    expect(() => parseCentralConfig({ ...BASE, retention: { tombstoneDays: 10 } })).toThrow(/tombstoneDays/);
    expect(() => parseCentralConfig({ ...BASE, retention: { inboxDays: 0, tombstoneDays: 365 } })).toThrow(
      /tombstoneDays/,
    );
  });
});
