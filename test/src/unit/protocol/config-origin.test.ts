import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigOrigin, applyEnvOverrides, type EnvKey } from '@sitesync/protocol';

const KEYS: Record<string, EnvKey> = {
  DB_URL: { path: ['db', 'url'], type: 'string' },
  AMQP_CA_FILE: { path: ['amqp', 'caFile'], type: 'string' },
};

const dir = mkdtempSync(join(tmpdir(), 'sitesync-origin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('where a config key was set', () => {
  it('a key from the file names the file, and the variable that would override it', () => {
    const origin = new ConfigOrigin('/etc/sitesync/central.json', {}, KEYS);
    expect(origin.whereSet('db.url')).toBe('db.url in /etc/sitesync/central.json (or SYNC_DB_URL)');
  });

  it('a key from the environment names its variable, and the file key it overrides', () => {
    const env = { SYNC_DB_URL: 'sqlite::memory:' };
    expect(new ConfigOrigin(undefined, env, KEYS).whereSet('db.url')).toBe('SYNC_DB_URL');
    expect(new ConfigOrigin('/etc/c.json', env, KEYS).whereSet('db.url')).toBe(
      'SYNC_DB_URL, which overrides db.url in /etc/c.json',
    );
  });

  it('a key read from a secret file names the variable and the file', () => {
    const origin = new ConfigOrigin(undefined, { SYNC_DB_URL_FILE: '/run/secrets/db' }, KEYS);
    expect(origin.whereSet('db.url')).toBe('SYNC_DB_URL_FILE (/run/secrets/db)');
  });

  it('a key whose variable name ends in _FILE is its own value, not a secret file', () => {
    const env = { SYNC_AMQP_CA_FILE: '/tls/ca.pem' };
    expect(new ConfigOrigin(undefined, env, KEYS).whereSet('amqp.caFile')).toBe('SYNC_AMQP_CA_FILE');
    expect(applyEnvOverrides({}, env, KEYS)).toEqual({ amqp: { caFile: '/tls/ca.pem' } });
  });

  it('SYNC_<NAME>_FILE still reads the value from the file', () => {
    const secret = join(dir, 'db-url');
    writeFileSync(secret, 'sqlite:./site.db\n');
    expect(applyEnvOverrides({}, { SYNC_DB_URL_FILE: secret }, KEYS)).toEqual({ db: { url: 'sqlite:./site.db' } });
  });
});
