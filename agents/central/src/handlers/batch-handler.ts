import type { RejectReason } from '@sitesync/protocol';
import type { VerifiedMessage } from '../merge/inbox';
import type { HandlerContext, MessageHandler } from './handler-context';
import { outgoing, type Outgoing } from './outgoing';
import { completeSession } from './session-completed-handler';

/** `batch`: merges it in one transaction and answers with its `batch.ack` (and the `session.ack` it completes). */
export const handleBatch: MessageHandler<'batch'> = async (m, ctx) => {
  const b = m.body;
  const started = process.hrtime.bigint();
  const r = await ctx.merger.merge(m);
  ctx.metrics.mergeDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
  ctx.metrics.batches.inc({ site: String(b.siteId), status: r.status });
  if (r.status === 'applied') {
    ctx.metrics.rowsMerged.inc({ site: String(b.siteId), kind: 'header' }, r.headers);
    ctx.metrics.rowsMerged.inc({ site: String(b.siteId), kind: 'detail' }, r.details);
  }
  const ack = outgoing(
    b.siteId,
    'batch.ack',
    {
      sessionId: b.sessionId,
      siteId: b.siteId,
      pipeline: b.pipeline.name,
      batchMessageId: m.messageId,
      status: r.status,
      headers: r.headers,
      details: r.details,
      deletions: r.deletions,
      stale: r.stale,
    },
    m.messageId,
  );
  return [ack, ...(await completeSession(ctx.sessions, b.sessionId, b.siteId, r.status === 'duplicate'))];
};

/**
 * A batch of a verified sender that is being dead-lettered counts against its session (so the site
 * learns the session is incomplete); returns the `session.ack` that may close. Idempotent.
 */
export async function handleRejectedBatch(
  m: VerifiedMessage<'batch'>,
  reason: RejectReason,
  ctx: HandlerContext,
): Promise<Outgoing[]> {
  await ctx.sessions.batchRejected(m, reason);
  return completeSession(ctx.sessions, m.body.sessionId, m.body.siteId, false);
}
