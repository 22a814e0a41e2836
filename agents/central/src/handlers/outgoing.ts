import type { MessageBody, MessageType } from '@sitesync/protocol';

/** A message a handler decided to send to a site, published after its transaction committed. */
export interface Outgoing<T extends MessageType = MessageType> {
  siteId: number;
  type: T;
  body: MessageBody<T>;
  /** The message (or session) it answers, for the `correlation_id` property. */
  correlationId?: string;
}

export function outgoing<T extends MessageType>(
  siteId: number,
  type: T,
  body: MessageBody<T>,
  correlationId?: string,
): Outgoing {
  return { siteId, type, body, ...(correlationId === undefined ? {} : { correlationId }) } as Outgoing;
}
