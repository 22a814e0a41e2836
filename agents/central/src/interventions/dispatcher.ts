/**
 * The dispatcher: everything the central must send about procedures and interventions, resumable
 * after a crash since it works from the database alone. It publishes the queued procedure versions
 * and moves transfers out forward, re-sending what a site left unanswered. Runs inside the caller's
 * transaction (see `CentralInterventions.dispatch`).
 */
import { interventionFromRow, type InterventionRow, type Queryable } from '@sitesync/db';
import { outgoing, type Outgoing } from '../handlers/outgoing';
import { queueProcedure } from './procedures';
import type { TransferRow } from './transfers';

/**
 * Publishes queued procedure versions, and moves transfers out forward: a destination that lacks
 * the exact procedure version gets it first, and the intervention only once its catalogue shows it.
 * A delivery left unanswered for `resendAfterMs` goes out again, and so does a procedure version a
 * waiting transfer needs.
 */
export async function dispatchPending(tx: Queryable, resendAfterMs: number): Promise<Outgoing[]> {
  const out: Outgoing[] = [];
  const d = tx.dialect;
  const now = d.now();
  const stale = staleBefore(d.name, resendAfterMs);

  const transfers = await tx.query<TransferRow>(
    `SELECT * FROM intervention_transfer WHERE to_site IS NOT NULL AND (state IN (?, ?) OR (state = ? AND updated_at < ?))`,
    ['requested', 'awaiting-procedure', 'sent', stale],
  );
  for (const t of transfers) {
    const site = Number(t.to_site);
    const held = await tx.query<{ state: string; updated_at: unknown }>(
      `SELECT state, updated_at FROM site_procedure WHERE id_efector = ? AND code = ? AND version = ?`,
      [site, t.procedure_code, t.procedure_version],
    );
    if (held[0]?.state !== 'held') {
      if (!held.length) await queueProcedure(tx, site, t.procedure_code, Number(t.procedure_version));
      else if (
        held[0]!.state === 'sent' &&
        new Date(held[0]!.updated_at as string).getTime() < Date.now() - resendAfterMs
      ) {
        await tx.execute(`UPDATE site_procedure SET state = ? WHERE id_efector = ? AND code = ? AND version = ?`, [
          'queued',
          site,
          t.procedure_code,
          t.procedure_version,
        ]);
      }
      if (t.state !== 'awaiting-procedure') {
        await tx.execute(`UPDATE intervention_transfer SET state = ?, updated_at = ? WHERE transfer_id = ?`, [
          'awaiting-procedure',
          now,
          t.transfer_id,
        ]);
      }
      continue;
    }
    const rows = await tx.query<InterventionRow>(`SELECT * FROM intervention WHERE guid = ? AND transfer_id = ?`, [
      t.guid,
      t.transfer_id,
    ]);
    if (!rows.length) continue;
    await tx.execute(`UPDATE intervention_transfer SET state = ?, updated_at = ? WHERE transfer_id = ?`, [
      'sent',
      now,
      t.transfer_id,
    ]);
    out.push(
      outgoing(site, 'intervention.deliver', {
        siteId: site,
        transferId: t.transfer_id,
        intervention: interventionFromRow(rows[0]!),
      }),
    );
  }

  // Procedure versions go out after the loop above queued what transfers need; a site applies
  // its queue in order, and a transfer waits for the catalogue, never for queue order.
  const queued = await tx.query<{
    id_efector: number;
    code: string;
    version: number;
    name: string;
    definition: string;
  }>(
    `SELECT sp.id_efector, sp.code, sp.version, p.name, p.definition FROM site_procedure sp ` +
      `JOIN procedure_version p ON p.code = sp.code AND p.version = sp.version WHERE sp.state = ?`,
    ['queued'],
  );
  for (const q of queued) {
    await tx.execute(
      `UPDATE site_procedure SET state = ?, updated_at = ? WHERE id_efector = ? AND code = ? AND version = ?`,
      ['sent', now, q.id_efector, q.code, q.version],
    );
    const siteId = Number(q.id_efector);
    out.push(
      outgoing(siteId, 'procedure.published', {
        siteId,
        code: q.code,
        version: Number(q.version),
        name: q.name,
        definition: q.definition,
      }),
    );
  }
  // Deliveries after the procedures they depend on were published.
  return [
    ...out.filter((o) => o.type === 'procedure.published'),
    ...out.filter((o) => o.type !== 'procedure.published'),
  ];
}

function staleBefore(dialect: string, ms: number): unknown {
  const t = new Date(Date.now() - ms);
  return dialect === 'sqlite' ? t.toISOString() : t;
}
