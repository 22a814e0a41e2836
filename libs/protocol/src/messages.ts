/**
 * The message registry: every message type with its body schema (MESSAGE_SCHEMAS), the way it
 * travels, and the schema version it is written with. The bodies are defined by concept: the sync
 * messages in sync-messages.ts, the procedure and intervention messages in intervention-messages.ts.
 */
import type { z } from 'zod';
import {
  BatchAckSchema,
  BatchSchema,
  SessionAckSchema,
  SessionCompletedSchema,
  SessionStartedSchema,
} from './sync-messages';
import {
  InterventionAcceptedSchema,
  InterventionDeliverSchema,
  InterventionReceivedSchema,
  InterventionRejectedSchema,
  InterventionSourceConflictSchema,
  InterventionSourceDeletedSchema,
  InterventionTransferSchema,
  ProcedureCatalogueSchema,
  ProcedurePublishedSchema,
} from './intervention-messages';
import { ResyncReplySchema, ResyncRequestSchema, VerifyReplySchema, VerifyRequestSchema } from './verify-messages';

/**
 * The newest version of the message bodies, carried in the `x-sitesync-schema` header.
 * Version 2 changed one body: a batch's rows are value arrays in the shape's column order
 * (version 1: objects of column -> value). Every other body is the same in both.
 */
export const SCHEMA_VERSION = 2;
/** The oldest version still read: a version-1 batch is turned into the version-2 form on decode. */
export const OLDEST_SCHEMA_VERSION = 1;

/**
 * The version a message of `type` is written with: the version its body last changed in. Bodies
 * unchanged since version 1 are still written as 1, so that agents of the previous release (which
 * refuse any other version) keep reading them while a deployment is upgraded, central first.
 */
export function schemaVersionOf(type: MessageType): number {
  return type === 'batch' ? SCHEMA_VERSION : OLDEST_SCHEMA_VERSION;
}

/** Every message type and the schema its body is read with. */
export const MESSAGE_SCHEMAS = {
  'session.started': SessionStartedSchema,
  batch: BatchSchema,
  'session.completed': SessionCompletedSchema,
  'batch.ack': BatchAckSchema,
  'session.ack': SessionAckSchema,
  'procedure.published': ProcedurePublishedSchema,
  'procedure.catalogue': ProcedureCatalogueSchema,
  'intervention.transfer': InterventionTransferSchema,
  'intervention.accepted': InterventionAcceptedSchema,
  'intervention.rejected': InterventionRejectedSchema,
  'intervention.source-deleted': InterventionSourceDeletedSchema,
  'intervention.source-conflict': InterventionSourceConflictSchema,
  'intervention.deliver': InterventionDeliverSchema,
  'intervention.received': InterventionReceivedSchema,
  'verify.request': VerifyRequestSchema,
  'verify.reply': VerifyReplySchema,
  'resync.request': ResyncRequestSchema,
  'resync.reply': ResyncReplySchema,
} as const;

export type MessageType = keyof typeof MESSAGE_SCHEMAS;
export const MESSAGE_TYPES = Object.keys(MESSAGE_SCHEMAS) as MessageType[];
export type MessageBody<T extends MessageType> = z.infer<(typeof MESSAGE_SCHEMAS)[T]>;

/** Which way each message type travels. */
export const MESSAGE_DIRECTION: Record<MessageType, 'up' | 'down'> = {
  'session.started': 'up',
  batch: 'up',
  'session.completed': 'up',
  'batch.ack': 'down',
  'session.ack': 'down',
  'procedure.published': 'down',
  'procedure.catalogue': 'up',
  'intervention.transfer': 'up',
  'intervention.accepted': 'down',
  'intervention.rejected': 'down',
  'intervention.source-deleted': 'up',
  'intervention.source-conflict': 'up',
  'intervention.deliver': 'down',
  'intervention.received': 'up',
  'verify.request': 'down',
  'verify.reply': 'up',
  'resync.request': 'down',
  'resync.reply': 'up',
};

/**
 * Up messages that answer one syncctl request: published under `<siteId>.reply.<requestId>`
 * (`replyRoutingKey`), which no central queue binds, only the asker's own reply queue.
 */
export const REPLY_MESSAGE_TYPES: readonly MessageType[] = ['verify.reply', 'resync.reply'];

export function isMessageType(t: unknown): t is MessageType {
  return typeof t === 'string' && Object.prototype.hasOwnProperty.call(MESSAGE_SCHEMAS, t);
}
