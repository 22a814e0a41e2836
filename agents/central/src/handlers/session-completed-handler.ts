import type { SessionTracker } from '../merge/session-tracker';
import type { MessageHandler } from './handler-context';
import { outgoing, type Outgoing } from './outgoing';

/** `session.completed`: records the site's totals and answers with the `session.ack` once every batch is in. */
export const handleSessionCompleted: MessageHandler<'session.completed'> = async (m, ctx) => {
  const s = m.body;
  await ctx.sessions.completed(m);
  // Redelivered session.completed re-sends the ack: the first may have been lost in a crash.
  return completeSession(ctx.sessions, s.sessionId, s.siteId, true);
};

/** The `session.ack` to publish when the session is now complete (with `resend`, also when it already was). */
export async function completeSession(
  sessions: SessionTracker,
  sessionId: string,
  siteId: number,
  resend: boolean,
): Promise<Outgoing[]> {
  const ack = await sessions.tryComplete(sessionId, resend);
  return ack ? [outgoing(siteId, 'session.ack', ack, sessionId)] : [];
}
