/**
 * Interventions moving between the central and the sites, and their log (`intervention_transfer`):
 * a transfer up (a site's intervention checked, stored as pending, then activated when the source
 * deleted its copy, or dropped when the source changed it) and the operator's side of a transfer out
 * (requested, cancelled, answered by the destination). The dispatcher (dispatcher.ts) delivers the
 * transfers out. Each function runs inside the caller's transaction (see `CentralInterventions`),
 * except `readTransferLog`, a plain read.
 */
import { randomUUID } from 'node:crypto';
import { SyncError, type MessageBody, type ProcedureRef } from '@sitesync/protocol';
import { insertIntervention, type Database, type InterventionRow, type Queryable, SITE_TABLE } from '@sitesync/db';
import { outgoing, type Outgoing } from '../handlers/outgoing';

/** States of a transfer in the log (`intervention_transfer.state`). */
export type TransferState =
  | 'accepted' // up: stored centrally as pending, source told to delete
  | 'completed'
  | 'rejected'
  | 'conflict' // up: changed at the source while in transit
  | 'requested' // out: operator asked
  | 'awaiting-procedure' // out: the destination first gets the procedure version
  | 'sent' // out: delivered, waiting for the destination's answer
  | 'refused' // out: the destination refused it
  | 'cancelled'; // out: the operator withdrew it before delivery

export interface TransferRow {
  transfer_id: string;
  guid: string;
  from_site: number | null;
  to_site: number | null;
  from_local_id: number | null;
  to_local_id: number | null;
  procedure_code: string;
  procedure_version: number;
  state: TransferState;
  reason: string | null;
  /** Who asked: the operator (OS or API user) for a transfer out, `site <id>` for a transfer up. */
  requested_by: string | null;
  created_at: unknown;
  updated_at: unknown;
}

/** An operator request the central refuses (the reason is for the operator). */
export class TransferRefusedError extends SyncError {
  override name = 'TransferRefusedError';
  constructor(message: string) {
    super(message, 'TRANSFER_REFUSED');
  }
}

/** Claims an unfinished intervention held centrally for a move to `toSite`; returns the transfer id. */
export async function claimTransferOut(
  tx: Queryable,
  guid: string,
  toSite: number,
  requestedBy: string,
): Promise<string> {
  const site = await tx.query(`SELECT id_efector FROM ${tx.dialect.quote(SITE_TABLE)} WHERE id_efector = ?`, [toSite]);
  if (!site.length) throw new TransferRefusedError(`site ${toSite} is not registered`);
  const rows = await tx.query<InterventionRow>(`SELECT * FROM intervention WHERE guid = ?`, [guid]);
  const i = rows[0];
  if (!i) throw new TransferRefusedError(`intervention ${guid} is not held by the central`);
  if (Number(i.finished))
    throw new TransferRefusedError(`intervention ${guid} is finished; only unfinished interventions move`);
  const transferId = randomUUID();
  const claimed = await tx.execute(
    `UPDATE intervention SET state = ?, transfer_id = ?, updated_at = ? WHERE guid = ? AND state = ?`,
    ['outbound', transferId, tx.dialect.now(), guid, 'active'],
  );
  if (claimed === 0) {
    // Re-read: a concurrent request may have claimed it since the first read.
    // FOR UPDATE reads the latest committed row even under REPEATABLE READ (MySQL's default).
    const lock = tx.dialect.name === 'mysql' || tx.dialect.name === 'postgres' ? ' FOR UPDATE' : '';
    const current = (
      await tx.query<InterventionRow>(`SELECT state FROM intervention WHERE guid = ?${lock}`, [guid])
    )[0];
    if (current) i.state = current.state;
    throw new TransferRefusedError(
      `intervention ${guid} is ${i.state === 'outbound' ? 'already being transferred' : `not active (${i.state})`}`,
    );
  }
  await insertTransfer(tx, {
    transfer_id: transferId,
    guid,
    from_site: null,
    to_site: toSite,
    from_local_id: Number(i.id),
    to_local_id: null,
    procedure_code: i.procedure_code,
    procedure_version: Number(i.procedure_version),
    state: 'requested',
    reason: null,
    requested_by: requestedBy,
  });
  return transferId;
}

/** Cancels a transfer out that has not been delivered yet, unlocking the central copy. */
export async function withdrawTransferOut(tx: Queryable, transferId: string, by: string): Promise<void> {
  const now = tx.dialect.now();
  const n = await tx.execute(
    `UPDATE intervention_transfer SET state = ?, reason = ?, updated_at = ? WHERE transfer_id = ? AND to_site IS NOT NULL AND state IN (?, ?)`,
    ['cancelled', `cancelled by ${by}`, now, transferId, 'requested', 'awaiting-procedure'],
  );
  if (n === 0) {
    const t = (
      await tx.query<TransferRow>(`SELECT state FROM intervention_transfer WHERE transfer_id = ?`, [transferId])
    )[0];
    throw new TransferRefusedError(
      t
        ? `transfer ${transferId} is ${t.state}; only requested or awaiting-procedure transfers can be cancelled`
        : `no transfer ${transferId}`,
    );
  }
  await tx.execute(
    `UPDATE intervention SET state = ?, transfer_id = NULL, updated_at = ? WHERE transfer_id = ? AND state = ?`,
    ['active', now, transferId, 'outbound'],
  );
}

/** The newest `limit` (default 1000) entries of the log that match, oldest first. */
export async function readTransferLog(
  db: Database,
  filter: { guid?: string; site?: number; state?: string; limit?: number },
): Promise<TransferRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.guid) {
    where.push('guid = ?');
    params.push(filter.guid);
  }
  if (filter.site !== undefined) {
    where.push('(from_site = ? OR to_site = ?)');
    params.push(filter.site, filter.site);
  }
  if (filter.state) {
    where.push('state = ?');
    params.push(filter.state);
  }
  // The newest `limit` entries, oldest first.
  const body = `* FROM intervention_transfer${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, transfer_id DESC`;
  const rows = await db.query<TransferRow>(db.dialect.selectLimit(body, filter.limit ?? 1000), params);
  return rows.reverse();
}

/** Transfer up, step 1: check, store as pending, log, and order the source to delete it (or refuse it). */
export async function receiveTransferUp(
  tx: Queryable,
  transfer: MessageBody<'intervention.transfer'>,
  siteKnown: boolean,
): Promise<Outgoing[]> {
  const { siteId, transferId, localId, intervention: iv } = transfer;
  const reject = (reason: MessageBody<'intervention.rejected'>['reason'], message: string) =>
    outgoing(siteId, 'intervention.rejected', { siteId, transferId, guid: iv.guid, reason, message });
  const seen = await tx.query<TransferRow>(`SELECT * FROM intervention_transfer WHERE transfer_id = ?`, [transferId]);
  if (seen.length) return [answerFor(seen[0]!, siteId)];
  const base = {
    transfer_id: transferId,
    guid: iv.guid,
    from_site: siteId,
    to_site: null,
    from_local_id: localId,
    procedure_code: iv.procedure.code,
    procedure_version: iv.procedure.version,
    requested_by: `site ${siteId}`,
  };
  const refuse = async (reason: MessageBody<'intervention.rejected'>['reason'], message: string) => {
    await insertTransfer(tx, { ...base, to_local_id: null, state: 'rejected', reason: `${reason}: ${message}` });
    return [reject(reason, message)];
  };
  if (!siteKnown) return refuse('unknown-site', `site ${siteId} is not registered at the central`);
  const proc = await tx.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [
    iv.procedure.code,
    iv.procedure.version,
  ]);
  if (!proc.length) {
    return refuse(
      'procedure-version-missing',
      `the central has no procedure ${iv.procedure.code} version ${iv.procedure.version}`,
    );
  }
  const notHeld = await senderLacks(tx, siteId, iv.procedure);
  if (notHeld) return refuse('procedure-version-missing', notHeld);
  const here = await tx.query<InterventionRow>(`SELECT * FROM intervention WHERE guid = ?`, [iv.guid]);
  if (here.length)
    return refuse(
      'guid-active-elsewhere',
      `intervention ${iv.guid} is already held by the central (${here[0]!.state})`,
    );
  const last = await tx.query<TransferRow>(
    tx.dialect.selectLimit(`* FROM intervention_transfer WHERE guid = ? AND state = ? ORDER BY updated_at DESC`, 1),
    [iv.guid, 'completed'],
  );
  const livesAt = last[0]?.to_site ?? null;
  if (last.length && livesAt !== null && Number(livesAt) !== siteId) {
    return refuse('guid-active-elsewhere', `intervention ${iv.guid} was moved to site ${livesAt}`);
  }
  const centralId = await insertIntervention(tx, iv, 'pending', transferId);
  await insertTransfer(tx, { ...base, to_local_id: centralId, state: 'accepted', reason: null });
  return [outgoing(siteId, 'intervention.accepted', { siteId, transferId, guid: iv.guid, centralId })];
}

/** Transfer up, step 3: the source copy is gone, so the central copy becomes the active one. */
export async function completeTransferUp(
  tx: Queryable,
  fromSite: number,
  { transferId, guid }: MessageBody<'intervention.source-deleted'>,
): Promise<void> {
  const now = tx.dialect.now();
  const n = await tx.execute(
    `UPDATE intervention_transfer SET state = ?, updated_at = ? WHERE transfer_id = ? AND guid = ? AND state = ? AND from_site = ?`,
    ['completed', now, transferId, guid, 'accepted', fromSite],
  );
  // Matched on the GUID the central logged, not only the transfer id: a message naming another GUID
  // would otherwise close the log while the pending copy it never touches stays pending. Same below.
  if (n === 0) return; // repeated, not this site's transfer, or not its GUID
  await tx.execute(
    `UPDATE intervention SET state = ?, transfer_id = NULL, updated_at = ? WHERE guid = ? AND transfer_id = ? AND state = ?`,
    ['active', now, guid, transferId, 'pending'],
  );
}

/** Transfer up: the source changed it while in transit; drop the pending copy, it stays at the source. */
export async function abandonTransferUp(
  tx: Queryable,
  fromSite: number,
  { transferId, guid, reason }: MessageBody<'intervention.source-conflict'>,
): Promise<void> {
  const n = await tx.execute(
    `UPDATE intervention_transfer SET state = ?, reason = ?, updated_at = ? WHERE transfer_id = ? AND guid = ? AND state = ? AND from_site = ?`,
    ['conflict', reason.slice(0, 2000), tx.dialect.now(), transferId, guid, 'accepted', fromSite],
  );
  if (n === 0) return;
  await tx.execute(`DELETE FROM intervention WHERE guid = ? AND transfer_id = ? AND state = ?`, [
    guid,
    transferId,
    'pending',
  ]);
}

/** Transfer out, last step: the destination stored it (delete the central copy) or refused it (keep it). */
export async function finishTransferOut(
  tx: Queryable,
  toSite: number,
  { transferId, guid, status, localId, reason }: MessageBody<'intervention.received'>,
): Promise<void> {
  const now = tx.dialect.now();
  const n = await tx.execute(
    `UPDATE intervention_transfer SET state = ?, to_local_id = ?, reason = ?, updated_at = ? WHERE transfer_id = ? AND guid = ? AND state = ? AND to_site = ?`,
    [status === 'stored' ? 'completed' : 'refused', localId, reason, now, transferId, guid, 'sent', toSite],
  );
  if (n === 0) return;
  if (status === 'stored') {
    await tx.execute(`DELETE FROM intervention WHERE guid = ? AND transfer_id = ? AND state = ?`, [
      guid,
      transferId,
      'outbound',
    ]);
  } else {
    await tx.execute(
      `UPDATE intervention SET state = ?, transfer_id = NULL, updated_at = ? WHERE guid = ? AND transfer_id = ?`,
      ['active', now, guid, transferId],
    );
  }
}

/** Versions listed in a rejection, at most (the message and the log's reason are bounded). */
const MAX_LISTED_VERSIONS = 20;

/**
 * Why `siteId` may not send an intervention on `procedure`, or null when it may. The gate is the
 * central's record of the SENDER's catalogue (`site_procedure` held, set only by the site's own
 * `procedure.catalogue`), never the version the intervention claims: a site moves an intervention
 * only on a version it told the central it holds. A version published to it but not yet confirmed by
 * its catalogue (queued, sent) does not count, nor does no record at all (the central never heard
 * from the site): both are a rejection, not a retry. The site reports its catalogue before any
 * transfer on a version it just stored, and on every (re)connect, so a waiting transfer would gain
 * nothing; and a rejection is safe: the site unlocks the intervention and can mark it again, while
 * holding the message would let a site that never reports stall the queue.
 */
async function senderLacks(tx: Queryable, siteId: number, procedure: ProcedureRef): Promise<string | null> {
  const rows = await tx.query<{ version: number; state: string }>(
    `SELECT version, state FROM site_procedure WHERE id_efector = ? AND code = ?`,
    [siteId, procedure.code],
  );
  const wanted = rows.find((r) => Number(r.version) === procedure.version);
  if (wanted?.state === 'held') return null;
  const held = rows
    .filter((r) => r.state === 'held')
    .map((r) => Number(r.version))
    .sort((a, b) => a - b);
  let holds: string;
  if (held.length) {
    const listed = held.slice(0, MAX_LISTED_VERSIONS).map((v) => `${procedure.code}.${v}`);
    holds = `it holds ${listed.join(', ')}${held.length > listed.length ? ` and ${held.length - listed.length} more` : ''}`;
  } else {
    const any = await tx.query(
      tx.dialect.selectLimit(`code FROM site_procedure WHERE id_efector = ? AND state = ?`, 1),
      [siteId, 'held'],
    );
    holds = any.length ? `it holds no version of ${procedure.code}` : 'the central has no procedure catalogue from it';
  }
  const pending = wanted
    ? `; ${procedure.code}.${procedure.version} was sent to it, not yet confirmed by its catalogue`
    : '';
  return `site ${siteId} does not hold procedure ${procedure.code} version ${procedure.version} (${holds}${pending})`;
}

async function insertTransfer(tx: Queryable, t: Omit<TransferRow, 'created_at' | 'updated_at'>): Promise<void> {
  const now = tx.dialect.now();
  await tx.execute(
    `INSERT INTO intervention_transfer (transfer_id, guid, from_site, to_site, from_local_id, to_local_id, procedure_code, procedure_version, state, reason, requested_by, created_at, updated_at) ` +
      `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      t.transfer_id,
      t.guid,
      t.from_site,
      t.to_site,
      t.from_local_id,
      t.to_local_id,
      t.procedure_code,
      t.procedure_version,
      t.state,
      t.reason,
      t.requested_by,
      now,
      now,
    ],
  );
}

/** The answer a repeated `intervention.transfer` gets: the same as the first time. */
function answerFor(t: TransferRow, siteId: number): Outgoing {
  if (t.state === 'rejected') {
    const [reason, ...rest] = (t.reason ?? 'invalid-intervention: ').split(': ');
    return outgoing(siteId, 'intervention.rejected', {
      siteId,
      transferId: t.transfer_id,
      guid: t.guid,
      reason: reason as MessageBody<'intervention.rejected'>['reason'],
      message: rest.join(': '),
    });
  }
  return outgoing(siteId, 'intervention.accepted', {
    siteId,
    transferId: t.transfer_id,
    guid: t.guid,
    centralId: Number(t.to_local_id ?? 0),
  });
}
