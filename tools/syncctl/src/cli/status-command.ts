import { type Command } from 'commander';
import { BrokerConnection, ManagementApi, Topology, tlsSocketOptions } from '@sitesync/protocol';
import {
  centralDeadLettersBySite,
  formatAge,
  readSiteStatus,
  withBrokerFigures,
  type CentralConfig,
  type DeadLetterContext,
  type SiteStatus,
} from '@sitesync/central';
import { deadLetterSources, positiveInt, syncctlLog, writeJson, writeTable, type SyncctlContext } from './context';

/** Registers `status`: one line per site, from the central database and the broker. */
export function registerStatusCommand(program: Command, ctx: SyncctlContext): void {
  program
    .command('status')
    .description('one line per site: sessions, merges, rows, lag, state, queued messages and dead letters')
    .option(
      '--stale-after <seconds>',
      'a site with no completed session for this long is stale (default: config, 3600)',
    )
    .option('--no-broker', 'only what the database knows (no queue depths, no dead letters)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { staleAfter?: string; broker: boolean; json?: boolean }) => {
      const cfg = ctx.optionalCentralConfig();
      const staleAfterSeconds = opts.staleAfter
        ? positiveInt(opts.staleAfter, '--stale-after')
        : cfg?.staleAfterSeconds;
      let sources: Omit<DeadLetterContext, 'topology'> | undefined;
      let rows = await ctx.withCentralDb(async (db) => {
        if (opts.broker && cfg) sources = await deadLetterSources(db);
        return readSiteStatus(db, staleAfterSeconds ? { staleAfterSeconds } : {});
      });
      if (opts.broker && cfg && sources) rows = await addBrokerFigures(rows, cfg, sources);
      else if (opts.broker)
        process.stderr.write('syncctl: no central config (--config or SYNC_CONFIG): no queue depths\n');
      if (opts.json) {
        writeJson(rows);
        return;
      }
      writeTable(
        rows.map((r) => ({
          site: r.site,
          pipeline: r.pipeline,
          state: r.state,
          lag: formatAge(r.lagSeconds),
          'site session end': r.lastSiteSession ?? '-',
          'last merge end': r.lastMerge ?? '-',
          rows: r.rows ?? '-',
          queued: r.queued ?? '-',
          'dead letters': r.deadLetters ?? '-',
          error: r.lastError ?? '',
        })),
      );
    });
}

/** Queue depths (management API) and dead letters per site (AMQP); a broker that does not answer is reported, not fatal. */
async function addBrokerFigures(
  rows: SiteStatus[],
  cfg: CentralConfig,
  sources: Omit<DeadLetterContext, 'topology'>,
): Promise<SiteStatus[]> {
  const topology = new Topology({ prefix: cfg.amqp.prefix });
  let queues;
  try {
    queues = await ManagementApi.fromAmqpUrl(cfg.amqp.url, cfg.amqp.managementUrl).queues();
  } catch (err) {
    process.stderr.write(`syncctl: no queue depths: ${(err as Error).message}\n`);
  }
  let central;
  const broker = new BrokerConnection({
    url: cfg.amqp.urls,
    name: 'syncctl status',
    log: syncctlLog('silent'),
    socketOptions: tlsSocketOptions(cfg.amqp),
  });
  try {
    await broker.connect();
    central = await centralDeadLettersBySite(broker, { ...sources, topology });
  } catch (err) {
    process.stderr.write(`syncctl: no dead-letter counts: ${(err as Error).message}\n`);
  } finally {
    await broker.close();
  }
  return withBrokerFigures(rows, topology, queues, central);
}
