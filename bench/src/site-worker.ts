/**
 * One site of the concurrent-sites measurement, in its own process (as a site is its own machine):
 * prepares and seeds its database, starts a PeripheralAgent, reports `ready`, runs one session on
 * `go`, reports the result and exits. Driven over IPC by measure/concurrent.ts.
 */
import { createLogger } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { PeripheralAgent, parsePeripheralConfig, type PeripheralConfigInput } from '@sitesync/peripheral';
import { createAndSeed } from './lab-data.js';
import type { DialectName } from './options.js';
import { RawDb } from './raw-db.js';

export interface WorkerSetup {
  config: PeripheralConfigInput;
  dialect: DialectName;
  raw: { path?: string; pgUrl?: string; schema?: string };
  headers: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'done'; finishedAt: number; startedAt: number; status: string; rows: number; error?: string }
  | { type: 'failed'; error: string };

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, () => resolve()));
}

async function main(setup: WorkerSetup): Promise<void> {
  const db = await Database.open(setup.config.db.url, { role: 'site' });
  await db.close();
  const raw = await RawDb.open(setup.dialect, setup.raw);
  await createAndSeed(raw, { orders: setup.headers });
  await raw.close();
  const agent = new PeripheralAgent(
    parsePeripheralConfig(setup.config),
    createLogger(`site-${setup.config.siteId}`, setup.config.logLevel ?? 'warn', false),
  );
  await agent.start();
  process.once('message', (m: { type: string }) => {
    if (m.type !== 'go') return;
    const startedAt = Date.now();
    agent
      .runSession()
      .then(async (r) => {
        await send({
          type: 'done',
          startedAt,
          finishedAt: Date.now(),
          status: r.status,
          rows: r.totals.headers + r.totals.details,
          ...(r.error ? { error: r.error } : {}),
        });
      })
      .catch((err: unknown) => send({ type: 'failed', error: String(err) }))
      .finally(() => void agent.close().finally(() => process.exit(0)));
  });
  await send({ type: 'ready' });
}

process.once('message', (setup: WorkerSetup) => {
  main(setup).catch(async (err: unknown) => {
    await send({ type: 'failed', error: (err as Error).stack ?? String(err) });
    process.exit(1);
  });
});
