import { userInfo } from 'node:os';
import { type Command } from 'commander';
import { CentralInterventions } from '@sitesync/central';
import { siteId, writeJson, writeTable, type SyncctlContext } from './context';

/** Registers `transfer`, `transfer-cancel` and `transfers`: interventions moved from the central to a site. */
export function registerTransferCommands(program: Command, ctx: SyncctlContext): void {
  program
    .command('transfer <guid>')
    .description('move an unfinished intervention held centrally to a site (its procedure version goes first)')
    .requiredOption('--to <site>', 'destination site id', siteId)
    .action(async (guid: string, opts: { to: number }) => {
      await ctx.withCentralDb(async (db) => {
        const transferId = await new CentralInterventions(db).requestTransferOut(guid, opts.to, operator());
        process.stdout.write(
          `transfer ${transferId} requested: ${guid} -> site ${opts.to}; follow it with syncctl transfers --guid ${guid}\n`,
        );
      });
    });

  program
    .command('transfer-cancel <transferId>')
    .description('withdraw a transfer out that has not been delivered yet (the central copy is unlocked)')
    .action(async (transferId: string) => {
      await ctx.withCentralDb(async (db) => {
        await new CentralInterventions(db).cancelTransferOut(transferId, operator());
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
      await ctx.withCentralDb(async (db) => {
        const rows = await new CentralInterventions(db).listTransfers({
          ...(opts.guid ? { guid: opts.guid } : {}),
          ...(opts.site !== undefined ? { site: opts.site } : {}),
          ...(opts.state ? { state: opts.state } : {}),
        });
        if (opts.json) {
          writeJson(rows);
          return;
        }
        const where = (s: number | null) => (s === null ? 'central' : `site ${s}`);
        writeTable(
          // The id first: it is what transfer-cancel takes.
          rows.map((t) => ({
            'transfer id': t.transfer_id,
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
        );
      });
    });
}

/** Who asked, as the transfer log records it. */
function operator(): string {
  return `${userInfo().username} (syncctl)`;
}
