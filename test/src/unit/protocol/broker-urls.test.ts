import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadPeripheralConfig,
  loadPeripheralConfigWithOrigin,
  maskBrokerUrl,
  parsePeripheralConfig,
  queueNodeDownOf,
  splitBrokerUrls,
} from '@sitesync/protocol';
import { loadCentralConfig, parseCentralConfig } from '@sitesync/central';
import { labPipeline } from '../../support/lab-data.js';

const dir = mkdtempSync(join(tmpdir(), 'sitesync-urls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NODES = ['amqp://site-101:pw@rabbit-1:5672/sitesync', 'amqp://site-101:pw@rabbit-2:5672/sitesync'];

function siteFile(amqpUrl: unknown): string {
  const file = join(dir, `site-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({ siteId: 101, amqp: { url: amqpUrl }, db: { url: 'sqlite::memory:' }, pipelines: [labPipeline()] }),
  );
  return file;
}

function centralFile(amqpUrl: unknown): string {
  const file = join(dir, `central-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ amqp: { url: amqpUrl }, db: { url: 'sqlite::memory:' } }));
  return file;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('amqp.url names one broker or the nodes of a cluster', () => {
  it('a string is one node, as before; an array is every node, in order', () => {
    const one = loadPeripheralConfig(siteFile(NODES[0]), {});
    expect(one.amqp.url).toBe(NODES[0]);
    expect(one.amqp.urls).toEqual([NODES[0]]);
    const both = loadCentralConfig(centralFile(NODES), {});
    expect(both.amqp.urls).toEqual(NODES);
    expect(both.amqp.url).toBe(NODES[0]);
  });

  it('a parsed config parses again to the same (amqp.urls is made from amqp.url, never set apart from it)', () => {
    const cfg = loadCentralConfig(centralFile(NODES), {});
    expect(parseCentralConfig({ ...cfg }).amqp).toEqual(cfg.amqp);
    const site = loadPeripheralConfig(siteFile(NODES), {});
    expect(parsePeripheralConfig({ ...site, amqp: { ...site.amqp } }).amqp.urls).toEqual(NODES);
    const apart = configError(() =>
      parseCentralConfig({ ...cfg, amqp: { ...cfg.amqp, urls: [NODES[1]] } as unknown as typeof cfg.amqp }),
    );
    expect(apart.key).toBe('amqp.urls');
  });

  it('SYNC_AMQP_URL takes several URLs separated by commas, and a comma inside a password stays in it', () => {
    const cfg = loadPeripheralConfig(siteFile('amqp://x@old:5672'), {
      SYNC_AMQP_URL: `${NODES[0]}, ${NODES[1]}`,
    });
    expect(cfg.amqp.urls).toEqual(NODES);
    expect(splitBrokerUrls('amqps://u:a,b@rabbit-1/v,amqps://u:a,b@rabbit-2/v')).toEqual([
      'amqps://u:a,b@rabbit-1/v',
      'amqps://u:a,b@rabbit-2/v',
    ]);
    expect(splitBrokerUrls('amqp://u:a,b@rabbit')).toBe('amqp://u:a,b@rabbit');
  });

  it('a bad URL in the list fails at start naming its key, where it was set, and never the password', () => {
    const file = siteFile([NODES[0], 'http://site-101:s3cret@rabbit-2:15672']);
    const err = configError(() => loadPeripheralConfigWithOrigin(file, {}));
    expect(err.key).toBe('amqp.url.1');
    expect(err.message).toContain('config key "amqp.url.1"');
    expect(err.message).toContain('is not an amqp:// or amqps:// URL');
    expect(err.message).toContain(`amqp.url in ${file} (or SYNC_AMQP_URL)`);
    expect(err.message).not.toContain('s3cret');

    const env = configError(() => loadCentralConfig(undefined, { SYNC_AMQP_URL: `${NODES[0]},amqp://:pw@/vhost` }));
    expect(env.key).toBe('amqp.url.1');
    expect(env.message).toMatch(/names no host|not a URL/);
    expect(env.message).toContain('SYNC_AMQP_URL');
    expect(env.message).not.toContain(':pw@');
  });

  it('an empty list, a non-URL, the same node twice and nodes with different users are refused', () => {
    expect(configError(() => loadCentralConfig(centralFile([]), {})).key).toBe('amqp.url');
    expect(configError(() => loadCentralConfig(centralFile('rabbit-1:5672'), {})).key).toBe('amqp.url');
    const twice = configError(() => loadCentralConfig(centralFile([NODES[0], NODES[0]]), {}));
    expect(twice.key).toBe('amqp.url.1');
    expect(twice.message).toContain('listed twice');
    const other = configError(() =>
      loadCentralConfig(centralFile([NODES[0], 'amqp://site-102:pw@rabbit-2:5672/sitesync']), {}),
    );
    expect(other.key).toBe('amqp.url.1');
    expect(other.message).toContain('the same user and virtual host');
  });

  it('a URL shown in a message or a log has its password masked', () => {
    expect(maskBrokerUrl('amqps://site-101:s3cret@rabbit:5671/sitesync')).toBe(
      'amqps://site-101:***@rabbit:5671/sitesync',
    );
    expect(maskBrokerUrl('amqp://rabbit')).toBe('amqp://rabbit');
    expect(maskBrokerUrl('not a url://u:s3cret@x')).not.toContain('s3cret');
  });
});

describe('a queue whose cluster node is down is told apart from a missing queue', () => {
  it('by the 404 the broker answers for a classic queue whose home node is down', () => {
    const down = Object.assign(
      new Error(
        `Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "NOT_FOUND - home node 'rabbit@rabbit-1' of durable queue 'central.sync.dlq' in vhost 'sitesync' is down or inaccessible"`,
      ),
      { code: 404 },
    );
    const missing = Object.assign(
      new Error(
        `Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "NOT_FOUND - no queue 'central.sync.dlq' in vhost 'sitesync'"`,
      ),
      { code: 404 },
    );
    expect(queueNodeDownOf(down)).toBe(true);
    expect(queueNodeDownOf(missing)).toBe(false);
    expect(queueNodeDownOf(new Error(down.message))).toBe(false);
  });
});
