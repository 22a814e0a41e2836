import { type Command, InvalidArgumentError } from 'commander';
import { BrokerConnection, ConfigError, Topology, splitBrokerUrls, tlsSocketOptions } from '@sitesync/protocol';
import { SITE_TABLE } from '@sitesync/db';
import {
  DEFAULT_MAX_REPLAYS,
  bodyText,
  existingDeadLetterQueues,
  formatAge,
  purgeDeadLetters,
  replayDeadLetters,
  scanQueue,
  type DeadLetterContext,
  type DeadLetterFilter,
} from '@sitesync/central';
import { deadLetterSources, siteId, syncctlLog, writeRows, type SyncctlContext } from './context';

/** The `dlq` group's own options: where the broker is when not from the central config. */
interface BrokerOptions {
  amqp?: string;
  prefix?: string;
}

interface ReplayOptions {
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
}

type DeadLetterWork<T> = (broker: BrokerConnection, queues: string[], letters: DeadLetterContext) => Promise<T>;

/** Registers the `dlq` command group (list, show, replay, purge). */
export function registerDlqCommands(program: Command, ctx: SyncctlContext): void {
  const dlq = program
    .command('dlq')
    .description('dead letters: list, show, replay, purge')
    .option('--amqp <url>', 'broker URL, or cluster nodes separated by commas (default: the central config)')
    .option('--prefix <prefix>', 'topology prefix (default: the central config)');

  dlq
    .command('list')
    .description('dead letters grouped by queue, site, type and reason, with counts and ages')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      await withDeadLetters(ctx, dlq, async (broker, queues, letters) =>
        writeRows(await groupDeadLetters(broker, queues, letters), opts.json),
      );
    });
  dlq
    .command('show <messageId>')
    .description('one dead letter: headers, reason, x-death history, body (patient fields masked)')
    .option('--raw', 'show the body unmasked')
    .action(async (id: string, opts: { raw?: boolean }) => {
      await withDeadLetters(ctx, dlq, async (broker, queues, letters) => {
        for (const q of queues) {
          const d = (await scanQueue(broker, letters, q)).find((x) => x.messageId === id);
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
    .action((opts: ReplayOptions) => replay(ctx, dlq, opts));
  dlq
    .command('purge')
    .description('delete dead letters for good')
    .option('--queue <name>', 'one dead-letter queue (default: all)')
    .option('--yes', 'confirm: without it nothing is deleted')
    .action(async (opts: { queue?: string; yes?: boolean }) => {
      await withDeadLetters(ctx, dlq, async (broker, queues) => {
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
}

/**
 * Opens the broker (and the central database for the site list) for the dlq commands; `dlq`, the
 * group's command, holds its --amqp and --prefix.
 */
async function withDeadLetters<T>(ctx: SyncctlContext, dlq: Command, fn: DeadLetterWork<T>): Promise<T> {
  const b = dlq.opts<BrokerOptions>();
  // The central config gives what the options leave out, and its TLS files (CA, client
  // certificate) in any case: an amqps broker with a private CA is reached as the agent reaches it.
  const cfg = b.amqp && b.prefix !== undefined ? ctx.optionalCentralConfig() : ctx.centralConfig();
  const url = b.amqp ? splitBrokerUrls(b.amqp) : cfg!.amqp.urls;
  const prefix = b.prefix ?? cfg!.amqp.prefix;
  const topology = new Topology({ prefix });
  const { siteIds, sources } = await ctx.withCentralDb(async (db) => ({
    siteIds: (
      await db.query<{ id_efector: number }>(`SELECT DISTINCT id_efector FROM ${db.dialect.quote(SITE_TABLE)}`)
    ).map((r) => Number(r.id_efector)),
    sources: await deadLetterSources(db),
  }));
  const broker = new BrokerConnection({
    url,
    name: 'syncctl',
    log: syncctlLog('warn'),
    ...(cfg ? { socketOptions: tlsSocketOptions(cfg.amqp) } : {}),
  });
  await broker.connect();
  try {
    const queues = await existingDeadLetterQueues(broker, topology, siteIds);
    return await fn(broker, queues, { topology, ...sources });
  } finally {
    await broker.close();
  }
}

/** Dead letters grouped by queue, site, type, reason and trust, with counts and ages. */
async function groupDeadLetters(
  broker: BrokerConnection,
  queues: string[],
  letters: DeadLetterContext,
): Promise<Array<Record<string, unknown>>> {
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
    for (const d of await scanQueue(broker, letters, q)) {
      const key = [q, d.siteId ?? `${d.claimedSiteId}?`, d.type, d.reason, d.trust].join('|');
      const g = groups.get(key) ?? {
        queue: q,
        // an unverified letter's site is only what its header claims: shown with a "?"
        site: d.siteId !== undefined ? String(d.siteId) : d.claimedSiteId !== undefined ? `${d.claimedSiteId}?` : '?',
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
  return [...groups.values()].map((g) => ({
    ...g,
    oldest: formatAge(g.oldest),
    newest: formatAge(g.newest),
  }));
}

async function replay(ctx: SyncctlContext, dlq: Command, opts: ReplayOptions): Promise<void> {
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
  await withDeadLetters(ctx, dlq, async (broker, queues, letters) => {
    const r = await replayDeadLetters(broker, letters, queues, filter, {
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
}

function filterFrom(opts: { id?: string; site?: number; type?: string; reason?: string }): DeadLetterFilter {
  return {
    ...(opts.id ? { messageId: opts.id } : {}),
    ...(opts.site !== undefined ? { siteId: opts.site } : {}),
    ...(opts.type ? { type: opts.type } : {}),
    ...(opts.reason ? { reason: opts.reason } : {}),
  };
}
