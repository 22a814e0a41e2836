import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, formatTable } from '@sitesync/protocol';
import { Database, type DatabaseRole } from '@sitesync/db';
import { loadCentralConfig } from '../config';
import { registerSite, SITE_TABLE } from '../merge/site-registry';
import { CentralInterventions } from '../interventions/central-interventions';

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
  .description('operate sitesync: status, sites, procedures, transfers, database')
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
      const transferId = await new CentralInterventions(db).requestTransferOut(guid, opts.to);
      process.stdout.write(
        `transfer ${transferId} requested: ${guid} -> site ${opts.to}; follow it with syncctl transfers --guid ${guid}\n`,
      );
    });
  });

program
  .command('transfers')
  .description('the intervention transfer log')
  .option('--guid <guid>', 'one intervention')
  .option('--site <id>', 'transfers from or to this site', siteId)
  .option('--state <state>', 'accepted, completed, rejected, conflict, requested, awaiting-procedure, sent, refused')
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
            updated: t.updated_at,
          })),
        )}\n`,
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
