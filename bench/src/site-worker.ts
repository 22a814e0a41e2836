/**
 * Sites of the concurrent-sites measurement, in a process of their own (a site is its own machine;
 * a few sites share a process here so that 20 of them start quickly on two cores): prepares and
 * seeds each site's database, starts one PeripheralAgent per site, reports `ready`, and on `go`
 * runs one session of every site at once and reports when each got its `session.ack`.
 * Driven over IPC by measure/concurrent.ts.
 */
import { createLogger, parsePeripheralConfig, type PeripheralConfigInput } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { PeripheralAgent, type SessionResult } from '@sitesync/peripheral';
import { counterTotal, forgetSentRows } from './agents.js';
import { createAndSeed } from './lab-data.js';
import type { DialectName } from './options.js';
import { RawDb } from './raw-db.js';

export interface WorkerSite {
  config: PeripheralConfigInput;
  raw: { path?: string; pgUrl?: string; schema?: string };
}

export interface WorkerSetup {
  dialect: DialectName;
  headers: number;
  sites: WorkerSite[];
  /** Seed each site's lab tables first. @default true (the main site arrives seeded). */
  seed?: boolean;
}

export interface SiteOutcome {
  siteId: number;
  finishedAt: number;
  status: string;
  rows: number;
  error?: string;
  result: SessionResult;
  /** Body bytes the site published in the session (`sitesync_bytes_sent_total`, after gzip). */
  bytes: number;
}

export type WorkerMessage =
  { type: 'ready' } | { type: 'done'; sites: SiteOutcome[] } | { type: 'failed'; error: string };

/** Orders from the parent: run one session per site, forget what was sent (the next session re-sends everything), or stop. */
export type WorkerOrder = { type: 'go' } | { type: 'reset' } | { type: 'exit' };

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, () => resolve()));
}

async function prepare(
  dialect: DialectName,
  headers: number,
  site: WorkerSite,
  seed: boolean,
): Promise<PeripheralAgent> {
  if (seed) {
    const db = await Database.open(site.config.db.url, { role: 'site' });
    await db.close();
    const raw = await RawDb.open(dialect, site.raw);
    await createAndSeed(raw, { orders: headers });
    await raw.close();
  }
  const agent = new PeripheralAgent(
    parsePeripheralConfig(site.config),
    createLogger(`site-${site.config.siteId}`, site.config.logLevel ?? 'warn', false),
  );
  await agent.start();
  return agent;
}

async function main(setup: WorkerSetup): Promise<void> {
  const agents = await Promise.all(
    setup.sites.map((site) => prepare(setup.dialect, setup.headers, site, setup.seed ?? true)),
  );
  const handle = async (m: WorkerOrder): Promise<void> => {
    if (m.type === 'go') {
      const sites = await Promise.all(
        agents.map(async (agent): Promise<SiteOutcome> => {
          const bytes0 = await counterTotal(agent.metrics.bytesSent);
          const r = await agent.runSession();
          return {
            result: r,
            bytes: (await counterTotal(agent.metrics.bytesSent)) - bytes0,
            siteId: agent.config.siteId,
            finishedAt: Date.now(),
            status: r.status,
            rows: r.totals.headers + r.totals.details,
            ...(r.error ? { error: r.error } : {}),
          };
        }),
      );
      await send({ type: 'done', sites });
    } else if (m.type === 'reset') {
      for (const agent of agents) await forgetSentRows(agent);
      await send({ type: 'ready' });
    } else {
      await Promise.all(agents.map((a) => a.close()));
      process.exit(0);
    }
  };
  process.on('message', (m: WorkerOrder) => {
    handle(m).catch((err: unknown) => send({ type: 'failed', error: (err as Error).stack ?? String(err) }));
  });
  await send({ type: 'ready' });
}

process.once('message', (setup: WorkerSetup) => {
  main(setup).catch(async (err: unknown) => {
    await send({ type: 'failed', error: (err as Error).stack ?? String(err) });
    process.exit(1);
  });
});
