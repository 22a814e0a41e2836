import type { InterventionData } from '@sitesync/protocol';
import type { Queryable } from './database';

/** A row of the `intervention` table, the same on the central and on every site. */
export interface InterventionRow {
  id: number;
  guid: string;
  procedure_code: string;
  procedure_version: number;
  finished: unknown;
  payload: string;
  /** active | pending (received, source not yet deleted) | outbound (in transit, locked) */
  state: 'active' | 'pending' | 'outbound';
  transfer_id: string | null;
}

/** The wire form of an intervention row (local id and state stay local). */
export function interventionFromRow(r: InterventionRow): InterventionData {
  return {
    guid: r.guid,
    procedure: { code: r.procedure_code, version: Number(r.procedure_version) },
    finished: Boolean(Number(r.finished)),
    payload: r.payload,
  };
}

/** Inserts an intervention with a new local id; returns that id. */
export async function insertIntervention(
  tx: Queryable,
  i: InterventionData,
  state: InterventionRow['state'] = 'active',
  transferId: string | null = null,
): Promise<number> {
  const d = tx.dialect;
  await tx.execute(
    `INSERT INTO intervention (guid, procedure_code, procedure_version, finished, payload, state, transfer_id, transfer_requested, updated_at) ` +
      `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      i.guid,
      i.procedure.code,
      i.procedure.version,
      d.bool(i.finished),
      i.payload,
      state,
      transferId,
      d.bool(false),
      d.now(),
    ],
  );
  const rows = await tx.query<{ id: number }>(`SELECT id FROM intervention WHERE guid = ?`, [i.guid]);
  return Number(rows[0]!.id);
}
