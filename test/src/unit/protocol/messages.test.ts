import { describe, expect, it } from 'vitest';
import {
  BatchAckSchema,
  BatchSchema,
  MESSAGE_DIRECTION,
  MESSAGE_SCHEMAS,
  MESSAGE_TYPES,
  SessionAckSchema,
  SessionCompletedSchema,
  SessionStartedSchema,
  isMessageType,
} from '@sitesync/protocol';
import { batch, batchAck, sessionAck, sessionCompleted, sessionStarted } from './fixtures.js';

describe('message types', () => {
  it('are those of the protocol, each with a direction', () => {
    expect([...MESSAGE_TYPES].sort()).toEqual([
      'batch',
      'batch.ack',
      'intervention.accepted',
      'intervention.deliver',
      'intervention.received',
      'intervention.rejected',
      'intervention.source-conflict',
      'intervention.source-deleted',
      'intervention.transfer',
      'procedure.catalogue',
      'procedure.published',
      'resync.reply',
      'resync.request',
      'session.ack',
      'session.completed',
      'session.started',
      'verify.reply',
      'verify.request',
    ]);
    expect(Object.keys(MESSAGE_DIRECTION).sort()).toEqual([...MESSAGE_TYPES].sort());
    expect(MESSAGE_TYPES.filter((t) => MESSAGE_DIRECTION[t] === 'up').sort()).toEqual([
      'batch',
      'intervention.received',
      'intervention.source-conflict',
      'intervention.source-deleted',
      'intervention.transfer',
      'procedure.catalogue',
      'resync.reply',
      'session.completed',
      'session.started',
      'verify.reply',
    ]);
  });

  it('isMessageType knows exactly those names, not inherited object keys', () => {
    for (const t of MESSAGE_TYPES) expect(isMessageType(t)).toBe(true);
    for (const t of [
      'toString',
      '__proto__',
      'constructor',
      'hasOwnProperty',
      'BATCH',
      '',
      'batch ',
      42,
      null,
      undefined,
    ]) {
      expect(isMessageType(t)).toBe(false);
    }
  });

  it('every fixture body is valid for its schema', () => {
    expect(SessionStartedSchema.safeParse(sessionStarted()).success).toBe(true);
    expect(BatchSchema.safeParse(batch()).success).toBe(true);
    expect(SessionCompletedSchema.safeParse(sessionCompleted()).success).toBe(true);
    expect(BatchAckSchema.safeParse(batchAck()).success).toBe(true);
    expect(SessionAckSchema.safeParse(sessionAck()).success).toBe(true);
    expect(MESSAGE_SCHEMAS.batch).toBe(BatchSchema);
  });
});
