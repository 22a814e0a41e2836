import { MessageRejectedError } from '@sitesync/protocol';
import type { VerifiedMessage } from '../merge/inbox';
import type { HandlerContext, MessageHandler } from './handler-context';
import type { Outgoing } from './outgoing';
import { handleBatch } from './batch-handler';
import { handleSessionStarted } from './session-started-handler';
import { handleSessionCompleted } from './session-completed-handler';
import {
  handleCatalogue,
  handleReceived,
  handleSourceConflict,
  handleSourceDeleted,
  handleTransfer,
} from './intervention-handlers';

/** The messages of the central sync queue. */
export const SYNC_MESSAGE_TYPES = ['session.started', 'batch', 'session.completed'] as const;
/** The messages of the central intervention queue. */
export const INTERVENTION_MESSAGE_TYPES = [
  'procedure.catalogue',
  'intervention.transfer',
  'intervention.source-deleted',
  'intervention.source-conflict',
  'intervention.received',
] as const;

/** The messages the central takes from sites. */
export type CentralMessageType = (typeof SYNC_MESSAGE_TYPES)[number] | (typeof INTERVENTION_MESSAGE_TYPES)[number];

/** One handler per message type the central takes. */
const HANDLERS: { [K in CentralMessageType]: MessageHandler<K> } = {
  'session.started': handleSessionStarted,
  batch: handleBatch,
  'session.completed': handleSessionCompleted,
  'procedure.catalogue': handleCatalogue,
  'intervention.transfer': handleTransfer,
  'intervention.source-deleted': handleSourceDeleted,
  'intervention.source-conflict': handleSourceConflict,
  'intervention.received': handleReceived,
};

function isCentralMessage(m: VerifiedMessage): m is VerifiedMessage<CentralMessageType> {
  return Object.hasOwn(HANDLERS, m.type);
}

/** Hands a message of a verified sender to the handler of its type; returns what to publish. */
export function handleMessage(m: VerifiedMessage, ctx: HandlerContext): Promise<Outgoing[]> {
  if (!isCentralMessage(m)) {
    throw new MessageRejectedError('unknown-type', `unexpected message type ${m.type}`, { messageId: m.messageId });
  }
  return dispatch(m.type, m, ctx);
}

function dispatch<K extends CentralMessageType>(
  type: K,
  m: VerifiedMessage<K>,
  ctx: HandlerContext,
): Promise<Outgoing[]> {
  return HANDLERS[type](m, ctx);
}
