import { encodeMessage, type EncodedMessage, type MessageBody, type MessageType } from '@sitesync/protocol';

/** The `app_id` of every message a site agent publishes. */
export const APP_ID = 'sitesync-peripheral';

/** Who a site's messages come from: its efector id and the broker user stamped into `user_id`. */
export interface SiteSender {
  siteId: number;
  userId: string | undefined;
}

/** Encodes a message as this site sends it up: its site id, `APP_ID` and its broker user. */
export function encodeSiteMessage<T extends MessageType>(
  type: T,
  body: MessageBody<T>,
  from: SiteSender,
  opts: { messageId?: string; validate?: boolean } = {},
): EncodedMessage {
  return encodeMessage(type, body, {
    siteId: from.siteId,
    appId: APP_ID,
    ...(from.userId ? { userId: from.userId } : {}),
    ...(opts.messageId ? { messageId: opts.messageId } : {}),
    ...(opts.validate === false ? { validate: false } : {}),
  });
}
