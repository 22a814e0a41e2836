import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { ConfigError, splitBrokerUrls } from '@sitesync/protocol';
import { Database, JOURNAL_TABLE, OperationJournal, OperationLock, type DatabaseRole } from '@sitesync/db';
import { applyBundle } from '../bundles/bundle-applier';
import { exportSiteBundle } from '../bundles/bundle-exporter';
import { readBundle, type BundleContent } from '../bundles/bundle-reader';
import { describePlan } from '../bundles/bundle-report';
import { planBundle } from '../bundles/bundle-validator';
import { writeBundle } from '../bundles/bundle-writer';
import type { TableOverlay } from '../bundles/schema-model';
import { siteId, type DatabaseTarget, type SyncctlContext } from './context';

interface ApplyOpts {
  role: string;
  configDir?: string;
  dryRun?: boolean;
  breakLock?: boolean;
}

/** Registers `bundle apply` and `bundle export` on syncctl. */
export function registerBundleCommands(program: Command, ctx: SyncctlContext): void {
  const bundle = program
    .command('bundle')
    .description('provisioning bundles: numbered SQL scripts, data imports and config files, applied in order');

  bundle
    .command('apply <bundle>')
    .description(
      'check a bundle (folder or .zip) against the database given with --db, then run its entries in numeric order; ' +
        'a re-run of the same bundle resumes at the entry that failed',
    )
    .option(
      '--role <role>',
      'what the database is: site or central (its sitesync tables are brought up to date)',
      'site',
    )
    .option('--config-dir <dir>', "the agent's config folder, where NNN.files/ entries are copied")
    .option('--dry-run', 'check the bundle and print what each entry would do; change nothing')
    .option('--break-lock', "remove another run's lock first: only when that run's process is gone")
    .action(async (source: string, opts: ApplyOpts) => {
      const role = databaseRole(opts.role);
      const target = role === 'central' ? ctx.centralDb() : siteTarget(ctx.options.db);
      const content = await readBundle(source);
      await (opts.dryRun ? dryRun(target, role, content, opts) : apply(target, role, content, opts));
    });

  bundle
    .command('export <out>')
    .description(
      'write a bundle (folder, or a file ending in .zip) that provisions a new site: the procedure catalogue and the site config',
    )
    .requiredOption('--site <id>', 'the site (efector id), registered with syncctl sites add', siteId)
    .requiredOption('--pipeline-file <file...>', "the site's hashing file(s)")
    .option(
      '--amqp-url <url>',
      "the broker as the site reaches it, a cluster's nodes comma-separated (default: the central config)",
    )
    .option('--prefix <prefix>', 'topology prefix (default: the central config)')
    .action(async (out: string, opts: { site: number; pipelineFile: string[]; amqpUrl?: string; prefix?: string }) => {
      // The central config is only needed for what the options do not give.
      const cfg = !opts.amqpUrl || !ctx.options.db ? ctx.centralConfig() : undefined;
      const amqpUrl = opts.amqpUrl ? splitBrokerUrls(opts.amqpUrl) : cfg!.amqp.urls;
      const prefix = opts.prefix ?? cfg?.amqp.prefix ?? '';
      const { url, urlSource } = ctx.centralDb();
      const pipelineFiles = await Promise.all(
        opts.pipelineFile.map(async (name) => ({ name, text: await readText(name) })),
      );
      const central = await Database.open(url, { role: 'central', urlSource });
      try {
        const files = await exportSiteBundle(central, { siteId: opts.site, pipelineFiles, amqpUrl, prefix });
        await writeBundle(out, files);
        process.stdout.write(
          `bundle for site ${opts.site} written to ${out}:\n${files.map((f) => `  ${f.path}`).join('\n')}\n` +
            `apply it with: syncctl bundle apply --db <site database URL> --config-dir <config folder> ${out}\n`,
        );
      } finally {
        await central.close();
      }
    });
}

/** A site database is given with --db only (a bundle is applied before the site has a config). */
function siteTarget(url: string | undefined): DatabaseTarget {
  if (!url) throw new InvalidArgumentError('give the target database with --db <url>');
  return { url, urlSource: '--db' };
}

async function apply(
  target: DatabaseTarget,
  role: DatabaseRole,
  content: BundleContent,
  opts: ApplyOpts,
): Promise<void> {
  const db = await Database.open(target.url, { role, migrate: false, urlSource: target.urlSource });
  let lock: OperationLock | undefined;
  try {
    // Taken before anything is read or changed: the plan depends on what the journal says is done.
    lock = await OperationLock.acquire(db, 'bundle', {
      breakLock: opts.breakLock === true,
      onBroken: (h) =>
        process.stdout.write(`removed the lock of ${h.operation} ${h.holder} (since ${h.acquiredAt.toISOString()})\n`),
    });
    // The sitesync tables come first (like any agent start): the bundle is checked against them.
    await db.migrate();
    const journal = await readJournal(db);
    const plan = await planBundle(db, content, {
      ...configDir(opts),
      done: await doneEntries(journal, content),
    });
    const outcome = await applyBundle(db, plan, journal ?? (await OperationJournal.open(db, 'bundle')), {
      progress: (line) => process.stdout.write(`${line}\n`),
    });
    const ran = outcome.entries.filter((e) => e.result === 'applied').length;
    process.stdout.write(
      `bundle ${content.source} applied (run ${outcome.runId}): ${ran} entr${ran === 1 ? 'y' : 'ies'} run, ` +
        `${outcome.entries.length - ran} skipped\n`,
    );
  } finally {
    await lock?.release();
    await db.close();
  }
}

/** Plans the bundle against the database as it is, opened read-only: nothing is written, not even sitesync's tables. */
async function dryRun(
  target: DatabaseTarget,
  role: DatabaseRole,
  content: BundleContent,
  opts: ApplyOpts,
): Promise<void> {
  const db = await Database.open(target.url, { role, readOnly: true, urlSource: target.urlSource });
  try {
    const journal = await readJournal(db);
    const overlay = await pendingSitesyncTables(db, role);
    const plan = await planBundle(db, content, {
      ...configDir(opts),
      done: await doneEntries(journal, content),
      overlay,
    });
    const lines = await describePlan(db, plan);
    if (overlay.length) lines.splice(1, 0, `  (first: sitesync's ${role} tables would be created or upgraded)`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await db.close();
  }
}

/** The bundle journal when the database has one; a dry run must not create it. */
async function readJournal(db: Database): Promise<OperationJournal | undefined> {
  const names = (await db.tableNames()).map((n) => n.toLowerCase());
  return names.includes(JOURNAL_TABLE) ? OperationJournal.open(db, 'bundle') : undefined;
}

/** Entries of this very bundle (same checksum) that an earlier run applied. */
async function doneEntries(journal: OperationJournal | undefined, content: BundleContent): Promise<Set<string>> {
  const done = new Set<string>();
  if (!journal) return done;
  for (const item of content.items) if (await journal.succeeded(item.name, '', content.checksum)) done.add(item.name);
  return done;
}

/**
 * sitesync's own tables that pending migrations would create, read from a scratch in-memory SQLite
 * database migrated for `role`: a dry run on a new site can then check imports into them.
 */
async function pendingSitesyncTables(db: Database, role: DatabaseRole): Promise<TableOverlay> {
  if (!(await db.pendingMigrations()).length) return [];
  const scratch = await Database.open('sqlite::memory:', { role });
  try {
    const live = new Set((await db.tableNames()).map((n) => n.toLowerCase()));
    const overlay = [];
    for (const name of await scratch.tableNames()) {
      if (live.has(name.toLowerCase())) continue;
      const info = (await scratch.describeTable(name))!;
      overlay.push({
        name,
        columns: info.columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable })),
        primaryKey: info.primaryKey,
      });
    }
    return overlay;
  } finally {
    await scratch.close();
  }
}

function configDir(opts: ApplyOpts): { configDir?: string } {
  return opts.configDir ? { configDir: resolve(opts.configDir) } : {};
}

function databaseRole(v: string): DatabaseRole {
  if (v !== 'site' && v !== 'central') throw new InvalidArgumentError('--role is site or central');
  return v;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`--pipeline-file ${file}: ${(cause as Error).message}`, 'pipeline-file', { cause });
  }
}
