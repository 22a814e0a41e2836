import { randomUUID } from 'node:crypto';
import {
  hashHeader,
  type BatchAck,
  type HeaderBatch,
  type PipelineShape,
  type SessionAck,
  type SessionCompleted,
  type SessionStarted,
} from '@sitesync/protocol';

export const SITE_ID = 7;

export const SHAPE: PipelineShape = {
  name: 'orders',
  algorithm: 'md5',
  header: {
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer', nullable: false },
      { name: 'patient', type: 'text', nullable: true },
    ],
  },
  detail: {
    key: ['order_id', 'line'],
    join: { order_id: 'id' },
    columns: [
      { name: 'order_id', type: 'integer', nullable: false },
      { name: 'line', type: 'integer', nullable: false },
      { name: 'qty', type: 'number', nullable: true },
    ],
  },
};

export function batch(siteId = SITE_ID, headers = 2): HeaderBatch {
  const changes: HeaderBatch['changes'] = [];
  for (let i = 1; i <= headers; i++) {
    const header = { id: i, patient: `patient ${i}` };
    const details = [
      { order_id: i, line: 1, qty: 2 },
      { order_id: i, line: 2, qty: 0.5 },
    ];
    changes.push({
      op: 'upsert',
      key: [i],
      hash: hashHeader('md5', header, details),
      header: [header.id, header.patient],
      details: details.map((d) => [d.order_id, d.line, d.qty]),
    });
  }
  changes.push({ op: 'delete', key: [headers + 1] });
  return { sessionId: randomUUID(), siteId, pipeline: SHAPE, version: 3, seq: 0, changes };
}

export function sessionStarted(siteId = SITE_ID): SessionStarted {
  return { sessionId: randomUUID(), siteId, version: 3, startedAt: '2024-05-01T10:00:00.000Z', pipelines: [SHAPE] };
}

export function sessionCompleted(siteId = SITE_ID): SessionCompleted {
  return {
    sessionId: randomUUID(),
    siteId,
    version: 3,
    startedAt: '2024-05-01T10:00:00Z',
    finishedAt: '2024-05-01T10:00:05.120-03:00',
    totals: { batches: 1, headers: 2, details: 4, deletions: 1 },
  };
}

export function batchAck(siteId = SITE_ID): BatchAck {
  return {
    sessionId: randomUUID(),
    siteId,
    pipeline: 'orders',
    batchMessageId: randomUUID(),
    status: 'applied',
    headers: 2,
    details: 4,
    deletions: 1,
    stale: 0,
  };
}

export function sessionAck(siteId = SITE_ID): SessionAck {
  const totals = { batches: 1, headers: 2, details: 4, deletions: 1 };
  return {
    sessionId: randomUUID(),
    siteId,
    status: 'complete',
    expected: totals,
    received: totals,
    rejectedBatches: 0,
  };
}
