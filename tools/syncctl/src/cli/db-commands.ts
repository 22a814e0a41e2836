import { type Command } from 'commander';
import { ConfigError, formatTable, loadPeripheralConfigWithOrigin } from '@sitesync/protocol';
import { Database, parseDatabaseUrl, redact, type DatabaseRole } from '@sitesync/db';
import { DEFAULT_MAX_KEYS, type CheckOptions, type Finding } from '../ops/db-check/check-context';
import { upgradeDatabase, type UpgradeResult, type UpgradeTarget } from '../ops/db-upgrade';
import { addedForeignKeys, emptyScripts, readUpgradeScripts, type UpgradeScripts } from '../ops/upgrade-scripts';
import { centralUpgradeTarget, siteUpgradeTarget } from '../ops/upgrade-targets';
import { writeJson, type DatabaseTarget, type SyncctlContext } from './context';

/** `syncctl db check` and `syncctl db upgrade`; see docs/upgrades.md. */

interface DbCommandOptions {
  role?: string;
  siteConfig?: string;
  scripts?: string;
  sites?: string;
  maxKeys: string;
  stuckAfter: string;
}

/** The database an invocation works on and how it is checked. */
interface ResolvedTarget extends DatabaseTarget {
  role: DatabaseRole;
  target: UpgradeTarget;
  scripts: UpgradeScripts;
  checkOptions: CheckOptions;
}

const DEFAULT_STUCK_AFTER = '1h';

/** Registers the `db` command group (check, upgrade) on syncctl's program. */
export function registerDbCommands(program: Command, ctx: SyncctlContext): void {
  const db = program.command('db').description('database pre-checks and upgrades (see docs/upgrades.md)');
  const common = (cmd: Command) =>
    cmd
      .option('--role <role>', 'central or site (default: site with --site-config, else central)')
      .option('--site-config <file>', "the site agent's config file (pipelines, hooks; its db.url unless --db)")
      .option('--scripts <folder>', "the release's upgrade scripts: pre/, schema/, post/, final/ holding *.sql")
      .option('--sites <ids>', 'central: site ids that must have an EstadoSyncGeneral row (comma-separated)')
      .option('--max-keys <n>', 'offending keys listed per finding', String(DEFAULT_MAX_KEYS))
      .option(
        '--stuck-after <age>',
        'interventions in transit longer than this are stuck (90s, 30m, 2h, 1d)',
        DEFAULT_STUCK_AFTER,
      );

  common(db.command('check'))
    .description('list every inconsistency that would break an upgrade or a sync; exit 1 when any is found')
    .option('--json', 'machine-readable output')
    .action(async (opts: DbCommandOptions & { json?: boolean }) => {
      const resolved = resolveTarget(ctx, opts);
      // A check only reads: the database is opened so that nothing can be written through it.
      const database = await Database.open(resolved.url, {
        role: resolved.role,
        readOnly: true,
        urlSource: resolved.urlSource,
      });
      try {
        const findings = await resolved.target.check(database, addedForeignKeys(resolved.scripts));
        if (findings.length) process.exitCode = 1;
        if (opts.json) {
          writeJson({ role: resolved.role, findings });
          return;
        }
        process.stdout.write(formatFindings(findings));
        process.stdout.write(
          findings.length
            ? `${resolved.role} database ${redact(resolved.url)}: ${findings.length} finding(s)\n`
            : `${resolved.role} database ${redact(resolved.url)}: no inconsistencies found\n`,
        );
      } finally {
        await database.close();
      }
    });

  common(db.command('upgrade'))
    .description(
      'upgrade the database in journaled steps: pre-checks, pre-scripts, schema, post-scripts, final scripts, verification',
    )
    .option('--continue', 'resume the last upgrade at the step that failed, after fixing the cause')
    .option('--step', 'run only the next pending step, then stop')
    .option('--break-lock', "remove another run's lock first: only when that run's process is gone")
    .action(async (opts: DbCommandOptions & { continue?: boolean; step?: boolean; breakLock?: boolean }) => {
      const resolved = resolveTarget(ctx, opts);
      const database = await Database.open(resolved.url, {
        role: resolved.role,
        migrate: false,
        urlSource: resolved.urlSource,
      });
      try {
        const result = await upgradeDatabase(database, resolved.target, {
          scripts: resolved.scripts,
          resume: opts.continue === true,
          step: opts.step === true,
          breakLock: opts.breakLock === true,
          report: (line) => process.stdout.write(`${line}\n`),
        });
        reportUpgrade(result);
      } finally {
        await database.close();
      }
    });
}

function resolveTarget(ctx: SyncctlContext, opts: DbCommandOptions): ResolvedTarget {
  const role = opts.role ?? (opts.siteConfig ? 'site' : 'central');
  if (role !== 'central' && role !== 'site') {
    throw new ConfigError(`--role ${JSON.stringify(role)}: expected central or site`, 'role');
  }
  const checkOptions: CheckOptions = {
    maxKeys: positiveInt(opts.maxKeys, '--max-keys'),
    stuckAfterSeconds: parseAge(opts.stuckAfter),
  };
  if (role === 'site') {
    if (opts.sites) throw new ConfigError('--sites applies to the central only', 'sites');
    const loaded = opts.siteConfig ? loadPeripheralConfigWithOrigin(opts.siteConfig) : undefined;
    const site = loaded?.config;
    const url = ctx.options.db ?? site?.db.url;
    const urlSource = ctx.options.db !== undefined ? '--db' : loaded?.origin.whereSet('db.url');
    if (!url || !urlSource) {
      throw new ConfigError(
        '--role site needs --site-config <file> (its pipelines, hooks and db.url) or --db <url>',
        'site-config',
      );
    }
    if (!site) {
      // Before a site's first start (a DBA creating sitesync's tables) there may be no config yet.
      process.stderr.write('syncctl: no --site-config: the pipelines and hooks are not checked\n');
    }
    return {
      role,
      url,
      urlSource,
      target: siteUpgradeTarget({ pipelines: site?.pipelines ?? [], hooks: site?.hooks ?? {} }, checkOptions),
      scripts: readScripts(opts.scripts, url),
      checkOptions,
    };
  }
  if (opts.siteConfig) throw new ConfigError('--site-config applies to --role site only', 'site-config');
  const { url, urlSource } = ctx.centralDb();
  return {
    role,
    url,
    urlSource,
    target: centralUpgradeTarget({ sites: parseSites(opts.sites) }, checkOptions),
    scripts: readScripts(opts.scripts, url),
    checkOptions,
  };
}

function readScripts(folder: string | undefined, url: string): UpgradeScripts {
  if (!folder) return emptyScripts();
  // The dialect decides how scripts split (GO batches on SQL Server); the URL names it.
  return readUpgradeScripts(folder, parseDatabaseUrl(url, 'db').dialect);
}

function positiveInt(v: string, option: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new ConfigError(`${option} ${JSON.stringify(v)}: expected a positive integer`, option);
  return n;
}

const AGE_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `90s`, `30m`, `2h`, `1d` -> seconds. */
export function parseAge(v: string): number {
  const m = /^(\d+)\s*([smhd])$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0) {
    throw new ConfigError(
      `--stuck-after ${JSON.stringify(v)}: expected an age such as 90s, 30m, 2h or 1d`,
      'stuck-after',
    );
  }
  return Number(m[1]) * AGE_UNITS[m[2]!]!;
}

function parseSites(v: string | undefined): number[] {
  if (!v) return [];
  return v.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n <= 0)
      throw new ConfigError(`--sites: ${JSON.stringify(s)} is not a site id`, 'sites');
    return n;
  });
}

/** The findings as a table, then each one's problem and fix. */
export function formatFindings(findings: readonly Finding[]): string {
  if (!findings.length) return '';
  const rows = findings.map((f, i) => ({
    '#': i + 1,
    kind: f.kind,
    where: f.where,
    columns: f.columns.join(', '),
    count: f.count,
    keys: f.keys.join('; ') + (f.count > f.keys.length && f.keys.length ? ` (+${f.count - f.keys.length} more)` : ''),
  }));
  const details = findings.map(
    (f, i) =>
      `${i + 1}. ${f.problem}\n   fix: ${f.fix}` +
      (f.notRun?.length ? `\n   not checked until this is fixed: ${f.notRun.join('; ')}` : ''),
  );
  return `${formatTable(rows)}\n\n${details.join('\n')}\n\n`;
}

function reportUpgrade(r: UpgradeResult): void {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  switch (r.status) {
    case 'up-to-date':
      out('already up to date: no pending migration and every script already applied; nothing done');
      return;
    case 'completed': {
      const lost = r.customisations.filter((c) => c.outcome === 'not-applicable');
      for (const c of lost)
        out(`customisation no longer applies: ${c.kind} ${c.name} on ${c.table}: ${c.reason ?? ''}`);
      out(`upgrade ${r.runId} completed`);
      return;
    }
    case 'paused':
      out(
        `step ${r.done} done; next step: ${r.next} (run \`syncctl db upgrade --step\` again, or without --step for the rest)`,
      );
      return;
    case 'failed':
      process.exitCode = 1;
      if (r.findings.length) process.stdout.write(formatFindings(r.findings));
      process.stderr.write(
        `upgrade ${r.runId} stopped at step ${r.step}${r.item ? `, ${r.item}` : ''}:\n  ${r.error}\n` +
          'fix the cause, then run `syncctl db upgrade --continue`\n',
      );
  }
}
