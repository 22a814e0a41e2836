import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import { tlsSocketOptions } from '@sitesync/protocol';
import { SITE_DISABLED_AT_COLUMN, SITE_TABLE } from '@sitesync/db';
import { findSiteRows, registerSite, setSiteDisabled, type CentralConfig } from '@sitesync/central';
import { provisionSite, type BrokerAccess } from '../ops/provision-site';
import { planSiteRemoval, removeSite, type SiteRemovalPlan } from '../ops/remove-site';
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

/** Registers the `sites` command group (list, add, disable, enable, remove). */
export function registerSitesCommands(program: Command, ctx: SyncctlContext): void {
  const sites = program.command('sites').description('sites known to the central');
  sites
    .command('list')
    .description(
      'registered sites: site id, pipeline, central header and detail tables, broker user, status, ' +
        'and enabled (no) with disabled_at when an operator disabled the site',
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      await ctx.withCentralDb(async (db) => {
        const rows = await db.query<Record<string, unknown>>(
          `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, status, ` +
            `${db.dialect.quote(SITE_DISABLED_AT_COLUMN)} FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector, pipeline`,
        );
        writeRows(
          rows.map(({ disabled_at, ...r }) => ({
            ...r,
            enabled: disabled_at === null || disabled_at === undefined ? 'yes' : 'no',
            disabled_at: disabled_at ?? null,
          })),
          opts.json,
        );
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
  sites
    .command('disable <siteId>')
    .description(
      "stop taking the site's messages: the central dead-letters every message of it (sessions, batches, " +
        'interventions) as site-disabled into its rejects queue, merges nothing, and tells the site its ' +
        'sessions are refused; acts at the next message, no restart',
    )
    .action(async (id: string) => {
      const site = siteId(id);
      await ctx.withCentralDb(async (db) => {
        const changed = await setSiteDisabled(db, site, true);
        process.stdout.write(
          changed
            ? `site ${site} disabled: its messages are dead-lettered as site-disabled until "syncctl sites enable ${site}"\n`
            : `site ${site} was disabled already: nothing changed\n`,
        );
      });
    });
  sites
    .command('enable <siteId>')
    .description(
      "take the site's messages again: its next session merges; what was dead-lettered while it was " +
        'disabled can be replayed (syncctl dlq replay --site <id>)',
    )
    .action(async (id: string) => {
      const site = siteId(id);
      await ctx.withCentralDb(async (db) => {
        const changed = await setSiteDisabled(db, site, false);
        process.stdout.write(
          changed
            ? `site ${site} enabled: its next session merges; replay what it sent meanwhile with "syncctl dlq replay --site ${site}"\n`
            : `site ${site} was enabled already: nothing changed\n`,
        );
      });
    });
  sites
    .command('remove <siteId>')
    .description(
      'remove a site: its broker user, its queues (site.<id>, site.<id>.dlq, central.site-<id>.dlq) and its ' +
        'central state (EstadoSyncGeneral rows, sessions, ledger, inbox, rejected batches, procedure catalogue); ' +
        'the transfer log is kept. Refused while a transfer in progress names the site. Without --yes, ' +
        'only prints what it would delete. Safe to run again after a failure',
    )
    .option('--purge-rows', "also delete the site's rows (id_efector = <id>) from its central header and detail tables")
    .option('--yes', 'required to delete anything: without it nothing changes and the counts are printed')
    .action(async (id: string, opts: { purgeRows?: boolean; yes?: boolean }) => {
      const site = siteId(id);
      const broker = brokerAccess(ctx.centralConfig());
      await ctx.withCentralDb(async (db) => {
        const plan = await planSiteRemoval(db, site, broker, { purgeRows: !!opts.purgeRows });
        if (!opts.yes) {
          process.stdout.write(describeRemoval(plan, 'would delete'));
          process.stderr.write(`nothing changed: run again with --yes to remove site ${site}\n`);
          process.exitCode = 1;
          return;
        }
        await removeSite(db, plan, broker);
        process.stdout.write(describeRemoval(plan, 'deleted'));
      });
    });
}

/** The plan as lines an operator reads before confirming (and the record of what went). */
function describeRemoval(p: SiteRemovalPlan, verb: string): string {
  const lines = [`site ${p.siteId}: ${verb}`];
  lines.push(`  broker user ${p.brokerUser.name}${p.brokerUser.exists ? '' : ' (absent already)'}`);
  if (!p.queues.length) lines.push('  queues: none left');
  for (const q of p.queues) lines.push(`  queue ${q.name} (${q.messages} messages)`);
  for (const t of p.state) lines.push(`  ${t.rows} row(s) of ${t.table}: ${t.what}`);
  for (const t of p.targetRows) lines.push(`  ${t.rows} row(s) of ${t.table} (id_efector = ${p.siteId})`);
  return `${lines.join('\n')}\n`;
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
    const password = opts.passwordFile ? readFileSync(opts.passwordFile, 'utf8').trim() : undefined;
    const p = await provisionSite(db, reg, brokerAccess(ctx.centralConfig()), {
      ...(password ? { password } : {}),
      log: syncctlLog('warn'),
    });
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

/** The broker as the central config names it: every node, the prefix, management and TLS. */
function brokerAccess(cfg: CentralConfig): BrokerAccess {
  return {
    amqpUrl: cfg.amqp.urls,
    prefix: cfg.amqp.prefix,
    deliveryLimit: cfg.amqp.deliveryLimit,
    ...(cfg.amqp.managementUrl ? { managementUrl: cfg.amqp.managementUrl } : {}),
    socketOptions: tlsSocketOptions(cfg.amqp),
  };
}
