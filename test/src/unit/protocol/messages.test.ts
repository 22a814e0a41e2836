import { describe, expect, it } from 'vitest';
import {
  BatchAckSchema,
  BatchSchema,
  HeaderChangeSchema,
  MESSAGE_DIRECTION,
  MESSAGE_SCHEMAS,
  MESSAGE_TYPES,
  PipelineShapeSchema,
  SessionAckSchema,
  SessionCompletedSchema,
  SessionStartedSchema,
  SiteIdSchema,
  isMessageType,
} from '@sitesync/protocol';
import { SHAPE, batch, batchAck, sessionAck, sessionCompleted, sessionStarted } from './fixtures.js';

function paths(
  schema: { safeParse(v: unknown): { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } } },
  v: unknown,
) {
  const r = schema.safeParse(v);
  return r.success ? [] : r.error!.issues.map((i) => i.path.map(String).join('.'));
}

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
      'session.ack',
      'session.completed',
      'session.started',
    ]);
    expect(Object.keys(MESSAGE_DIRECTION).sort()).toEqual([...MESSAGE_TYPES].sort());
    expect(MESSAGE_TYPES.filter((t) => MESSAGE_DIRECTION[t] === 'up').sort()).toEqual([
      'batch',
      'intervention.received',
      'intervention.source-conflict',
      'intervention.source-deleted',
      'intervention.transfer',
      'procedure.catalogue',
      'session.completed',
      'session.started',
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

describe('site id', () => {
  it('is a positive 32-bit integer (efector id)', () => {
    for (const ok of [1, 42, 2_147_483_647]) expect(SiteIdSchema.safeParse(ok).success).toBe(true);
    for (const bad of [0, -1, 1.5, 2_147_483_648, '7', null, NaN])
      expect(SiteIdSchema.safeParse(bad).success).toBe(false);
  });
});

describe('batch', () => {
  it('needs at least one change', () => {
    expect(paths(BatchSchema, { ...batch(), changes: [] })).toEqual(['changes']);
  });

  it('needs a UUID session id and a positive version', () => {
    expect(paths(BatchSchema, { ...batch(), sessionId: 'not-a-uuid' })).toEqual(['sessionId']);
    expect(paths(BatchSchema, { ...batch(), version: 0 })).toEqual(['version']);
    expect(paths(BatchSchema, { ...batch(), seq: -1 })).toEqual(['seq']);
  });

  it('an upsert carries a lowercase hex hash of 32 to 64 characters', () => {
    const up = batch().changes[0]!;
    expect(HeaderChangeSchema.safeParse(up).success).toBe(true);
    const withHash = (hash: string) => ({ ...up, hash });
    expect(HeaderChangeSchema.safeParse(withHash('a'.repeat(64))).success).toBe(true);
    for (const bad of ['A'.repeat(32), 'a'.repeat(31), 'a'.repeat(65), 'g'.repeat(32), '']) {
      expect(paths(HeaderChangeSchema, withHash(bad))).toEqual(['hash']);
    }
  });

  it('an upsert needs its header and its (possibly empty) detail set; a delete needs only its key', () => {
    expect(
      HeaderChangeSchema.safeParse({ op: 'upsert', key: [1], hash: 'a'.repeat(32), header: { id: 1 }, details: [] })
        .success,
    ).toBe(true);
    expect(paths(HeaderChangeSchema, { op: 'upsert', key: [1], hash: 'a'.repeat(32), header: { id: 1 } })).toEqual([
      'details',
    ]);
    expect(HeaderChangeSchema.safeParse({ op: 'delete', key: [1, 'b'] }).success).toBe(true);
    expect(paths(HeaderChangeSchema, { op: 'delete', key: [] })).toEqual(['key']);
    expect(HeaderChangeSchema.safeParse({ op: 'merge', key: [1] }).success).toBe(false);
  });

  it('row values are JSON scalars only', () => {
    const up = batch().changes[0]! as { header: Record<string, unknown> };
    expect(paths(HeaderChangeSchema, { ...up, header: { id: 1, nested: { a: 1 } } })).toEqual(['header.nested']);
    expect(paths(HeaderChangeSchema, { ...up, header: { id: [1] } })).toEqual(['header.id']);
  });

  it('a row is a plain object of columns: not null, not an array, no __proto__ key', () => {
    const up = batch().changes[0]! as { header: Record<string, unknown> };
    expect(paths(HeaderChangeSchema, { ...up, header: null })).toEqual(['header']);
    expect(paths(HeaderChangeSchema, { ...up, header: [1, 2] })).toEqual(['header']);
    expect(paths(HeaderChangeSchema, { ...up, details: [{ id: 1 }, 'x'] })).toEqual(['details.1']);
    const parsed: unknown = JSON.parse('{"id": 1, "__proto__": "x"}');
    expect(paths(HeaderChangeSchema, { ...up, header: parsed })).toEqual(['header.__proto__']);
  });
});

describe('pipeline shape', () => {
  it('accepts a header-only pipeline (detail null)', () => {
    expect(PipelineShapeSchema.safeParse({ ...SHAPE, detail: null }).success).toBe(true);
  });

  it('refuses unknown column types and empty column lists', () => {
    const badType = { ...SHAPE, header: { ...SHAPE.header, columns: [{ name: 'id', type: 'json', nullable: false }] } };
    expect(paths(PipelineShapeSchema, badType)).toEqual(['header.columns.0.type']);
    expect(paths(PipelineShapeSchema, { ...SHAPE, header: { key: ['id'], columns: [] } })).toEqual(['header.columns']);
    expect(paths(PipelineShapeSchema, { ...SHAPE, header: { key: [], columns: SHAPE.header.columns } })).toEqual([
      'header.key',
    ]);
  });
});

describe('sessions and acknowledgements', () => {
  it('session timestamps are ISO-8601 with a zone', () => {
    expect(paths(SessionCompletedSchema, { ...sessionCompleted(), finishedAt: '2024-05-01 10:00:00' })).toEqual([
      'finishedAt',
    ]);
    expect(paths(SessionStartedSchema, { ...sessionStarted(), startedAt: 'yesterday' })).toEqual(['startedAt']);
  });

  it('a session announces at least one pipeline', () => {
    expect(paths(SessionStartedSchema, { ...sessionStarted(), pipelines: [] })).toEqual(['pipelines']);
  });

  it('totals are non-negative integers', () => {
    const s = sessionCompleted();
    expect(paths(SessionCompletedSchema, { ...s, totals: { ...s.totals, headers: -1 } })).toEqual(['totals.headers']);
    expect(paths(SessionCompletedSchema, { ...s, totals: { ...s.totals, details: 0.5 } })).toEqual(['totals.details']);
  });

  it('acknowledgement statuses are closed sets', () => {
    expect(paths(BatchAckSchema, { ...batchAck(), status: 'ok' })).toEqual(['status']);
    expect(BatchAckSchema.safeParse({ ...batchAck(), status: 'duplicate' }).success).toBe(true);
    expect(paths(SessionAckSchema, { ...sessionAck(), status: 'done' })).toEqual(['status']);
    expect(SessionAckSchema.safeParse({ ...sessionAck(), status: 'incomplete' }).success).toBe(true);
  });

  it('a batch.ack names the batch it answers by message id', () => {
    expect(paths(BatchAckSchema, { ...batchAck(), batchMessageId: 'x' })).toEqual(['batchMessageId']);
  });
});
