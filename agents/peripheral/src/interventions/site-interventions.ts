import { randomUUID } from 'node:crypto';
import {
  interventionHash,
  type DecodedMessage,
  type MessageBody,
  type MessageType,
  type ProcedureRef,
} from '@sitesync/protocol';
import { insertIntervention, interventionFromRow, type Database, type InterventionRow } from '@sitesync/db';

/** Publishes one message to the central (the agent stamps envelope and user). */
export type PublishUp = <T extends MessageType>(type: T, body: MessageBody<T>) => Promise<void>;

interface SiteTransferRow {
  transfer_id: string;
  guid: string;
  direction: 'out' | 'in';
  state: string;
  local_id: number | null;
  sent_hash: string | null;
  reason: string | null;
}

export interface NewIntervention {
  guid?: string;
  procedure: ProcedureRef;
  finished?: boolean;
  payload: string;
}

/**
 * The site side of procedures and interventions (docs/interventions.md): stores procedure versions and reports its catalogue, sends
 * interventions marked for transfer, deletes them when the central took them, and stores those the
 * central delivers. Every step is one transaction and is answered the same way when repeated.
 */
export class SiteInterventions {
  /**
   * Catalogue reports under way (a procedure version being stored counts from before it is visible).
   * Transfers wait for them: the central accepts an intervention only on a version it knows this site
   * holds, so a version's catalogue must reach the central's queue before a transfer that uses it.
   */
  private readonly cataloguesInFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly db: Database,
    private readonly siteId: number,
    private readonly publish: PublishUp,
  ) {}

  private inFlight<T>(p: Promise<T>): Promise<T> {
    this.cataloguesInFlight.add(p);
    void p.catch(() => undefined).finally(() => this.cataloguesInFlight.delete(p));
    return p;
  }

  async catalogue(): Promise<ProcedureRef[]> {
    const rows = await this.db.query<{ code: string; version: number }>(
      `SELECT code, version FROM procedure_version ORDER BY code, version`,
    );
    return rows.map((r) => ({ code: r.code, version: Number(r.version) }));
  }

  sendCatalogue(): Promise<void> {
    return this.inFlight(
      this.catalogue().then((procedures) => this.publish('procedure.catalogue', { siteId: this.siteId, procedures })),
    );
  }

  /** A procedure version from the central: store it (once) and confirm with the full catalogue. */
  onProcedurePublished(m: DecodedMessage<'procedure.published'>): Promise<void> {
    const p = m.body;
    return this.inFlight(
      (async () => {
        await this.db.transaction((tx) =>
          tx.run(
            tx.dialect.insertIgnore(
              'procedure_version',
              ['code', 'version', 'name', 'definition', 'created_at'],
              [p.code, p.version, p.name, p.definition, tx.dialect.now()],
            ),
          ),
        );
        await this.sendCatalogue();
      })(),
    );
  }

  /** Creates an intervention on a procedure version this site holds (what the site's application does). */
  async create(n: NewIntervention): Promise<{ id: number; guid: string }> {
    const guid = n.guid ?? randomUUID();
    return this.db.transaction(async (tx) => {
      const p = await tx.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [
        n.procedure.code,
        n.procedure.version,
      ]);
      if (!p.length)
        throw new Error(`procedure ${n.procedure.code} version ${n.procedure.version} is not held by this site`);
      const id = await insertIntervention(tx, {
        guid,
        procedure: n.procedure,
        finished: n.finished ?? false,
        payload: n.payload,
      });
      return { id, guid };
    });
  }

  /** Marks interventions for transfer to the central; returns how many were marked. */
  async requestTransfer(guids: string[]): Promise<number> {
    let n = 0;
    for (const g of guids) {
      n += await this.db.execute(`UPDATE intervention SET transfer_requested = ? WHERE guid = ? AND state = ?`, [
        this.db.dialect.bool(true),
        g,
        'active',
      ]);
    }
    return n;
  }

  /**
   * Sends every intervention marked for transfer (locking it as outbound), and re-sends transfers
   * still unanswered (after a crash or a lost message: the central answers a repeat the same way).
   */
  async publishTransfers(opts: { resendOpen?: boolean } = {}): Promise<number> {
    const d = this.db.dialect;
    const marked = await this.db.query<InterventionRow>(
      `SELECT * FROM intervention WHERE transfer_requested = ? AND state = ?`,
      [d.bool(true), 'active'],
    );
    for (const i of marked) {
      await this.db.transaction(async (tx) => {
        const transferId = randomUUID();
        const n = await tx.execute(
          `UPDATE intervention SET state = ?, transfer_id = ?, transfer_requested = ?, updated_at = ? WHERE id = ? AND state = ?`,
          ['outbound', transferId, d.bool(false), d.now(), i.id, 'active'],
        );
        if (n === 0) return;
        await tx.execute(
          `INSERT INTO intervention_transfer (transfer_id, guid, direction, state, local_id, sent_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          [transferId, i.guid, 'out', 'sent', i.id, interventionHash(interventionFromRow(i)), d.now(), d.now()],
        );
      });
    }
    if (marked.length === 0 && !opts.resendOpen) return 0;
    // Every version a marked row uses was stored before it was read above, so its report is in this set.
    await Promise.allSettled([...this.cataloguesInFlight]);
    const open = await this.db.query<InterventionRow>(
      `SELECT i.* FROM intervention i JOIN intervention_transfer t ON t.transfer_id = i.transfer_id WHERE i.state = ? AND t.state = ?`,
      ['outbound', 'sent'],
    );
    const fresh = new Set(marked.map((i) => i.guid));
    for (const i of open) {
      if (!opts.resendOpen && !fresh.has(i.guid)) continue;
      await this.publish('intervention.transfer', {
        siteId: this.siteId,
        transferId: i.transfer_id!,
        localId: Number(i.id),
        intervention: interventionFromRow(i),
      });
    }
    return open.length;
  }

  /** The central stored it as pending: delete it here, unless it changed since it was sent. */
  async onAccepted(m: DecodedMessage<'intervention.accepted'>): Promise<void> {
    const { transferId, guid } = m.body;
    const reply = await this.db.transaction(async (tx): Promise<'deleted' | 'none' | { conflict: string }> => {
      // Lock the transfer row first: the same acceptance delivered twice is handled by two handlers
      // at once, and without the lock the second could read the transfer as still `sent` and then
      // find the intervention already deleted by the first, and answer a conflict. Waiting here, it
      // reads what the first committed (each statement after the lock sees it) and answers the same.
      await tx.execute(`UPDATE intervention_transfer SET updated_at = updated_at WHERE transfer_id = ?`, [transferId]);
      const t = (
        await tx.query<SiteTransferRow>(`SELECT * FROM intervention_transfer WHERE transfer_id = ?`, [transferId])
      )[0];
      if (!t || t.direction !== 'out') return 'none';
      if (t.state === 'source-deleted') return 'deleted'; // a repeat: answer again
      if (t.state === 'conflict') return { conflict: t.reason ?? 'changed at the site while in transit' };
      if (t.state !== 'sent') return 'none';
      const i = (
        await tx.query<InterventionRow>(`SELECT * FROM intervention WHERE guid = ? AND transfer_id = ?`, [
          guid,
          transferId,
        ])
      )[0];
      const now = tx.dialect.now();
      if (i && interventionHash(interventionFromRow(i)) === t.sent_hash) {
        await tx.execute(`DELETE FROM intervention WHERE id = ?`, [i.id]);
        await tx.execute(`UPDATE intervention_transfer SET state = ?, updated_at = ? WHERE transfer_id = ?`, [
          'source-deleted',
          now,
          transferId,
        ]);
        return 'deleted';
      }
      await tx.execute(
        `UPDATE intervention SET state = ?, transfer_id = NULL, updated_at = ? WHERE guid = ? AND transfer_id = ?`,
        ['active', now, guid, transferId],
      );
      const reason = i ? 'changed at the site while in transit' : 'deleted at the site while in transit';
      await tx.execute(`UPDATE intervention_transfer SET state = ?, reason = ?, updated_at = ? WHERE transfer_id = ?`, [
        'conflict',
        reason,
        now,
        transferId,
      ]);
      return { conflict: reason };
    });
    if (reply === 'deleted')
      await this.publish('intervention.source-deleted', { siteId: this.siteId, transferId, guid });
    if (typeof reply === 'object') {
      await this.publish('intervention.source-conflict', {
        siteId: this.siteId,
        transferId,
        guid,
        reason: reply.conflict,
      });
    }
  }

  /** The central refused it: unlock it here, it stays usable. */
  async onRejected(m: DecodedMessage<'intervention.rejected'>): Promise<void> {
    const { transferId, guid, reason, message } = m.body;
    await this.db.transaction(async (tx) => {
      const now = tx.dialect.now();
      const n = await tx.execute(
        `UPDATE intervention_transfer SET state = ?, reason = ?, updated_at = ? WHERE transfer_id = ? AND state = ?`,
        ['rejected', `${reason}: ${message}`.slice(0, 2000), now, transferId, 'sent'],
      );
      if (n > 0) {
        await tx.execute(
          `UPDATE intervention SET state = ?, transfer_id = NULL, updated_at = ? WHERE guid = ? AND transfer_id = ?`,
          ['active', now, guid, transferId],
        );
      }
    });
  }

  /** The central moves an intervention here: store it with a new local id (once), or refuse it. */
  async onDeliver(m: DecodedMessage<'intervention.deliver'>): Promise<void> {
    const { transferId, intervention: iv } = m.body;
    const answer = await this.db.transaction(async (tx): Promise<MessageBody<'intervention.received'>> => {
      const base = { siteId: this.siteId, transferId, guid: iv.guid };
      const t = (
        await tx.query<SiteTransferRow>(`SELECT * FROM intervention_transfer WHERE transfer_id = ?`, [transferId])
      )[0];
      if (t) {
        return t.state === 'stored'
          ? { ...base, status: 'stored', localId: Number(t.local_id), reason: null }
          : { ...base, status: 'refused', localId: null, reason: 'refused before' };
      }
      const record = async (state: 'stored' | 'refused', localId: number | null, reason: string | null) =>
        tx.execute(
          `INSERT INTO intervention_transfer (transfer_id, guid, direction, state, local_id, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          [transferId, iv.guid, 'in', state, localId, reason, tx.dialect.now(), tx.dialect.now()],
        );
      const proc = await tx.query(`SELECT code FROM procedure_version WHERE code = ? AND version = ?`, [
        iv.procedure.code,
        iv.procedure.version,
      ]);
      let reason: string | null = null;
      if (!proc.length) reason = `procedure-version-missing: ${iv.procedure.code} version ${iv.procedure.version}`;
      else if ((await tx.query(`SELECT id FROM intervention WHERE guid = ?`, [iv.guid])).length)
        reason = 'guid-active-elsewhere: already held here';
      if (reason) {
        await record('refused', null, reason);
        return { ...base, status: 'refused', localId: null, reason };
      }
      await insertIntervention(tx, iv);
      const id = Number(
        (await tx.query<{ id: number }>(`SELECT id FROM intervention WHERE guid = ?`, [iv.guid]))[0]!.id,
      );
      await record('stored', id, null);
      return { ...base, status: 'stored', localId: id, reason: null };
    });
    await this.publish('intervention.received', answer);
  }
}
