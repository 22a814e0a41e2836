import { describe, expect, it } from 'vitest';
import {
  BatchAckSchema,
  BatchSchema,
  BatchSchemaV1,
  HeaderChangeSchema,
  OLDEST_SCHEMA_VERSION,
  PipelineShapeSchema,
  schemaVersionOf,
  SessionAckSchema,
  SessionCompletedSchema,
  SessionStartedSchema,
} from '@sitesync/protocol';
import { SHAPE, batch, batchAck, sessionAck, sessionCompleted, sessionStarted } from './fixtures.js';
import { version1Body } from '../../support/messages.js';

function paths(
  schema: { safeParse(v: unknown): { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } } },
  v: unknown,
) {
  const r = schema.safeParse(v);
  return r.success ? [] : r.error!.issues.map((i) => i.path.map(String).join('.'));
}

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
      HeaderChangeSchema.safeParse({ op: 'upsert', key: [1], hash: 'a'.repeat(32), header: [1], details: [] }).success,
    ).toBe(true);
    expect(paths(HeaderChangeSchema, { op: 'upsert', key: [1], hash: 'a'.repeat(32), header: [1] })).toEqual([
      'details',
    ]);
    expect(HeaderChangeSchema.safeParse({ op: 'delete', key: [1, 'b'] }).success).toBe(true);
    expect(paths(HeaderChangeSchema, { op: 'delete', key: [] })).toEqual(['key']);
    expect(HeaderChangeSchema.safeParse({ op: 'merge', key: [1] }).success).toBe(false);
  });

  it('row values are JSON scalars only', () => {
    const up = batch().changes[0]! as unknown as { header: unknown[] };
    expect(paths(HeaderChangeSchema, { ...up, header: [1, { a: 1 }] })).toEqual(['header.1']);
    expect(paths(HeaderChangeSchema, { ...up, header: [[1], 'x'] })).toEqual(['header.0']);
    expect(paths(HeaderChangeSchema, { ...up, header: [1, Infinity] })).toEqual(['header.1']);
  });

  it('a row is an array of values: not null, not an object', () => {
    const up = batch().changes[0]! as unknown as { header: unknown[] };
    expect(paths(HeaderChangeSchema, { ...up, header: null })).toEqual(['header']);
    expect(paths(HeaderChangeSchema, { ...up, header: { id: 1, patient: 'x' } })).toEqual(['header']);
    expect(paths(HeaderChangeSchema, { ...up, details: [[1, 1, 2], 'x'] })).toEqual(['details.1']);
  });

  it("a batch's changes: at least one, each checked with its own path, only their own fields kept", () => {
    const b = batch();
    expect(paths(BatchSchema, { ...b, changes: [] })).toEqual(['changes']);
    expect(paths(BatchSchema, { ...b, changes: { 0: b.changes[0] } })).toEqual(['changes']);
    const bad = [...b.changes];
    bad[1] = { ...(bad[1] as object), hash: 'XYZ' } as never;
    bad[2] = { op: 'delete', key: [{ id: 3 }] } as never;
    expect(paths(BatchSchema, { ...b, changes: bad })).toEqual(['changes.1.hash', 'changes.2.key.0']);
    expect(paths(BatchSchema, { ...b, changes: [null] })).toEqual(['changes.0']);
    const r = BatchSchema.safeParse({ ...b, changes: b.changes.map((c) => ({ ...c, injected: 'x' })) });
    expect(r.success).toBe(true);
    expect(r.data!.changes).toEqual(b.changes);
  });

  it("each row of a batch holds one value per column of the pipeline's table, in its order", () => {
    const b = batch();
    const up = b.changes[0]! as unknown as { header: unknown[]; details: unknown[][] };
    const with1 = (c: object) => ({ ...b, changes: [{ ...up, ...c }] });
    expect(BatchSchema.safeParse(b).success).toBe(true);
    expect(paths(BatchSchema, with1({ header: [1] }))).toEqual(['changes.0.header']);
    expect(paths(BatchSchema, with1({ header: [1, 'p', 'extra'] }))).toEqual(['changes.0.header']);
    expect(
      paths(
        BatchSchema,
        with1({
          details: [
            [1, 1, 2],
            [1, 2],
          ],
        }),
      ),
    ).toEqual(['changes.0.details.1']);
    const headerOnly = { ...b, pipeline: { ...SHAPE, detail: null } };
    expect(paths(BatchSchema, { ...headerOnly, changes: [{ ...up, details: [] }] })).toEqual([]);
    const r = BatchSchema.safeParse({ ...headerOnly, changes: [up] });
    expect(r.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['changes.0.details.0', 'the pipeline has no detail table'],
    ]);
  });
});

describe('batch, schema version 1 (rows as objects)', () => {
  // Column order in an object does not matter: the columns are named last to first.
  const v1 = () => version1Body(batch(), { reversed: true });

  it("is read into the current form: values in the shape's column order", () => {
    const r = BatchSchemaV1.safeParse(v1());
    expect(r.success).toBe(true);
    expect(r.data).toEqual({ ...batch(), sessionId: r.data!.sessionId });
  });

  it("refuses a row whose columns are not the pipeline's, naming it", () => {
    const b = v1();
    const up = b.changes[0] as { header: Record<string, unknown>; details: Array<Record<string, unknown>> };
    const bad = (c: object) => paths(BatchSchemaV1, { ...b, changes: [{ ...up, ...c }] });
    expect(bad({ header: { id: 1 } })).toEqual(['changes.0.header']);
    expect(bad({ header: { id: 1, patient: 'p', other: 2 } })).toEqual(['changes.0.header']);
    expect(bad({ header: { id: 1, patinet: 'p' } })).toEqual(['changes.0.header']);
    expect(bad({ details: [...up.details, { order_id: 1, line: 3 }] })).toEqual(['changes.0.details.2']);
  });

  it('row values are JSON scalars only, and a row is a plain object of columns (no __proto__ key)', () => {
    const b = v1();
    const up = b.changes[0] as { header: Record<string, unknown> };
    const bad = (c: object) => paths(BatchSchemaV1, { ...b, changes: [{ ...up, ...c }] });
    expect(bad({ header: { id: 1, patient: { a: 1 } } })).toEqual(['changes.0.header.patient']);
    expect(bad({ header: [1, 'p'] })).toEqual(['changes.0.header']);
    expect(bad({ header: null })).toEqual(['changes.0.header']);
    const parsed: unknown = JSON.parse('{"id": 1, "__proto__": "x"}');
    expect(bad({ header: parsed })).toEqual(['changes.0.header.__proto__']);
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

  it("refuses a key or join column that is not one of its table's columns, naming it", () => {
    const bad = (shape: unknown) =>
      PipelineShapeSchema.safeParse(shape).error?.issues.map((i) => [i.path.join('.'), i.message]);
    expect(bad({ ...SHAPE, header: { ...SHAPE.header, key: ['nope'] } })).toEqual([
      ['header.key', "key column nope is not one of the table's columns"],
    ]);
    expect(bad({ ...SHAPE, detail: { ...SHAPE.detail, key: ['line', 'x'] } })).toEqual([
      ['detail.key', "key column x is not one of the table's columns"],
    ]);
    expect(bad({ ...SHAPE, detail: { ...SHAPE.detail, join: { y: 'id' } } })).toEqual([
      ['detail.join', "join column y is not one of the table's columns"],
    ]);
  });

  it('refuses a join that does not map onto exactly the header key, naming the key', () => {
    const bad = (join: Record<string, string>, header = SHAPE.header) =>
      PipelineShapeSchema.safeParse({ ...SHAPE, header, detail: { ...SHAPE.detail, join } }).error?.issues.map((i) => [
        i.path.join('.'),
        i.message,
      ]);
    const twoKeys = { key: ['id', 'patient'], columns: SHAPE.header.columns };
    // one of two key columns left out: the merger could not find the other's detail column
    expect(bad({ order_id: 'id' }, twoKeys)).toEqual([
      ['detail.join', 'the join must map detail columns to exactly the header key (id, patient), not to id'],
    ]);
    // a header column that is not the key
    expect(bad({ order_id: 'patient' })).toEqual([
      ['detail.join', 'the join must map detail columns to exactly the header key (id), not to patient'],
    ]);
    // the key twice, the other key column never
    expect(bad({ order_id: 'id', line: 'id' }, twoKeys)).toEqual([
      ['detail.join', 'the join must map detail columns to exactly the header key (id, patient), not to id, id'],
    ]);
    expect(bad({})).toEqual([
      ['detail.join', 'the join must map detail columns to exactly the header key (id), not to nothing'],
    ]);
    expect(bad({ order_id: 'patient', line: 'id' }, twoKeys)).toBeUndefined();
  });

  it('refuses a column named twice (rows travel as values in column order)', () => {
    const twice = {
      ...SHAPE,
      header: { ...SHAPE.header, columns: [...SHAPE.header.columns, SHAPE.header.columns[1]!] },
    };
    expect(paths(PipelineShapeSchema, twice)).toEqual(['header.columns.2.name']);
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

describe('session.ack refusal', () => {
  const refusal = {
    ...sessionAck(),
    status: 'incomplete',
    refused: { reason: 'site-disabled', message: 'site 101 is disabled at the central' },
  };

  it('carries the reason of a refused session, from a closed list', () => {
    expect(SessionAckSchema.parse(refusal).refused).toEqual(refusal.refused);
    expect(paths(SessionAckSchema, { ...refusal, refused: { reason: 'bored', message: '' } })).toEqual([
      'refused.reason',
    ]);
  });

  it('is read by an agent of the previous release (its schema had no refused) as an incomplete session, at schema version 1', () => {
    const previous = SessionAckSchema.omit({ refused: true });
    expect(previous.parse(refusal)).toMatchObject({ status: 'incomplete' });
    expect(schemaVersionOf('session.ack')).toBe(OLDEST_SCHEMA_VERSION);
  });
});
