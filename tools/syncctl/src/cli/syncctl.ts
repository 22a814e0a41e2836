import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import {
  BrokerConnection,
  ConfigError,
  HashingFileSchema,
  Topology,
  brokerDefinitions,
  configErrorFrom,
  createLogger,
  formatTable,
  rabbitPasswordHash,
  siteUserName,
  tlsSocketOptions,
  ManagementApi,
} from '@sitesync/protocol';
import {
  Database,
  OperationLockedError,
  resolvePipeline,
  type DatabaseRole,
  type ResolvedPipeline,
  SITE_TABLE,
} from '@sitesync/db';
import { provisionSite } from '../ops/provision-site';
import { checkSitePermissions } from '../ops/site-permissions';
import { verifySite } from '../ops/verify';
import { registerDbCommands } from './db-commands';
import { registerBundleCommands } from './bundle-commands';
import {
  loadCentralConfig,
  type CentralConfig,
  formatAge,
  readSiteStatus,
  withBrokerFigures,
  type SiteStatus,
  findSiteRows,
  registerSite,
  CentralInterventions,
  DEFAULT_MAX_REPLAYS,
  bodyText,
  centralDeadLettersBySite,
  existingDeadLetterQueues,
  loadSitesOfUser,
  purgeDeadLetters,
  replayDeadLetters,
  scanQueue,
  type DeadLetterFilter,
  type DeadLetterContext,
  MessageSigner,
  hashPassword,
} from '@sitesync/central';

interface GlobalOpts {
  config?: string;
  db?: string;
}

function dbUrl(program: Command): string {
  const o = program.opts<GlobalOpts>();
  if (o.db) return o.db;
  return loadCentralConfig(o.config).db.url;
}

async function withDb<T>(program: Command, role: DatabaseRole, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await Database.open(dbUrl(program), { role });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

function siteId(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a site id is a positive integer (efector id)');
  return n;
}

function identifier(v: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(v)) throw new InvalidArgumentError('letters, digits and _ only');
  return v;
}

const program = new Command('syncctl')
  .description('operate sitesync: status, sites, procedures, transfers, dead letters, database')
  .option('-c, --config <file>', 'central config file (default $SYNC_CONFIG)')
  .option('--db <url>', 'central database URL (overrides the config)');

program
  .command('status')
  .description('one line per site: sessions, merges, rows, lag, state, queued messages and dead letters')
  .option('--stale-after <seconds>', 'a site with no completed session for this long is stale (default: config, 3600)')
  .option('--no-broker', 'only what the database knows (no queue depths, no dead letters)')
  .option('--json', 'machine-readable output')
  .action(async (opts: { staleAfter?: string; broker: boolean; json?: boolean }) => {
    const cfg = tryLoadConfig();
    const staleAfterSeconds = opts.staleAfter ? positiveInt(opts.staleAfter, '--stale-after') : cfg?.staleAfterSeconds;
    let ctx: Omit<DeadLetterContext, 'topology'> | undefined;
    let rows = await withDb(program, 'central', async (db) => {
      if (opts.broker && cfg)
        ctx = { signer: await MessageSigner.forDatabase(db), sitesOfUser: await loadSitesOfUser(db) };
      return readSiteStatus(db, staleAfterSeconds ? { staleAfterSeconds } : {});
    });
    if (opts.broker && cfg && ctx) rows = await addBrokerFigures(rows, cfg, ctx);
    else if (opts.broker)
      process.stderr.write('syncctl: no central config (--config or SYNC_CONFIG): no queue depths\n');
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `${formatTable(
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
      )}\n`,
    );
  });

function tryLoadConfig(): CentralConfig | undefined {
  const o = program.opts<GlobalOpts>();
  if (!o.config && !process.env.SYNC_CONFIG && !process.env.SYNC_AMQP_URL) return undefined;
  return loadCentralConfig(o.config);
}

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} is a positive integer`);
  return n;
}

/** Queue depths (management API) and dead letters per site (AMQP); a broker that does not answer is reported, not fatal. */
async function addBrokerFigures(
  rows: SiteStatus[],
  cfg: CentralConfig,
  ctx: Omit<DeadLetterContext, 'topology'>,
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
    url: cfg.amqp.url,
    name: 'syncctl status',
    log: createLogger('syncctl', 'silent', false),
    socketOptions: tlsSocketOptions(cfg.amqp),
  });
  try {
    await broker.connect();
    central = await centralDeadLettersBySite(broker, { ...ctx, topology });
  } catch (err) {
    process.stderr.write(`syncctl: no dead-letter counts: ${(err as Error).message}\n`);
  } finally {
    await broker.close();
  }
  return withBrokerFigures(rows, topology, queues, central);
}

const sites = program.command('sites').description('sites known to the central');
sites
  .command('list')
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    await withDb(program, 'central', async (db) => {
      const rows = await db.query<Record<string, unknown>>(
        `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, status FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector, pipeline`,
      );
      process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatTable(rows)}\n`);
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
  .action(
    async (
      id: string,
      opts: {
        headerTable: string;
        detailTable?: string;
        pipeline: string;
        user?: string;
        passwordFile?: string;
        broker: boolean;
        ifMissing?: boolean;
        acceptCaseInsensitiveKeys?: boolean;
      },
    ) => {
      const reg = {
        siteId: siteId(id),
        pipeline: opts.pipeline,
        headerTable: opts.headerTable,
        detailTable: opts.detailTable ?? null,
        ...(opts.user ? { brokerUser: opts.user } : {}),
        ...(opts.acceptCaseInsensitiveKeys ? { acceptInexactKeys: true } : {}),
      };
      await withDb(program, 'central', async (db) => {
        if (opts.ifMissing && (await findSiteRows(db, reg.siteId)).some((r) => r.pipeline === reg.pipeline)) {
          process.stderr.write(
            `site ${reg.siteId} (pipeline ${reg.pipeline}) is registered already: nothing changed\n`,
          );
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
        const cfg = loadCentralConfig(program.opts<GlobalOpts>().config);
        const password = opts.passwordFile ? readFileSync(opts.passwordFile, 'utf8').trim() : undefined;
        const p = await provisionSite(
          db,
          reg,
          {
            amqpUrl: cfg.amqp.url,
            prefix: cfg.amqp.prefix,
            deliveryLimit: cfg.amqp.deliveryLimit,
            ...(cfg.amqp.managementUrl ? { managementUrl: cfg.amqp.managementUrl } : {}),
            socketOptions: tlsSocketOptions(cfg.amqp),
          },
          { ...(password ? { password } : {}), log: createLogger('syncctl', 'warn', false) },
        );
        const r = p.registration;
        process.stderr.write(
          `site ${r.siteId} (pipeline ${r.pipeline}) onboarded: headers -> ${r.headerTable}` +
            `${r.detailTable ? `, details -> ${r.detailTable}` : ''}; broker user ${p.brokerUser} may publish ` +
            `only ${r.siteId}.* and read only its own queue. Its peripheral config (keep the password secret; ` +
            `SYNC_AMQP_URL_FILE keeps it out of the file):\n`,
        );
        process.stdout.write(`${JSON.stringify(p.peripheralConfig, null, 2)}\n`);
      });
    },
  );

const broker = program.command('broker').description('RabbitMQ setup');
broker
  .command('definitions')
  .description(
    'print RabbitMQ definitions (vhost, exchanges, queues, policies, users, permissions) for load_definitions',
  )
  .requiredOption('--sites <ids>', 'comma-separated site ids')
  .option('--vhost <name>', 'virtual host', 'sitesync')
  .option('--prefix <prefix>', 'topology prefix', '')
  .option('--delivery-limit <n>', 'delivery attempts before dead-lettering', '5')
  .option('--central-user <name>', "the central agent's user", 'sitesync-central')
  .option('--admin-user <name>', "operators' user (management UI, syncctl sites add)", 'sitesync-admin')
  .requiredOption('--passwords-file <file>', 'JSON {"<user>": "<password>", ...} for every user (stored hashed)')
  .action(
    (opts: {
      sites: string;
      vhost: string;
      prefix: string;
      deliveryLimit: string;
      centralUser: string;
      adminUser: string;
      passwordsFile: string;
    }) => {
      let passwords: Record<string, unknown>;
      try {
        passwords = JSON.parse(readFileSync(opts.passwordsFile, 'utf8')) as Record<string, unknown>;
      } catch (cause) {
        throw new ConfigError(`--passwords-file ${opts.passwordsFile}: ${(cause as Error).message}`, 'passwords-file', {
          cause,
        });
      }
      const user = (name: string) => {
        const pw = passwords[name];
        if (typeof pw !== 'string' || !pw)
          throw new ConfigError(`${opts.passwordsFile}: no password for ${name}`, name);
        return { name, passwordHash: rabbitPasswordHash(pw) };
      };
      const ids = opts.sites.split(',').map((x) => siteId(x.trim()));
      const defs = brokerDefinitions(
        new Topology({ prefix: opts.prefix, deliveryLimit: positiveInt(opts.deliveryLimit, '--delivery-limit') }),
        {
          vhost: opts.vhost,
          central: user(opts.centralUser),
          admin: user(opts.adminUser),
          sites: ids.map((id) => ({ siteId: id, user: user(siteUserName(id)) })),
        },
      );
      process.stdout.write(`${JSON.stringify(defs, null, 2)}\n`);
    },
  );

broker
  .command('check-permissions')
  .description(
    "compare every site user's broker permissions with what sitesync grants a site (write only the up exchange, its own routing keys, read only its own queue); --fix sets them",
  )
  .option('--fix', 'set the permissions of every site user that differs')
  .option('--json', 'machine-readable output')
  .action(async (opts: { fix?: boolean; json?: boolean }) => {
    const cfg = loadCentralConfig(program.opts<GlobalOpts>().config);
    const api = ManagementApi.fromAmqpUrl(cfg.amqp.url, cfg.amqp.managementUrl);
    const checks = await withDb(program, 'central', (db) =>
      checkSitePermissions(db, api, new Topology({ prefix: cfg.amqp.prefix }), { fix: !!opts.fix }),
    );
    process.stdout.write(
      opts.json
        ? `${JSON.stringify(checks, null, 2)}\n`
        : `${formatTable(checks.map((c) => ({ site: c.site, user: c.user, state: c.state, differences: c.differences.join('; ') })))}\n`,
    );
    if (checks.some((c) => c.state === 'different')) process.exitCode = 1;
  });

const procedures = program.command('procedures').description('procedure versions (central -> sites)');
procedures
  .command('publish <code> <version>')
  .description('store a procedure version and send it to sites (the running central agent delivers it)')
  .requiredOption('--definition-file <file>', 'the procedure definition (any text, e.g. JSON)')
  .option('--name <name>', 'human name', '')
  .option('--sites <ids>', 'comma-separated site ids (default: every registered site)')
  .action(async (code: string, version: string, opts: { definitionFile: string; name: string; sites?: string }) => {
    const v = Number(version);
    if (!Number.isInteger(v) || v <= 0) throw new InvalidArgumentError('version is a positive integer');
    const definition = readFileSync(opts.definitionFile, 'utf8');
    const sites = opts.sites ? opts.sites.split(',').map((x) => siteId(x.trim())) : 'all';
    await withDb(program, 'central', async (db) => {
      const to = await new CentralInterventions(db).publishProcedure(
        { code, version: v, name: opts.name || code, definition },
        sites,
      );
      process.stdout.write(`procedure ${code} version ${v} queued for site(s) ${to.join(', ') || '(none)'}\n`);
    });
  });
procedures
  .command('list')
  .description('procedure versions and which sites hold them')
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    await withDb(program, 'central', async (db) => {
      const rows = await db.query<Record<string, unknown>>(
        `SELECT p.code, p.version, p.name, sp.id_efector AS site, sp.state FROM procedure_version p ` +
          `LEFT JOIN site_procedure sp ON sp.code = p.code AND sp.version = p.version ORDER BY p.code, p.version, sp.id_efector`,
      );
      process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatTable(rows)}\n`);
    });
  });

program
  .command('transfer <guid>')
  .description('move an unfinished intervention held centrally to a site (its procedure version goes first)')
  .requiredOption('--to <site>', 'destination site id', siteId)
  .action(async (guid: string, opts: { to: number }) => {
    await withDb(program, 'central', async (db) => {
      const transferId = await new CentralInterventions(db).requestTransferOut(
        guid,
        opts.to,
        `${userInfo().username} (syncctl)`,
      );
      process.stdout.write(
        `transfer ${transferId} requested: ${guid} -> site ${opts.to}; follow it with syncctl transfers --guid ${guid}\n`,
      );
    });
  });

program
  .command('transfer-cancel <transferId>')
  .description('withdraw a transfer out that has not been delivered yet (the central copy is unlocked)')
  .action(async (transferId: string) => {
    await withDb(program, 'central', async (db) => {
      await new CentralInterventions(db).cancelTransferOut(transferId, `${userInfo().username} (syncctl)`);
      process.stdout.write(`transfer ${transferId} cancelled\n`);
    });
  });

program
  .command('transfers')
  .description('the intervention transfer log')
  .option('--guid <guid>', 'one intervention')
  .option('--site <id>', 'transfers from or to this site', siteId)
  .option(
    '--state <state>',
    'accepted, completed, rejected, conflict, requested, awaiting-procedure, sent, refused, cancelled',
  )
  .option('--json', 'machine-readable output')
  .action(async (opts: { guid?: string; site?: number; state?: string; json?: boolean }) => {
    await withDb(program, 'central', async (db) => {
      const rows = await new CentralInterventions(db).listTransfers({
        ...(opts.guid ? { guid: opts.guid } : {}),
        ...(opts.site !== undefined ? { site: opts.site } : {}),
        ...(opts.state ? { state: opts.state } : {}),
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      const where = (s: number | null) => (s === null ? 'central' : `site ${s}`);
      process.stdout.write(
        `${formatTable(
          rows.map((t) => ({
            guid: t.guid,
            from: where(t.from_site),
            to: where(t.to_site),
            'local ids': `${t.from_local_id ?? '-'} -> ${t.to_local_id ?? '-'}`,
            procedure: `${t.procedure_code}.${t.procedure_version}`,
            state: t.state,
            reason: t.reason,
            by: t.requested_by,
            updated: t.updated_at,
          })),
        )}\n`,
      );
    });
  });

interface BrokerOpts {
  amqp?: string;
  prefix?: string;
}

/** Opens the broker (and the central database for the site list) for the dlq commands. */
async function withDeadLetters<T>(
  fn: (broker: BrokerConnection, queues: string[], ctx: DeadLetterContext) => Promise<T>,
): Promise<T> {
  const o = program.opts<GlobalOpts>();
  const b = dlq.opts<BrokerOpts>();
  let url = b.amqp;
  let prefix = b.prefix;
  if (!url || prefix === undefined) {
    const cfg = loadCentralConfig(o.config);
    url ??= cfg.amqp.url;
    prefix ??= cfg.amqp.prefix;
  }
  const topology = new Topology({ prefix });
  const { siteIds, signer, sitesOfUser } = await withDb(program, 'central', async (db) => ({
    siteIds: (
      await db.query<{ id_efector: number }>(`SELECT DISTINCT id_efector FROM ${db.dialect.quote(SITE_TABLE)}`)
    ).map((r) => Number(r.id_efector)),
    signer: await MessageSigner.forDatabase(db),
    sitesOfUser: await loadSitesOfUser(db),
  }));
  const log = createLogger('syncctl', 'warn', false);
  const broker = new BrokerConnection({ url, name: 'syncctl', log });
  await broker.connect();
  try {
    const queues = await existingDeadLetterQueues(broker, topology, siteIds);
    return await fn(broker, queues, { topology, signer, sitesOfUser });
  } finally {
    await broker.close();
  }
}

function filterFrom(opts: { id?: string; site?: number; type?: string; reason?: string }): DeadLetterFilter {
  return {
    ...(opts.id ? { messageId: opts.id } : {}),
    ...(opts.site !== undefined ? { siteId: opts.site } : {}),
    ...(opts.type ? { type: opts.type } : {}),
    ...(opts.reason ? { reason: opts.reason } : {}),
  };
}

const dlq = program
  .command('dlq')
  .description('dead letters: list, show, replay, purge')
  .option('--amqp <url>', 'broker URL (default: the central config)')
  .option('--prefix <prefix>', 'topology prefix (default: the central config)');
dlq
  .command('list')
  .description('dead letters grouped by queue, site, type and reason, with counts and ages')
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    await withDeadLetters(async (broker, queues, ctx) => {
      const groups = new Map<
        string,
        {
          queue: string;
          site: string;
          type: string;
          reason: string;
          trust: string;
          count: number;
          oldest: number;
          newest: number;
        }
      >();
      for (const q of queues) {
        for (const d of await scanQueue(broker, ctx, q)) {
          const key = [q, d.siteId ?? `${d.claimedSiteId}?`, d.type, d.reason, d.trust].join('|');
          const g = groups.get(key) ?? {
            queue: q,
            // an unverified letter's site is only what its header claims: shown with a "?"
            site:
              d.siteId !== undefined ? String(d.siteId) : d.claimedSiteId !== undefined ? `${d.claimedSiteId}?` : '?',
            type: d.type,
            reason: d.reason,
            trust: d.trust,
            count: 0,
            oldest: 0,
            newest: Infinity,
          };
          g.count++;
          g.oldest = Math.max(g.oldest, d.ageSeconds ?? 0);
          g.newest = Math.min(g.newest, d.ageSeconds ?? 0);
          groups.set(key, g);
        }
      }
      const rows = [...groups.values()].map((g) => ({
        ...g,
        oldest: formatAge(g.oldest),
        newest: formatAge(g.newest),
      }));
      process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatTable(rows)}\n`);
    });
  });
dlq
  .command('show <messageId>')
  .description('one dead letter: headers, reason, x-death history, body (patient fields masked)')
  .option('--raw', 'show the body unmasked')
  .action(async (id: string, opts: { raw?: boolean }) => {
    await withDeadLetters(async (broker, queues, ctx) => {
      for (const q of queues) {
        const d = (await scanQueue(broker, ctx, q)).find((x) => x.messageId === id);
        if (!d) continue;
        const { content: _c, headers, xDeath, ...summary } = d;
        process.stdout.write(
          `${JSON.stringify({ ...summary, headers: { ...headers, 'x-death': undefined }, xDeath }, null, 2)}\n--- body ---\n${bodyText(d, opts.raw)}\n`,
        );
        return;
      }
      throw new ConfigError(`no dead letter with message id ${id}`, 'messageId');
    });
  });
dlq
  .command('replay')
  .description('publish dead letters back where they first came from (confirmed before removal)')
  .option('--id <messageId>', 'one message')
  .option('--site <id>', 'messages of one site', siteId)
  .option('--type <type>', 'messages of one type')
  .option('--reason <reason>', 'messages dead-lettered for one reason')
  .option('--all', 'every dead letter (required when no filter is given)')
  .option('--dry-run', 'list what would be replayed')
  .option(
    '--force',
    `replay even messages already replayed ${DEFAULT_MAX_REPLAYS} times; with --exchange and --routing-key, unverified ones too`,
  )
  .option('--exchange <name>', 'with --force: where to send an unverified dead letter (its headers are not trusted)')
  .option('--routing-key <key>', 'with --force: the routing key for an unverified dead letter')
  .option('--as-user <user>', 'with --force: the broker user you vouch an unverified dead letter speaks for')
  .action(
    async (opts: {
      id?: string;
      site?: number;
      type?: string;
      reason?: string;
      all?: boolean;
      dryRun?: boolean;
      force?: boolean;
      exchange?: string;
      routingKey?: string;
      asUser?: string;
    }) => {
      const filter = filterFrom(opts);
      if (Object.keys(filter).length === 0 && !opts.all)
        throw new InvalidArgumentError('give --id, --site, --type, --reason or --all');
      if ((opts.exchange === undefined) !== (opts.routingKey === undefined))
        throw new InvalidArgumentError('give --exchange and --routing-key together');
      if (opts.exchange !== undefined && !opts.force)
        throw new InvalidArgumentError('an explicit target (--exchange, --routing-key) needs --force');
      if (opts.asUser !== undefined && (opts.exchange === undefined || opts.id === undefined))
        throw new InvalidArgumentError(
          '--as-user goes with one message (--id) and an explicit target (--exchange, --routing-key)',
        );
      const target =
        opts.exchange !== undefined && opts.routingKey !== undefined
          ? { exchange: opts.exchange, routingKey: opts.routingKey, ...(opts.asUser ? { user: opts.asUser } : {}) }
          : undefined;
      await withDeadLetters(async (broker, queues, ctx) => {
        const r = await replayDeadLetters(broker, ctx, queues, filter, {
          ...(opts.dryRun ? { dryRun: true } : {}),
          ...(opts.force ? { force: true } : {}),
          ...(target ? { target } : {}),
        });
        const verb = opts.dryRun ? 'would replay' : 'replayed';
        for (const d of r.replayed)
          process.stdout.write(
            `${verb} ${d.messageId} (${d.type}, site ${d.siteId ?? '?'}, ${d.reason}) -> ${d.originalExchange} ${d.originalRoutingKey}\n`,
          );
        for (const x of r.refused) process.stdout.write(`refused ${x.letter.messageId}: ${x.why}\n`);
        process.stdout.write(`${r.replayed.length} ${verb}, ${r.refused.length} refused\n`);
        if (r.refused.length) process.exitCode = 1;
      });
    },
  );
dlq
  .command('purge')
  .description('delete dead letters for good')
  .option('--queue <name>', 'one dead-letter queue (default: all)')
  .option('--yes', 'confirm: without it nothing is deleted')
  .action(async (opts: { queue?: string; yes?: boolean }) => {
    await withDeadLetters(async (broker, queues) => {
      const targets = opts.queue ? queues.filter((q) => q === opts.queue) : queues;
      if (opts.queue && targets.length === 0) throw new ConfigError(`no dead-letter queue ${opts.queue}`, 'queue');
      if (!opts.yes) {
        const counts = await Promise.all(targets.map((q) => broker.withChannel((ch) => ch.checkQueue(q))));
        const n = counts.reduce((a, c) => a + c.messageCount, 0);
        process.stdout.write(`would delete ${n} dead letter(s) from ${targets.join(', ')}; add --yes to do it\n`);
        process.exitCode = 1;
        return;
      }
      const purged = await purgeDeadLetters(broker, targets);
      for (const [q, n] of Object.entries(purged)) process.stdout.write(`${q}: ${n} deleted\n`);
    });
  });

program
  .command('verify')
  .description(
    'reconcile a site with the central: per pipeline, counts and a digest at both ends, and the keys that differ',
  )
  .requiredOption('--site <id>', 'the site (efector id)', siteId)
  .requiredOption('--site-db <url>', "the site's database URL")
  .requiredOption('--pipeline-file <file...>', "the site's hashing file(s), as in its peripheral config")
  .option('--max-keys <n>', 'keys listed per kind of difference', '50')
  .option('--json', 'machine-readable output')
  .action(async (opts: { site: number; siteDb: string; pipelineFile: string[]; maxKeys: string; json?: boolean }) => {
    const siteDb = await Database.open(opts.siteDb, { role: 'site', migrate: false });
    try {
      const pipelines: ResolvedPipeline[] = [];
      for (const [i, file] of opts.pipelineFile.entries()) {
        let json: unknown;
        try {
          json = JSON.parse(readFileSync(file, 'utf8'));
        } catch (cause) {
          throw new ConfigError(`--pipeline-file ${file}: ${(cause as Error).message}`, 'pipeline-file', { cause });
        }
        const parsed = HashingFileSchema.safeParse(json);
        if (!parsed.success) throw configErrorFrom(parsed.error, `${file}: `);
        pipelines.push(await resolvePipeline(siteDb, parsed.data, `pipelines.${i}`));
      }
      const report = await withDb(program, 'central', (central) =>
        verifySite(siteDb, central, opts.site, pipelines, { maxKeys: positiveInt(opts.maxKeys, '--max-keys') }),
      );
      const differences = report.reduce((n, r) => n + r.differences, 0);
      if (differences) process.exitCode = 1;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `${formatTable(
          report.flatMap((r) => [
            { pipeline: r.pipeline, side: 'site', ...r.site },
            { pipeline: r.pipeline, side: 'central', ...r.central },
          ]),
        )}\n`,
      );
      for (const r of report) {
        for (const [what, keys] of [
          ['missing centrally', r.missingCentrally],
          ['only centrally', r.extraCentrally],
          ['different', r.different],
        ] as const)
          if (keys.length) process.stdout.write(`${r.pipeline}: ${what}: ${keys.join(' ')}\n`);
      }
      process.stdout.write(
        differences
          ? `site ${opts.site}: ${differences} header(s) differ\n`
          : `site ${opts.site}: identical at the site and centrally\n`,
      );
    } finally {
      await siteDb.close();
    }
  });

registerDbCommands(program);

/** The password from stdin: typed without echo on a terminal, or piped (one trailing newline dropped). */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  process.stderr.write('password: ');
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (s: string) => {
        for (const ch of s) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            resolve(typed);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            reject(new Error('cancelled'));
            return;
          }
          typed = ch === '\u007f' || ch === '\b' ? typed.slice(0, -1) : typed + ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

const users = program.command('users').description('users of the supervision page and HTTP API');
users
  .command('hash-password')
  .description('read a password from stdin and print its scrypt hash, for "passwordHash" in the "users" config')
  .action(async () => {
    const password = await readPassword();
    if (password.length < 8) throw new InvalidArgumentError('use a password of at least 8 characters');
    process.stdout.write(`${await hashPassword(password)}\n`);
  });

registerBundleCommands(program);

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`syncctl: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ConfigError || err instanceof OperationLockedError ? 2 : 1);
});
