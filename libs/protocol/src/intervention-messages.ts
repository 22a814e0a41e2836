/**
 * The procedure and intervention messages (docs/interventions.md): procedure versions published to sites and
 * the catalogue a site reports back, and the steps that move an intervention between a site and the
 * central (transfer, accepted or rejected, source deleted or in conflict, deliver, received). The
 * registry of every message type is in messages.ts.
 */
import { z } from 'zod';
import { SiteIdSchema } from './site-id';

const procedureCode = z.string().min(1).max(64);
const procedureVersion = z.number().int().positive();
const guid = z.string().uuid();
const transferId = z.string().uuid();
/** Reasons the central refuses an intervention. */
export const TRANSFER_REJECT_REASONS = [
  'procedure-version-missing',
  'guid-active-elsewhere',
  'unknown-site',
  'invalid-intervention',
] as const;
export type TransferRejectReason = (typeof TRANSFER_REJECT_REASONS)[number];

export const ProcedureRefSchema = z.object({ code: procedureCode, version: procedureVersion });
export type ProcedureRef = z.infer<typeof ProcedureRefSchema>;

/** `<site>.procedure.published` (central -> site): one procedure version to store. */
export const ProcedurePublishedSchema = z.object({
  siteId: SiteIdSchema,
  code: procedureCode,
  version: procedureVersion,
  name: z.string().max(200),
  definition: z.string().max(1_000_000),
});

/** `<site>.procedure.catalogue` (site -> central): every procedure version the site holds. */
export const ProcedureCatalogueSchema = z.object({
  siteId: SiteIdSchema,
  procedures: z.array(ProcedureRefSchema).max(100_000),
});

/** An intervention as it travels: GUID for life, procedure version, payload; local ids stay local. */
export const InterventionSchema = z.object({
  guid,
  procedure: ProcedureRefSchema,
  finished: z.boolean(),
  payload: z.string().max(10_000_000),
});
export type InterventionData = z.infer<typeof InterventionSchema>;

/** `<site>.intervention.transfer` (site -> central): move this intervention to the central. */
export const InterventionTransferSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  localId: z.number().int().nonnegative(),
  intervention: InterventionSchema,
});

/** `<site>.intervention.accepted` (central -> site): stored centrally as pending; delete it at the source. */
export const InterventionAcceptedSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  guid,
  centralId: z.number().int().nonnegative(),
});

/** `<site>.intervention.rejected` (central -> site): not taken; unlock it where it is. */
export const InterventionRejectedSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  guid,
  reason: z.enum(TRANSFER_REJECT_REASONS),
  message: z.string().max(2000),
});

/** `<site>.intervention.source-deleted` (site -> central): the source copy is gone; activate yours. */
export const InterventionSourceDeletedSchema = z.object({ siteId: SiteIdSchema, transferId, guid });

/** `<site>.intervention.source-conflict` (site -> central): changed since sent; the transfer is abandoned. */
export const InterventionSourceConflictSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  guid,
  reason: z.string().max(2000),
});

/** `<site>.intervention.deliver` (central -> site): store this intervention (transfer out). */
export const InterventionDeliverSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  intervention: InterventionSchema,
});

/** `<site>.intervention.received` (site -> central): stored with a new local id, or refused. */
export const InterventionReceivedSchema = z.object({
  siteId: SiteIdSchema,
  transferId,
  guid,
  status: z.enum(['stored', 'refused']),
  localId: z.number().int().nonnegative().nullable(),
  reason: z.string().max(2000).nullable(),
});
