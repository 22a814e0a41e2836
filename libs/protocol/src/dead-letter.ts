import type { ConsumeMessage } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import {
  HEADER_ERROR,
  HEADER_ORIGINAL_EXCHANGE,
  HEADER_ORIGINAL_USER,
  HEADER_ORIGINAL_QUEUE,
  HEADER_ORIGINAL_ROUTING_KEY,
  HEADER_REASON,
  type EncodedMessage,
} from './envelope';
import type { Topology } from './topology';

/**
 * Copies a message into its queue's dead-letter queue with a reason header, and resolves once the
 * broker confirmed the copy. The caller acks the original only after that, so nothing is lost.
 */
export async function publishDeadLetter(
  broker: BrokerConnection,
  topology: Topology,
  queue: string,
  msg: ConsumeMessage,
  reason: string,
  error: string,
): Promise<void> {
  const p = msg.properties;
  const headers: Record<string, unknown> = {
    ...(p.headers ?? {}),
    [HEADER_REASON]: reason,
    [HEADER_ERROR]: error.slice(0, 1000),
    [HEADER_ORIGINAL_EXCHANGE]: msg.fields.exchange,
    [HEADER_ORIGINAL_ROUTING_KEY]: msg.fields.routingKey,
    [HEADER_ORIGINAL_QUEUE]: queue,
  };
  const copy: EncodedMessage = {
    routingKey: queue,
    content: msg.content,
    options: {
      persistent: true,
      messageId: typeof p.messageId === 'string' ? p.messageId : '',
      type: typeof p.type === 'string' ? p.type : '',
      appId: typeof p.appId === 'string' ? p.appId : '',
      // user_id is left out: the broker only accepts the publishing connection's own user.
      timestamp: typeof p.timestamp === 'number' ? p.timestamp : Math.floor(Date.now() / 1000),
      contentType: typeof p.contentType === 'string' ? p.contentType : 'application/octet-stream',
      ...(typeof p.contentEncoding === 'string' ? { contentEncoding: p.contentEncoding } : {}),
      headers,
    },
  };
  if (typeof p.userId === 'string') copy.options.headers[HEADER_ORIGINAL_USER] = p.userId;
  await broker.publish(topology.dlx, copy);
}
