import type { MessageHandler } from './handler-context';

/** `session.started`: opens the session; nothing to answer. */
export const handleSessionStarted: MessageHandler<'session.started'> = async (m, ctx) => {
  await ctx.sessions.started(m);
  return [];
};
