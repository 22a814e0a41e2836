import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCentralConfig, verifyPassword } from '@sitesync/central';
import { HashingFileSchema, loadPeripheralConfig } from '@sitesync/protocol';
import { REPO } from '../../support/wait.js';

/**
 * The example configurations in examples/ are what an operator copies first: each loads through
 * the agent's own loader (strict schemas, so a renamed or removed key fails here), and every key
 * they set is explained in docs/deploy.md ("Example configurations").
 */
const EXAMPLES = join(REPO, 'examples');
const example = (name: string) => join(EXAMPLES, name);
const readJson = (name: string) => JSON.parse(readFileSync(example(name), 'utf8')) as unknown;

/** Every key path a JSON value sets (`amqp`, `amqp.url`, ...); array items are not descended into. */
function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([k, v]) => [`${prefix}${k}`, ...keyPaths(v, `${prefix}${k}.`)]);
}

describe('examples/', () => {
  it('central.json is a valid central config; its users sign in with the demo passwords', async () => {
    // No environment: what the file says is what is checked.
    const cfg = loadCentralConfig(example('central.json'), {});
    expect(cfg.amqp.url).toMatch(/^amqps:\/\//);
    expect(cfg.amqp.managementUrl).toBeDefined();
    expect(cfg.db.url).toMatch(/^mssql:\/\//);
    expect(cfg.httpPort).toBeGreaterThan(0);
    expect(cfg.users.map((u) => u.role).sort()).toEqual(['operator', 'viewer']);
    for (const u of cfg.users)
      expect(await verifyPassword(`${u.name}-demo-password`, u.passwordHash), u.name).toBe(true);
  });

  it('site.json is a valid site config whose pipeline is lab-pipeline.json', () => {
    const cfg = loadPeripheralConfig(example('site.json'), {});
    expect(cfg.siteId).toBe(101);
    expect(cfg.amqp.url).toMatch(/^amqps:\/\/site-101:/);
    expect(cfg.pipelines).toEqual([HashingFileSchema.parse(readJson('lab-pipeline.json'))]);
    expect(cfg.hooks.legacy).toBeDefined();
  });

  it('lab-pipeline.json is a valid hashing file with a detail table and change tracking', () => {
    const pipeline = HashingFileSchema.parse(readJson('lab-pipeline.json'));
    expect(pipeline.name).toBe('lab');
    expect(pipeline.linkEntities).toHaveLength(1);
    expect(pipeline.changeTracking).toBe('triggers');
  });

  it.each(['central.json', 'site.json', 'lab-pipeline.json'])(
    '%s: docs/deploy.md explains every key it sets',
    (name) => {
      const docs = readFileSync(join(REPO, 'docs/deploy.md'), 'utf8');
      expect(docs).toContain(`examples/${name}`);
      for (const path of keyPaths(readJson(name))) expect(docs, `${name}: ${path}`).toContain(`\`${path}\``);
    },
  );
});
