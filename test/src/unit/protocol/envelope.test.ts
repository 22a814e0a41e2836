import { randomUUID } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CONTENT_TYPE,
  DEFAULT_GZIP_THRESHOLD,
  HEADER_CHECKSUM,
  HEADER_SCHEMA,
  HEADER_SITE,
  MessageRejectedError,
  SCHEMA_VERSION,
  bodyChecksum,
  decodeMessage,
  encodeMessage,
  isDecoded,
  routingKeyFor,
  type MessageType,
  type RawMessage,
  type RejectReason,
} from '@sitesync/protocol';
import { SITE_ID, batch, batchAck, sessionAck, sessionCompleted, sessionStarted } from './fixtures.js';
import { asDelivered, version1Body } from '../../support/messages.js';

const delivered = asDelivered;

/** A message built by hand (bypassing encodeMessage's own validation), with a correct checksum unless told otherwise. */
function handmade(
  content: Buffer | string,
  props: Partial<RawMessage['properties']> = {},
  headers: Record<string, unknown> = {},
): RawMessage {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return {
    content: bytes,
    properties: {
      messageId: randomUUID(),
      type: 'batch',
      appId: 'test',
      timestamp: Math.floor(Date.now() / 1000),
      ...props,
      headers: {
        [HEADER_SITE]: SITE_ID,
        [HEADER_SCHEMA]: SCHEMA_VERSION,
        [HEADER_CHECKSUM]: bodyChecksum(bytes),
        ...headers,
      },
    },
  };
}

function rejection(fn: () => unknown): MessageRejectedError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MessageRejectedError);
    return err as MessageRejectedError;
  }
  throw new Error('expected the message to be rejected, but it was accepted');
}

function expectRejected(
  raw: RawMessage,
  reason: RejectReason,
  expected?: readonly MessageType[],
): MessageRejectedError {
  const err = rejection(() => decodeMessage(raw, expected));
  expect(err.reason).toBe(reason);
  return err;
}

describe('encoding', () => {
  it('builds a persistent JSON message routed by site and type, with id, app, timestamp and the three headers', () => {
    const before = Math.floor(Date.now() / 1000);
    const m = encodeMessage('batch', batch(), { siteId: SITE_ID, appId: 'sync-peripheral', userId: 'site-7' });
    expect(m.routingKey).toBe(`${SITE_ID}.batch`);
    expect(m.routingKey).toBe(routingKeyFor(SITE_ID, 'batch'));
    expect(m.options.persistent).toBe(true);
    expect(m.options.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(m.options.type).toBe('batch');
    expect(m.options.appId).toBe('sync-peripheral');
    expect(m.options.userId).toBe('site-7');
    expect(m.options.contentType).toBe(CONTENT_TYPE);
    expect(m.options.contentType).toBe('application/json');
    expect(m.options.timestamp).toBeGreaterThanOrEqual(before);
    expect(m.options.timestamp).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(m.options.headers).toEqual({
      [HEADER_SITE]: SITE_ID,
      [HEADER_SCHEMA]: SCHEMA_VERSION,
      [HEADER_CHECKSUM]: bodyChecksum(m.content),
    });
  });

  it('gives every message its own id unless one is supplied, and carries a correlation id for replies', () => {
    const a = encodeMessage('batch', batch(), { siteId: SITE_ID, appId: 't' });
    const b = encodeMessage('batch', batch(), { siteId: SITE_ID, appId: 't' });
    expect(a.options.messageId).not.toBe(b.options.messageId);
    const id = randomUUID();
    const reply = encodeMessage('batch.ack', batchAck(), {
      siteId: SITE_ID,
      appId: 'c',
      messageId: id,
      correlationId: a.options.messageId,
    });
    expect(reply.options.messageId).toBe(id);
    expect(reply.options.correlationId).toBe(a.options.messageId);
    expect(a.options).not.toHaveProperty('userId');
    expect(a.options).not.toHaveProperty('correlationId');
  });

  it('refuses to publish a body that its own schema rejects', () => {
    expect(() => encodeMessage('batch', { ...batch(), changes: [] }, { siteId: SITE_ID, appId: 't' })).toThrow(
      TypeError,
    );
    expect(() => encodeMessage('batch', { ...batch(), siteId: 0 }, { siteId: SITE_ID, appId: 't' })).toThrow(/batch/);
  });

  it('leaves small bodies as plain JSON', () => {
    const body = batchAck();
    const m = encodeMessage('batch.ack', body, { siteId: SITE_ID, appId: 't' });
    expect(m.options.contentEncoding).toBeUndefined();
    expect(m.content.length).toBeLessThan(DEFAULT_GZIP_THRESHOLD);
    expect(m.content.toString('utf8')).toBe(JSON.stringify(body));
  });

  it('gzips bodies of at least the threshold (4096 bytes by default), and the checksum covers the bytes sent', () => {
    const body = batch(SITE_ID, 200);
    const json = Buffer.from(JSON.stringify(body));
    expect(json.length).toBeGreaterThan(DEFAULT_GZIP_THRESHOLD);
    const m = encodeMessage('batch', body, { siteId: SITE_ID, appId: 't' });
    expect(m.options.contentEncoding).toBe('gzip');
    expect(m.content.length).toBeLessThan(json.length);
    expect(gunzipSync(m.content).equals(json)).toBe(true);
    expect(m.options.headers[HEADER_CHECKSUM]).toBe(bodyChecksum(m.content));
  });

  it('the threshold is inclusive, configurable, and 0 disables compression', () => {
    const body = batch(SITE_ID, 3);
    const len = Buffer.byteLength(JSON.stringify(body));
    const enc = (gzipThreshold: number) =>
      encodeMessage('batch', body, { siteId: SITE_ID, appId: 't', gzipThreshold }).options.contentEncoding;
    expect(enc(len)).toBe('gzip');
    expect(enc(len + 1)).toBeUndefined();
    expect(enc(1)).toBe('gzip');
    expect(enc(0)).toBeUndefined();
    const big = encodeMessage('batch', batch(SITE_ID, 200), { siteId: SITE_ID, appId: 't', gzipThreshold: 0 });
    expect(big.options.contentEncoding).toBeUndefined();
  });
});

describe('decoding what was encoded', () => {
  const bodies = {
    'session.started': sessionStarted(),
    batch: batch(),
    'session.completed': sessionCompleted(),
    'batch.ack': batchAck(),
    'session.ack': sessionAck(),
    'procedure.published': { siteId: SITE_ID, code: 'A', version: 2, name: 'Procedure A', definition: '{"steps":[]}' },
    'intervention.transfer': {
      siteId: SITE_ID,
      transferId: randomUUID(),
      localId: 12,
      intervention: { guid: randomUUID(), procedure: { code: 'A', version: 2 }, finished: false, payload: '{}' },
    },
  } as const;

  it.each(Object.keys(bodies) as Array<keyof typeof bodies>)('%s comes back unchanged, with its envelope', (type) => {
    const body = bodies[type];
    const m = encodeMessage(type, body as never, { siteId: SITE_ID, appId: 'app', userId: 'site-7' });
    const d = decodeMessage(delivered(m));
    expect(d.type).toBe(type);
    expect(d.body).toEqual(body);
    expect(d.messageId).toBe(m.options.messageId);
    expect(d.siteId).toBe(SITE_ID);
    expect(d.userId).toBe('site-7');
    expect(d.appId).toBe('app');
    expect(d.timestamp).toBe(m.options.timestamp);
    expect(isDecoded(d, type)).toBe(true);
  });

  it('a gzipped batch comes back unchanged', () => {
    const body = batch(SITE_ID, 300);
    const m = encodeMessage('batch', body, { siteId: SITE_ID, appId: 't' });
    expect(m.options.contentEncoding).toBe('gzip');
    expect(decodeMessage(delivered(m)).body).toEqual(body);
  });

  it('accepts numeric headers that arrive as strings', () => {
    const json = JSON.stringify(batch());
    const d = decodeMessage(
      handmade(json, {}, { [HEADER_SITE]: String(SITE_ID), [HEADER_SCHEMA]: String(SCHEMA_VERSION) }),
    );
    expect(d.siteId).toBe(SITE_ID);
  });

  it('writes a batch as schema version 2 and every other type as 1, which the previous release reads', () => {
    const version = (type: MessageType, body: unknown) =>
      encodeMessage(type, body as never, { siteId: SITE_ID, appId: 't' }).options.headers[HEADER_SCHEMA];
    expect(version('batch', batch())).toBe(2);
    for (const type of Object.keys(bodies) as MessageType[]) {
      if (type !== 'batch') expect(version(type, bodies[type as keyof typeof bodies]), type).toBe(1);
    }
    // and reads both versions of a body that did not change
    const ack = batchAck();
    for (const v of [1, 2]) {
      expect(decodeMessage(handmade(JSON.stringify(ack), { type: 'batch.ack' }, { [HEADER_SCHEMA]: v })).body).toEqual(
        ack,
      );
    }
  });

  it('reads a schema version 1 batch (rows as objects) into the current form', () => {
    const current = batch();
    const v1 = version1Body(current);
    const d = decodeMessage(handmade(JSON.stringify(v1), {}, { [HEADER_SCHEMA]: 1 }));
    expect(d.body).toEqual(current);
    // A version-2 body announced as version 1 is not read as one.
    const err = expectRejected(handmade(JSON.stringify(current), {}, { [HEADER_SCHEMA]: 1 }), 'schema');
    expect(err.message).toContain('changes.0.header');
  });

  it('narrows by type', () => {
    const d = decodeMessage(delivered(encodeMessage('batch.ack', batchAck(), { siteId: SITE_ID, appId: 't' })));
    expect(isDecoded(d, 'batch.ack')).toBe(true);
    expect(isDecoded(d, 'batch')).toBe(false);
  });

  it('does not leave a body with unknown fields in the decoded result', () => {
    const body = { ...batchAck(), injected: 'x' };
    const d = decodeMessage(handmade(JSON.stringify(body), { type: 'batch.ack' }));
    expect(d.body).not.toHaveProperty('injected');
  });
});

describe('a message that cannot be used is rejected with its reason', () => {
  it('invalid JSON', () => {
    const err = expectRejected(handmade('{"sessionId": '), 'invalid-json');
    expect(err.code).toBe('REJECTED_INVALID_JSON');
    expectRejected(handmade(''), 'invalid-json');
    expectRejected(handmade(Buffer.from([0xff, 0xfe, 0x00])), 'invalid-json');
  });

  it('a body marked gzip that is not gzip', () => {
    const err = expectRejected(handmade(JSON.stringify(batch()), { contentEncoding: 'gzip' }), 'invalid-json');
    expect(err.message).toMatch(/gzip/);
    expect(err.cause).toBeDefined();
    expectRejected(handmade(gzipSync('{"truncated').subarray(0, 10), { contentEncoding: 'gzip' }), 'invalid-json');
  });

  it('gzip that holds something other than JSON', () => {
    expectRejected(handmade(gzipSync('<xml/>'), { contentEncoding: 'gzip' }), 'invalid-json');
  });

  it('a body whose bytes do not match the checksum header', () => {
    const m = encodeMessage('batch', batch(), { siteId: SITE_ID, appId: 't' });
    const raw = delivered(m);
    const tampered = Buffer.from(raw.content);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 2) ^ 1, tampered.length - 2);
    expectRejected({ ...raw, content: tampered }, 'checksum-mismatch');
    // the same JSON with one space more is also a different body
    expectRejected({ ...raw, content: Buffer.concat([raw.content, Buffer.from(' ')]) }, 'checksum-mismatch');
  });

  it('a gzipped body altered in transit', () => {
    const raw = delivered(encodeMessage('batch', batch(SITE_ID, 200), { siteId: SITE_ID, appId: 't' }));
    const tampered = Buffer.from(raw.content);
    tampered.writeUInt8(tampered.readUInt8(20) ^ 0xff, 20);
    expectRejected({ ...raw, content: tampered }, 'checksum-mismatch');
  });

  it('a missing or malformed checksum header', () => {
    expectRejected(handmade('{}', {}, { [HEADER_CHECKSUM]: undefined }), 'checksum-mismatch');
    const raw = handmade('{}');
    expectRejected(
      handmade('{}', {}, { [HEADER_CHECKSUM]: Buffer.from(String(raw.properties.headers![HEADER_CHECKSUM])) }),
      'checksum-mismatch',
    );
    expectRejected(handmade('{}', {}, { [HEADER_CHECKSUM]: 'sha256' }), 'checksum-mismatch');
  });

  it('an unknown message type, a missing one, or one the consumer does not take', () => {
    const json = JSON.stringify(batch());
    const err = expectRejected(handmade(json, { type: 'batch.delete' }), 'unknown-type');
    expect(err.context.type).toBe('batch.delete');
    expectRejected(handmade(json, { type: undefined }), 'unknown-type');
    expectRejected(handmade(json, { type: '__proto__' }), 'unknown-type');
    expectRejected(handmade(json, { type: 'batch' }), 'unknown-type', ['batch.ack', 'session.ack']);
    // while the central's own expected list accepts it
    expect(decodeMessage(handmade(json), ['session.started', 'batch', 'session.completed']).type).toBe('batch');
  });

  it('a schema version this code does not speak, or none at all', () => {
    const json = JSON.stringify(batch());
    expect(SCHEMA_VERSION).toBe(2);
    expectRejected(handmade(json, {}, { [HEADER_SCHEMA]: SCHEMA_VERSION + 1 }), 'unsupported-schema-version');
    expectRejected(handmade(json, {}, { [HEADER_SCHEMA]: 0 }), 'unsupported-schema-version');
    expectRejected(handmade(json, {}, { [HEADER_SCHEMA]: 1.5 }), 'unsupported-schema-version');
    expectRejected(handmade(json, {}, { [HEADER_SCHEMA]: undefined }), 'unsupported-schema-version');
    expectRejected(handmade(json, {}, { [HEADER_SCHEMA]: 'v1' }), 'unsupported-schema-version');
  });

  it('a message without a message id', () => {
    const json = JSON.stringify(batch());
    const err = expectRejected(handmade(json, { messageId: undefined }), 'bad-envelope');
    expect(err.context.messageId).toBeUndefined();
    expectRejected(handmade(json, { messageId: '' }), 'bad-envelope');
    expectRejected(handmade(json, { messageId: 12345 }), 'bad-envelope');
  });

  it('a message without a usable site header', () => {
    const json = JSON.stringify(batch());
    expectRejected(handmade(json, {}, { [HEADER_SITE]: undefined }), 'bad-envelope');
    expectRejected(handmade(json, {}, { [HEADER_SITE]: '7; drop' }), 'bad-envelope');
    expectRejected(handmade(json, {}, { [HEADER_SITE]: '' }), 'bad-envelope');
  });

  it('a body that breaks its schema, naming where', () => {
    const body = batch();
    (body.changes[1] as { hash: string }).hash = 'NOT-HEX';
    const err = expectRejected(handmade(JSON.stringify(body)), 'schema');
    expect(err.message).toContain('changes.1.hash');
    expect(err.context.siteId).toBe(SITE_ID);
    const missing = { ...batchAck() } as Record<string, unknown>;
    delete missing.batchMessageId;
    expect(expectRejected(handmade(JSON.stringify(missing), { type: 'batch.ack' }), 'schema').message).toContain(
      'batchMessageId',
    );
    expect(expectRejected(handmade('[]'), 'schema').message).toContain('(root)');
    expectRejected(handmade('null'), 'schema');
  });

  it('a body claiming another site than its header (forged site)', () => {
    const body = batch(8);
    const err = expectRejected(handmade(JSON.stringify(body)), 'forged-site');
    expect(err.code).toBe('REJECTED_FORGED_SITE');
    expect(err.context.siteId).toBe(SITE_ID);
    expect(err.message).toContain('8');
    // the same forgery built through encodeMessage (header 7, body 8)
    const m = encodeMessage('session.completed', sessionCompleted(8), { siteId: SITE_ID, appId: 't' });
    expectRejected(delivered(m), 'forged-site');
  });

  it('carries the message id and type of what it rejected, for the dead-letter record', () => {
    const id = randomUUID();
    const err = expectRejected(handmade('{', { messageId: id }), 'invalid-json');
    expect(err.context).toMatchObject({ messageId: id, type: 'batch', siteId: SITE_ID });
  });
});

describe('routing key and claimed site', () => {
  it('a message routed under another site than its header claims is rejected as forged', () => {
    const m = encodeMessage('batch', batch(SITE_ID), { siteId: SITE_ID, appId: 'test' });
    const raw = delivered(m);
    expect(decodeMessage(raw).siteId).toBe(SITE_ID);
    const rerouted = { ...raw, fields: { routingKey: routingKeyFor(SITE_ID + 1, 'batch') } };
    expect(() => decodeMessage(rerouted)).toThrow(MessageRejectedError);
    try {
      decodeMessage(rerouted);
    } catch (err) {
      expect((err as MessageRejectedError).reason).toBe('forged-site');
    }
  });
});
