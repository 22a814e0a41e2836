/**
 * Procedure versions on their way to sites: storing a version the operator publishes and queueing it
 * for sites, queueing one a transfer out needs, and recording the catalogue a site reports (what it
 * holds), which re-queues what it lost. The dispatcher (dispatcher.ts) sends what is queued. Each
 * function runs inside the caller's transaction (see `CentralInterventions`).
 */
import { SITE_TABLE, type Queryable } from '@sitesync/db';
import type { MessageBody } from '@sitesync/protocol';
import { TransferRefusedError } from './transfers';

export interface ProcedureInput {
  code: string;
  version: number;
  name: string;
  definition: string;
}

/** Stores a procedure version and queues it for `sites` (or every registered site); returns the sites. */
export async function publishProcedureVersion(
  tx: Queryable,
  p: ProcedureInput,
  sites: number[] | 'all',
): Promise<number[]> {
  const d = tx.dialect;
  const existing = await tx.query<{ definition: string }>(
    `SELECT definition FROM procedure_version WHERE code = ? AND version = ?`,
    [p.code, p.version],
  );
  if (existing.length && existing[0]!.definition !== p.definition) {
    throw new TransferRefusedError(
      `procedure ${p.code} version ${p.version} exists with another definition; publish a new version`,
    );
  }
  if (!existing.length) {
    await tx.execute(
      `INSERT INTO procedure_version (code, version, name, definition, created_at) VALUES (?, ?, ?, ?, ?)`,
      [p.code, p.version, p.name, p.definition, d.now()],
    );
  }
  const registered = (
    await tx.query<{ id_efector: number }>(`SELECT DISTINCT id_efector FROM ${d.quote(SITE_TABLE)}`)
  ).map((r) => Number(r.id_efector));
  const targets = sites === 'all' ? registered : sites;
  const unknown = targets.filter((s) => !registered.includes(s));
  if (unknown.length) throw new TransferRefusedError(`unknown site(s) ${unknown.join(', ')}`);
  for (const s of targets) await queueProcedure(tx, s, p.code, p.version);
  return targets;
}

/** Records a site's full catalogue: what it holds, and re-queues what it lost. */
export async function recordCatalogue(tx: Queryable, catalogue: MessageBody<'procedure.catalogue'>): Promise<void> {
  const { siteId, procedures } = catalogue;
  const now = tx.dialect.now();
  const known = await tx.query<{ code: string; version: number; state: string }>(
    `SELECT code, version, state FROM site_procedure WHERE id_efector = ?`,
    [siteId],
  );
  const held = new Set(procedures.map((p) => `${p.code}\u0000${p.version}`));
  for (const p of procedures) {
    const n = await tx.execute(
      `UPDATE site_procedure SET state = ?, updated_at = ? WHERE id_efector = ? AND code = ? AND version = ?`,
      ['held', now, siteId, p.code, p.version],
    );
    if (n === 0) {
      await tx.run(
        tx.dialect.insertIgnore(
          'site_procedure',
          ['id_efector', 'code', 'version', 'state', 'updated_at'],
          [siteId, p.code, p.version, 'held', now],
        ),
      );
    }
  }
  // The site lost something it had, or never got it (its queue did not exist yet, or the
  // central stopped between commit and publish): send it again.
  for (const k of known) {
    if (k.state !== 'queued' && !held.has(`${k.code}\u0000${k.version}`)) {
      await tx.execute(
        `UPDATE site_procedure SET state = ?, updated_at = ? WHERE id_efector = ? AND code = ? AND version = ?`,
        ['queued', now, siteId, k.code, k.version],
      );
    }
  }
}

/** Queues a procedure version for a site, unless the site already holds it. */
export async function queueProcedure(tx: Queryable, siteId: number, code: string, version: number): Promise<void> {
  const now = tx.dialect.now();
  const n = await tx.execute(
    `UPDATE site_procedure SET state = ?, updated_at = ? WHERE id_efector = ? AND code = ? AND version = ? AND state <> ?`,
    ['queued', now, siteId, code, version, 'held'],
  );
  if (n === 0) {
    await tx.run(
      tx.dialect.insertIgnore(
        'site_procedure',
        ['id_efector', 'code', 'version', 'state', 'updated_at'],
        [siteId, code, version, 'queued', now],
      ),
    );
  }
}
