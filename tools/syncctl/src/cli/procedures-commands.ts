import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { CentralInterventions } from '@sitesync/central';
import { siteId, writeRows, type SyncctlContext } from './context';

/** Registers the `procedures` command group (publish, list): procedure versions sent to sites. */
export function registerProceduresCommands(program: Command, ctx: SyncctlContext): void {
  const procedures = program.command('procedures').description('procedure versions (central -> sites)');
  procedures
    .command('publish <code> <version>')
    .description('store a procedure version and send it to sites (the running central agent delivers it)')
    .requiredOption('--definition-file <file>', 'the procedure definition (any text, e.g. JSON)')
    .option('--name <name>', 'human name (default: the code)')
    .option('--sites <ids>', 'comma-separated site ids (default: every registered site)')
    .action(async (code: string, version: string, opts: { definitionFile: string; name?: string; sites?: string }) => {
      const v = Number(version);
      if (!Number.isInteger(v) || v <= 0) throw new InvalidArgumentError('version is a positive integer');
      const definition = readFileSync(opts.definitionFile, 'utf8');
      const sites = opts.sites ? opts.sites.split(',').map((x) => siteId(x.trim())) : 'all';
      await ctx.withCentralDb(async (db) => {
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
      await ctx.withCentralDb(async (db) => {
        const rows = await db.query<Record<string, unknown>>(
          `SELECT p.code, p.version, p.name, sp.id_efector AS site, sp.state FROM procedure_version p ` +
            `LEFT JOIN site_procedure sp ON sp.code = p.code AND sp.version = p.version ORDER BY p.code, p.version, sp.id_efector`,
        );
        writeRows(rows, opts.json);
      });
    });
}
