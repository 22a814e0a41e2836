import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import { tlsSocketOptions } from '@sitesync/protocol';
import { SITE_TABLE } from '@sitesync/db';
import { findSiteRows, registerSite } from '@sitesync/central';
import { provisionSite } from '../ops/provision-site';
import { identifier, siteId, syncctlLog, writeJson, writeRows, type SyncctlContext } from './context';

interface SitesAddOptions {
  headerTable: string;
  detailTable?: string;
  pipeline: string;
  user?: string;
  passwordFile?: string;
  broker: boolean;
  ifMissing?: boolean;
  acceptCaseInsensitiveKeys?: boolean;
}

/** Registers the `sites` command group (list, add). */
export function registerSitesCommands(program: Command, ctx: SyncctlContext): void {
  const sites = program.command('sites').description('sites known to the central');
  sites
    .command('list')
    .description('registered sites: site id, pipeline, central header and detail tables, broker user, status')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withCentralDb(async (db) => {
        const rows = await db.query<Record<string, unknown>>(
          `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, status FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector, pipeline`,
        );
        writeRows(rows, opts.json);
      });
    });
  sites
    .command('add <siteId>')
    .description(
      'onboard a site: its EstadoSyncGeneral row, its broker user and permissions, its queues; prints the peripheral config',
    )
    .requiredOption('--header-table <name>', 'central table for the headers (tabla_encabezado)', identifier)
    .option('--detail-table <name>', 'central table for the details (tabla_detalle)', identifier)
    .option('--pipeline <name>', 'pipeline name', 'main')
    .option('--user <brokerUser>', 'broker user that publishes for this site (default site-<id>)')
    .option('--password-file <file>', "the site user's broker password (default: a generated one)")
    .option('--no-broker', 'only the EstadoSyncGeneral row (the broker user exists already)')
    .option(
      '--if-missing',
      'succeed without changing anything when the site is registered already (for provisioning scripts)',
    )
    .option(
      '--accept-case-insensitive-keys',
      'register although an existing target table compares keys ignoring case or trailing spaces (batches whose keys are one key there are refused)',
    )
    .action((id: string, opts: SitesAddOptions) => addSite(ctx, id, opts));
}

async function addSite(ctx: SyncctlContext, id: string, opts: SitesAddOptions): Promise<void> {
  const reg = {
    siteId: siteId(id),
    pipeline: opts.pipeline,
    headerTable: opts.headerTable,
    detailTable: opts.detailTable ?? null,
    ...(opts.user ? { brokerUser: opts.user } : {}),
    ...(opts.acceptCaseInsensitiveKeys ? { acceptInexactKeys: true } : {}),
  };
  await ctx.withCentralDb(async (db) => {
    if (opts.ifMissing && (await findSiteRows(db, reg.siteId)).some((r) => r.pipeline === reg.pipeline)) {
      process.stderr.write(`site ${reg.siteId} (pipeline ${reg.pipeline}) is registered already: nothing changed\n`);
      return;
    }
    if (!opts.broker) {
      const r = await registerSite(db, reg);
      process.stdout.write(
        `site ${r.siteId} (pipeline ${r.pipeline}) registered: headers -> ${r.headerTable}` +
          `${r.detailTable ? `, details -> ${r.detailTable}` : ''}, broker user ${r.brokerUser}\n`,
      );
      return;
    }
    const cfg = ctx.centralConfig();
    const password = opts.passwordFile ? readFileSync(opts.passwordFile, 'utf8').trim() : undefined;
    const p = await provisionSite(
      db,
      reg,
      {
        amqpUrl: cfg.amqp.urls,
        prefix: cfg.amqp.prefix,
        deliveryLimit: cfg.amqp.deliveryLimit,
        ...(cfg.amqp.managementUrl ? { managementUrl: cfg.amqp.managementUrl } : {}),
        socketOptions: tlsSocketOptions(cfg.amqp),
      },
      { ...(password ? { password } : {}), log: syncctlLog('warn') },
    );
    const r = p.registration;
    process.stderr.write(
      `site ${r.siteId} (pipeline ${r.pipeline}) onboarded: headers -> ${r.headerTable}` +
        `${r.detailTable ? `, details -> ${r.detailTable}` : ''}; broker user ${p.brokerUser} may publish ` +
        `only ${r.siteId}.* and read only its own queue. Its peripheral config (keep the password secret; ` +
        `SYNC_AMQP_URL_FILE keeps it out of the file):\n`,
    );
    writeJson(p.peripheralConfig);
  });
}
