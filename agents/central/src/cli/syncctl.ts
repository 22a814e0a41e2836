import { Command, InvalidArgumentError } from 'commander';
import { ConfigError } from '@sitesync/protocol';
import { Database, type DatabaseRole } from '@sitesync/db';
import { loadCentralConfig } from '../config';
import { registerSite, SITE_TABLE } from '../merge/site-registry';
import { formatTable } from './table';

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
  .description('operate sitesync: status, sites, database')
  .option('-c, --config <file>', 'central config file (default $SYNC_CONFIG)')
  .option('--db <url>', 'central database URL (overrides the config)');

program
  .command('status')
  .description('one line per site and pipeline from EstadoSyncGeneral')
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    await withDb(program, 'central', async (db) => {
      const rows = await db.query<Record<string, unknown>>(
        `SELECT id_efector, pipeline, status, ultimo_update_efector_inicio, ultimo_update_efector_fin, ultimo_sync_fecha_inicio, ` +
          `ultimo_sync_fecha_fin, ultimo_sync_registros, header_count, detail_count, deletion_count, last_seen, last_error ` +
          `FROM ${db.dialect.quote(SITE_TABLE)} ORDER BY id_efector, pipeline`,
      );
      if (opts.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else
        process.stdout.write(
          `${formatTable(
            rows.map((r) => ({
              site: r.id_efector,
              pipeline: r.pipeline,
              state: r.status,
              'site session end': r.ultimo_update_efector_fin,
              'last merge end': r.ultimo_sync_fecha_fin,
              rows: r.ultimo_sync_registros,
              headers: r.header_count,
              details: r.detail_count,
              deletions: r.deletion_count,
              'last seen': r.last_seen,
              error: r.last_error,
            })),
          )}\n`,
        );
    });
  });

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
  .description('register a site (its EstadoSyncGeneral row) with its target tables')
  .requiredOption('--header-table <name>', 'central table for the headers (tabla_encabezado)', identifier)
  .option('--detail-table <name>', 'central table for the details (tabla_detalle)', identifier)
  .option('--pipeline <name>', 'pipeline name', 'main')
  .option('--user <brokerUser>', 'broker user that publishes for this site (default site-<id>)')
  .action(async (id: string, opts: { headerTable: string; detailTable?: string; pipeline: string; user?: string }) => {
    const site = siteId(id);
    await withDb(program, 'central', async (db) => {
      const r = await registerSite(db, {
        siteId: site,
        pipeline: opts.pipeline,
        headerTable: opts.headerTable,
        detailTable: opts.detailTable ?? null,
        ...(opts.user ? { brokerUser: opts.user } : {}),
      });
      process.stdout.write(
        `site ${r.siteId} (pipeline ${r.pipeline}) registered: headers -> ${r.headerTable}` +
          `${r.detailTable ? `, details -> ${r.detailTable}` : ''}, broker user ${r.brokerUser}\n`,
      );
    });
  });

const dbCmd = program.command('db').description('database maintenance');
dbCmd
  .command('upgrade')
  .description('apply pending sitesync migrations')
  .option('--role <role>', 'central or site', 'central')
  .action(async (opts: { role: string }) => {
    if (opts.role !== 'central' && opts.role !== 'site') throw new InvalidArgumentError('--role is central or site');
    const db = await Database.open(dbUrl(program), { role: opts.role, migrate: false });
    try {
      const done = await db.migrate();
      process.stdout.write(done.length ? `applied: ${done.join(', ')}\n` : 'already up to date\n');
    } finally {
      await db.close();
    }
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`syncctl: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
