import { describe, expect, it } from 'vitest';
import { SiteInterventions } from '@sitesync/peripheral';
import type { DecodedMessage, MessageBody, MessageType } from '@sitesync/protocol';
import { reportSkip } from '../support/services.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';

const SITE_ID = 101;
/** Rounds of a transfer whose acceptance arrives twice at once: enough to meet the race often. */
const ROUNDS = 30;

function message<T extends MessageType>(type: T, body: MessageBody<T>): DecodedMessage<T> {
  return {
    type,
    messageId: `${type}-${Math.random()}`,
    siteId: SITE_ID,
    userId: undefined,
    appId: 'test',
    timestamp: undefined,
    body,
  };
}

describe.each(['sqlite', 'postgres', 'mysql'] as BackendName[])(
  'an acceptance handled twice at once on a %s site',
  (backend) => {
    const url = backendUrl(backend);
    const openDb = scratchPerTest(backend);

    it.skipIf(reportSkip(`concurrent acceptances on ${backend}`, url))(
      'deletes the intervention once and answers source-deleted both times, never a conflict',
      async () => {
        const db = await openDb('site');
        const sent: Array<{ type: MessageType; body: unknown }> = [];
        const si = new SiteInterventions(db, SITE_ID, async (type, body) => {
          sent.push({ type, body });
        });
        await si.onProcedurePublished(
          message('procedure.published', { siteId: SITE_ID, code: 'A', version: 1, name: 'A', definition: '{}' }),
        );
        for (let round = 0; round < ROUNDS; round++) {
          sent.length = 0;
          const iv = await si.create({ procedure: { code: 'A', version: 1 }, payload: `{"round":${round}}` });
          await si.requestTransfer([iv.guid]);
          await si.publishTransfers();
          const transfer = sent.find((s) => s.type === 'intervention.transfer')!.body as { transferId: string };
          const accepted = message('intervention.accepted', {
            siteId: SITE_ID,
            transferId: transfer.transferId,
            guid: iv.guid,
            centralId: round + 1,
          });
          await Promise.all([si.onAccepted(accepted), si.onAccepted(accepted)]);
          expect(
            sent.map((s) => s.type).filter((t) => t !== 'intervention.transfer' && t !== 'procedure.catalogue'),
          ).toEqual(['intervention.source-deleted', 'intervention.source-deleted']);
          const left = await db.query(`SELECT id FROM intervention WHERE guid = ?`, [iv.guid]);
          expect(left).toEqual([]);
        }
      },
    );
  },
);
