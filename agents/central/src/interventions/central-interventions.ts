import type { DecodedMessage } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import type { Outgoing } from '../handlers/outgoing';
import { publishProcedureVersion, recordCatalogue, type ProcedureInput } from './procedures';
import {
  abandonTransferUp,
  claimTransferOut,
  completeTransferUp,
  finishTransferOut,
  readTransferLog,
  receiveTransferUp,
  withdrawTransferOut,
  type TransferRow,
} from './transfers';
import { dispatchPending } from './dispatcher';

// What callers of the class see of the transfer log and the procedures: its arguments, results and refusals.
export { TransferRefusedError, type TransferRow, type TransferState } from './transfers';
export type { ProcedureInput } from './procedures';

/** Re-deliver an unanswered transfer or procedure after this long. */
export const DEFAULT_RESEND_AFTER_MS = 30_000;

/**
 * The central side of procedures and interventions (docs/interventions.md): procedure versions flow to sites, interventions move between
 * systems so that each GUID is active on exactly one system. Every method is one transaction and
 * returns the messages to publish after it committed; every handler is idempotent, so a redelivered
 * or replayed message gets the same answer again. The steps themselves are in procedures.ts (versions
 * and catalogues), transfers.ts (interventions moving, and their log) and dispatcher.ts (what to send).
 */
export class CentralInterventions {
  constructor(
    private readonly db: Database,
    private readonly resendAfterMs = DEFAULT_RESEND_AFTER_MS,
  ) {}

  // ---- operator actions ----

  /** Stores a procedure version and queues it for `sites` (or every registered site). */
  async publishProcedure(p: ProcedureInput, sites: number[] | 'all'): Promise<number[]> {
    return this.db.transaction((tx) => publishProcedureVersion(tx, p, sites));
  }

  /** Asks to move an unfinished intervention held centrally to `toSite`. Exactly one of concurrent requests wins. */
  async requestTransferOut(guid: string, toSite: number, requestedBy = 'operator'): Promise<string> {
    return this.db.transaction((tx) => claimTransferOut(tx, guid, toSite, requestedBy));
  }

  /**
   * Cancels a transfer out that has not been delivered yet (requested, or waiting for the
   * destination to get the procedure version): the central copy is unlocked. A delivered transfer
   * cannot be cancelled: the destination may already hold it.
   */
  async cancelTransferOut(transferId: string, by = 'operator'): Promise<void> {
    await this.db.transaction((tx) => withdrawTransferOut(tx, transferId, by));
  }

  async listTransfers(
    filter: { guid?: string; site?: number; state?: string; limit?: number } = {},
  ): Promise<TransferRow[]> {
    return readTransferLog(this.db, filter);
  }

  // ---- messages from sites ----

  /** A site's full catalogue: record what it holds, re-queue what it lost, then move what waited on it. */
  async onCatalogue(m: DecodedMessage<'procedure.catalogue'>): Promise<Outgoing[]> {
    await this.db.transaction((tx) => recordCatalogue(tx, m.body));
    return this.dispatch();
  }

  /** Transfer up, step 1: check, store as pending, log, and order the source to delete it. */
  async onTransferUp(m: DecodedMessage<'intervention.transfer'>, siteKnown: boolean): Promise<Outgoing[]> {
    return this.db.transaction((tx) => receiveTransferUp(tx, m.body, siteKnown));
  }

  /** Transfer up, step 3: the source copy is gone, so the central copy becomes the active one. */
  async onSourceDeleted(m: DecodedMessage<'intervention.source-deleted'>): Promise<Outgoing[]> {
    await this.db.transaction((tx) => completeTransferUp(tx, m.siteId, m.body));
    return [];
  }

  /** Transfer up: the source changed it while in transit; drop the pending copy, it stays at the source. */
  async onSourceConflict(m: DecodedMessage<'intervention.source-conflict'>): Promise<Outgoing[]> {
    await this.db.transaction((tx) => abandonTransferUp(tx, m.siteId, m.body));
    return [];
  }

  /** Transfer out, last step: the destination stored it (delete the central copy) or refused it (keep it). */
  async onReceived(m: DecodedMessage<'intervention.received'>): Promise<Outgoing[]> {
    await this.db.transaction((tx) => finishTransferOut(tx, m.siteId, m.body));
    return [];
  }

  // ---- the dispatcher: everything the central must send, resumable after a crash ----

  /**
   * Publishes queued procedure versions, and moves transfers out forward: a destination that lacks
   * the exact procedure version gets it first, and the intervention only once its catalogue shows it.
   */
  async dispatch(): Promise<Outgoing[]> {
    return this.db.transaction((tx) => dispatchPending(tx, this.resendAfterMs));
  }
}
