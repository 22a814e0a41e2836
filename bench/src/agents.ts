import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, parsePeripheralConfig, type PeripheralConfigInput } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { CentralAgent, parseCentralConfig, registerSite } from '@sitesync/central';
import { PeripheralAgent } from '@sitesync/peripheral';
import { createAndSeed, labPipeline } from './lab-data.js';
import type { DialectName } from './options.js';
import type { BenchWorld } from './world.js';

/** The pieces of a run the measurements share. */
export interface BenchContext {
  world: BenchWorld;
  dialect: DialectName;
  logLevel: string;
  /** The central database URL of this dialect. */
  centralUrl: string;
}

export async function startCentral(ctx: BenchContext, overrides: Record<string, unknown> = {}): Promise<CentralAgent> {
  const agent = new CentralAgent(
    parseCentralConfig({
      amqp: { url: ctx.world.amqpUrl, prefix: ctx.world.prefix },
      db: { url: ctx.centralUrl },
      ...overrides,
    }),
    createLogger('central', ctx.logLevel, false),
  );
  await agent.start();
  return agent;
}

/** Adds the site's `EstadoSyncGeneral` row, as `syncctl sites add` does. */
export async function register(
  central: Database,
  siteId: number,
  tables: { header: string; detail: string; pipeline?: string },
): Promise<void> {
  await registerSite(central, {
    siteId,
    pipeline: tables.pipeline ?? 'lab',
    headerTable: tables.header,
    detailTable: tables.detail,
    brokerUser: 'guest',
  });
}

/** Creates a site database (sitesync tables by migration, lab tables seeded with `headers` orders). */
export async function prepareSiteDb(
  ctx: BenchContext,
  name: string,
  headers: number,
  onProgress?: (done: number) => void,
): Promise<string> {
  const url = ctx.world.dbUrl(ctx.dialect, name);
  const db = await Database.open(url, { role: 'site' });
  await db.close();
  const raw = await ctx.world.raw(ctx.dialect, name);
  try {
    await createAndSeed(raw, { orders: headers }, onProgress);
  } finally {
    await raw.close();
  }
  return url;
}

export function siteConfig(
  ctx: BenchContext,
  siteId: number,
  dbUrl: string,
  overrides: Partial<PeripheralConfigInput> = {},
): PeripheralConfigInput {
  ctx.world.site(siteId);
  return {
    siteId,
    amqp: { url: ctx.world.amqpUrl, prefix: ctx.world.prefix },
    db: { url: dbUrl },
    // Trigger-kept change tracking, as recommended for a hospital's own tables: sessions after the
    // first read only what changed (the first one, and the initial load, are full scans).
    pipelines: [labPipeline({ changeTracking: 'triggers' })],
    // The central may hold a long backlog behind a big load: the session waits for it.
    ackTimeoutSeconds: 3600,
    logLevel: ctx.logLevel as PeripheralConfigInput['logLevel'],
    ...overrides,
  };
}

export async function startSite(ctx: BenchContext, input: PeripheralConfigInput): Promise<PeripheralAgent> {
  const agent = new PeripheralAgent(
    parsePeripheralConfig(input),
    createLogger(`site-${input.siteId}`, ctx.logLevel, false),
  );
  await agent.start();
  return agent;
}

/** Writes a JSON config file for an agent process; returns its path. */
export function writeConfig(ctx: BenchContext, name: string, config: unknown): string {
  const path = join(ctx.world.dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** Sum of a prom-client counter's values (all labels). */
export async function counterTotal(metric: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  const m = await metric.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

/**
 * A site forgets what it sent (its side table) and, with change tracking, that it ever scanned in
 * full: its next session is a first sync again. The central's rows are the caller's to reset.
 */
export async function forgetSentRows(site: PeripheralAgent): Promise<void> {
  await site.database!.query(`DELETE FROM sync_row_state`);
  await site.database!.query(`UPDATE sync_tracking SET last_full_scan_at = NULL`);
  // A first load starts from an empty side table: without this, PostgreSQL's next load checks
  // each new key against the previous round's dead index entries (about 3x the cost per row).
  if (site.database!.dialect.name === 'postgres') await site.database!.query(`VACUUM sync_row_state`);
}
