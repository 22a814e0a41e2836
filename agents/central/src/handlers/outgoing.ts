import type { MessageBody, MessageType } from '@sitesync/protocol';

/** A message a handler decided to send to a site, published after its transaction committed. */
export interface Outgoing<T extends MessageType = MessageType> {
  siteId: number;
  type: T;
  body: MessageBody<T>;
}

export function outgoing<T extends MessageType>(siteId: number, type: T, body: MessageBody<T>): Outgoing {
  return { siteId, type, body } as Outgoing;
}
