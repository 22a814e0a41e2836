import type { MessageHandler } from './handler-context';

// The intervention messages (docs/interventions.md) are handled by the central's intervention service, which
// returns what to send; these name the step each message type is.

/** `procedure.catalogue`: what the site holds; may release transfers waiting on a procedure. */
export const handleCatalogue: MessageHandler<'procedure.catalogue'> = (m, ctx) => ctx.interventions.onCatalogue(m);

/** `intervention.transfer`: a transfer up; a site with no `EstadoSyncGeneral` row gets it refused. */
export const handleTransfer: MessageHandler<'intervention.transfer'> = (m, ctx) =>
  ctx.interventions.onTransferUp(m, m.siteRows.length > 0);

/** `intervention.source-deleted`: the source copy is gone; the central copy becomes active. */
export const handleSourceDeleted: MessageHandler<'intervention.source-deleted'> = (m, ctx) =>
  ctx.interventions.onSourceDeleted(m);

/** `intervention.source-conflict`: the source changed it in transit; the central copy is dropped. */
export const handleSourceConflict: MessageHandler<'intervention.source-conflict'> = (m, ctx) =>
  ctx.interventions.onSourceConflict(m);

/** `intervention.received`: the destination of a transfer out stored or refused it. */
export const handleReceived: MessageHandler<'intervention.received'> = (m, ctx) => ctx.interventions.onReceived(m);
