import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import {
  ConfigError,
  ManagementApi,
  Topology,
  brokerDefinitions,
  rabbitPasswordHash,
  siteUserName,
} from '@sitesync/protocol';
import { checkSitePermissions } from '../ops/site-permissions';
import { positiveInt, siteId, writeJson, writeTable, type SyncctlContext } from './context';

interface DefinitionsOptions {
  sites: string;
  vhost: string;
  prefix?: string;
  deliveryLimit: string;
  centralUser: string;
  adminUser: string;
  passwordsFile: string;
}

/** Registers the `broker` command group (definitions, check-permissions). */
export function registerBrokerCommands(program: Command, ctx: SyncctlContext): void {
  const broker = program.command('broker').description('RabbitMQ setup');
  broker
    .command('definitions')
    .description(
      'print RabbitMQ definitions (vhost, exchanges, queues, policies, users, permissions) for load_definitions',
    )
    .requiredOption('--sites <ids>', 'comma-separated site ids')
    .option('--vhost <name>', 'virtual host', 'sitesync')
    .option('--prefix <prefix>', 'topology prefix (default: none)')
    .option('--delivery-limit <n>', 'delivery attempts before dead-lettering', '5')
    .option('--central-user <name>', "the central agent's user", 'sitesync-central')
    .option('--admin-user <name>', "operators' user (management UI, syncctl sites add)", 'sitesync-admin')
    .requiredOption('--passwords-file <file>', 'JSON {"<user>": "<password>", ...} for every user (stored hashed)')
    .action(printDefinitions);

  broker
    .command('check-permissions')
    .description(
      "compare every site user's broker permissions with what sitesync grants a site (write only the up exchange, its own routing keys, read only its own queue); --fix sets them",
    )
    .option('--fix', 'set the permissions of every site user that differs')
    .option('--json', 'machine-readable output')
    .action(async (opts: { fix?: boolean; json?: boolean }) => {
      const cfg = ctx.centralConfig();
      const api = ManagementApi.fromAmqpUrl(cfg.amqp.url, cfg.amqp.managementUrl);
      const checks = await ctx.withCentralDb((db) =>
        checkSitePermissions(db, api, new Topology({ prefix: cfg.amqp.prefix }), { fix: !!opts.fix }),
      );
      if (opts.json) writeJson(checks);
      else
        writeTable(
          checks.map((c) => ({ site: c.site, user: c.user, state: c.state, differences: c.differences.join('; ') })),
        );
      if (checks.some((c) => c.state === 'different')) process.exitCode = 1;
    });
}

function printDefinitions(opts: DefinitionsOptions): void {
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
    if (typeof pw !== 'string' || !pw) throw new ConfigError(`${opts.passwordsFile}: no password for ${name}`, name);
    return { name, passwordHash: rabbitPasswordHash(pw) };
  };
  const ids = opts.sites.split(',').map((x) => siteId(x.trim()));
  const defs = brokerDefinitions(
    new Topology({ prefix: opts.prefix ?? '', deliveryLimit: positiveInt(opts.deliveryLimit, '--delivery-limit') }),
    {
      vhost: opts.vhost,
      central: user(opts.centralUser),
      admin: user(opts.adminUser),
      sites: ids.map((id) => ({ siteId: id, user: user(siteUserName(id)) })),
    },
  );
  writeJson(defs);
}
