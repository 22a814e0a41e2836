import { Command } from 'commander';
import { ConfigError, createLogger, errorInfo, formatTable, serveAgentProcess } from '@sitesync/protocol';
import { loadPeripheralConfigWithOrigin, type PeripheralConfig } from '@sitesync/protocol';
import { Database } from '@sitesync/db';
import { PeripheralAgent } from './peripheral-agent';
import { SiteInterventions } from './interventions/site-interventions';

const SHUTDOWN_GRACE_MS = 60_000;

async function run(opts: { config?: string; once?: boolean }): Promise<number> {
  let config, origin;
  try {
    ({ config, origin } = loadPeripheralConfigWithOrigin(opts.config));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sync-peripheral: invalid configuration: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger('sync-peripheral', config.logLevel).child({ siteId: config.siteId });
  const agent = new PeripheralAgent(config, log, origin);
  try {
    await agent.start({ requireBroker: opts.once === true });
  } catch (err) {
    const msg = err instanceof ConfigError ? `invalid configuration: ${err.message}` : (err as Error).message;
    log.error({ err: errorInfo(err) }, 'cannot start');
    process.stderr.write(`sync-peripheral: ${msg}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }
  const proc = await serveAgentProcess(agent, { httpPort: config.httpPort, log, graceMs: SHUTDOWN_GRACE_MS });

  if (opts.once) {
    const r = await agent.runSession().catch((err: unknown) => {
      log.error({ err: errorInfo(err) }, 'session not run');
      return undefined;
    });
    proc.closeServer();
    await agent.close();
    if (r)
      process.stdout.write(
        `${JSON.stringify({ status: r.status, sessionId: r.sessionId, ...r.totals, ...(r.error ? { error: r.error } : {}) })}\n`,
      );
    return r?.status === 'ok' ? 0 : 1;
  }
  agent.schedule();
  return proc.untilFailed('sync-peripheral'); // or runs until a signal
}

/** The site config and its database, for the commands that work on the database alone. */
async function openSiteDatabase(file: string | undefined): Promise<{ config: PeripheralConfig; db: Database }> {
  const { config, origin } = loadPeripheralConfigWithOrigin(file);
  const db = await Database.open(config.db.url, { role: 'site', urlSource: origin.whereSet('db.url') });
  return { config, db };
}

const program = new Command('sync-peripheral').description('sitesync site agent');
program
  .command('run')
  .description('run sync sessions on the configured schedule (or one with --once)')
  .option('-c, --config <file>', 'config file (JSON; default $SYNC_CONFIG); SYNC_* environment variables override it')
  .option('--once', 'run one session and exit (for existing cron setups)')
  .action(async (opts: { config?: string; once?: boolean }) => {
    process.exitCode = await run(opts);
  });

program
  .command('transfer <guid...>')
  .description('mark interventions for transfer to the central (the running agent sends them)')
  .option('-c, --config <file>', 'config file (JSON; default $SYNC_CONFIG)')
  .action(async (guids: string[], opts: { config?: string }) => {
    const { config, db } = await openSiteDatabase(opts.config);
    try {
      const n = await new SiteInterventions(db, config.siteId, () => Promise.resolve()).requestTransfer(guids);
      process.stdout.write(`${n} of ${guids.length} intervention(s) marked for transfer\n`);
      process.exitCode = n === guids.length ? 0 : 1;
    } finally {
      await db.close();
    }
  });

program
  .command('interventions')
  .description('interventions held by this site, with their transfer state')
  .option('-c, --config <file>', 'config file (JSON; default $SYNC_CONFIG)')
  .option('--json', 'machine-readable output')
  .action(async (opts: { config?: string; json?: boolean }) => {
    const { db } = await openSiteDatabase(opts.config);
    try {
      const rows = await db.query<Record<string, unknown>>(
        `SELECT id, guid, procedure_code, procedure_version, finished, state, transfer_requested, updated_at FROM intervention ORDER BY id`,
      );
      process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatTable(rows)}\n`);
    } finally {
      await db.close();
    }
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`sync-peripheral: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
