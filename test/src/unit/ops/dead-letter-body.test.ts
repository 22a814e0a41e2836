import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { bodyText, type DeadLetter } from '@sitesync/central';
import { labBatch } from '../../support/messages.js';

function deadLetter(body: unknown, gzip = false): DeadLetter {
  const json = Buffer.from(JSON.stringify(body));
  return {
    queue: 'central.sync.dlq',
    messageId: 'm',
    type: 'batch',
    siteId: 101,
    claimedSiteId: 101,
    reason: 'schema',
    error: 'x',
    ageSeconds: 1,
    trust: 'signed',
    route: { exchange: 'sync.up', routingKey: '101.batch', user: 'site-101' },
    originalExchange: 'sync.up',
    originalRoutingKey: '101.batch',
    replays: 0,
    headers: {},
    xDeath: [],
    contentEncoding: gzip ? 'gzip' : undefined,
    content: gzip ? gzipSync(json) : json,
  };
}

describe('a dead letter body as syncctl dlq show prints it', () => {
  it("names a batch's row values by the shape's columns and masks patient fields", () => {
    const b = labBatch(101, [{ orderId: 7, value: 'Pérez, Ana' }]);
    const shown = JSON.parse(bodyText(deadLetter(b, true))) as {
      changes: Array<{ header: Record<string, unknown>; details: Array<Record<string, unknown>> }>;
    };
    expect(shown.changes[0]!.header).toEqual({
      order_id: 7,
      patient_id: '***',
      patient_name: '***',
      notes: 'order 7',
    });
    expect(shown.changes[0]!.details[0]).toEqual({
      result_id: 700,
      order_id: 7,
      test_code: 'GLU',
      value: 'Pérez, Ana',
    });
    expect(bodyText(deadLetter(b), true)).toBe(JSON.stringify(b));
  });

  it('hides a row whose values do not pair with the columns, whole', () => {
    const b = labBatch(101, [{ orderId: 7 }]) as unknown as {
      changes: Array<{ header: unknown[] }>;
    };
    b.changes[0]!.header = ['DNI7', 'Pérez, Ana'];
    const text = bodyText(deadLetter(b));
    expect(text).not.toContain('DNI7');
    expect(text).not.toContain('Pérez');
    expect(JSON.parse(text).changes[0].header).toEqual({ '?': ['***', '***'] });
  });

  it('shows a version-1 batch (rows as objects) masked as before', () => {
    const text = bodyText(
      deadLetter({
        pipeline: { header: { columns: [{ name: 'patient_name' }] } },
        changes: [{ header: { patient_name: 'Ana' } }],
      }),
    );
    expect(JSON.parse(text).changes[0].header).toEqual({ patient_name: '***' });
  });

  it("hides every row whole when the shape's column names cannot be read", () => {
    const b = labBatch(101, [{ orderId: 7, value: 'Pérez, Ana' }]) as unknown as { pipeline: unknown };
    b.pipeline = { name: 'lab' };
    const text = bodyText(deadLetter(b));
    expect(text).not.toContain('DNI7');
    expect(text).not.toContain('Pérez');
    expect(JSON.parse(text).changes[0].header).toEqual({ '?': ['***', '***', '***', '***'] });
  });
});
