import { describe, expect, it } from 'vitest';
import { BatchMerger, TargetTables, registerSite, verifySender } from '@sitesync/central';
import type { Database } from '@sitesync/db';
import { MessageRejectedError, type DecodedMessage, type PipelineShape } from '@sitesync/protocol';
import { reportSkip } from '../support/services.js';
import { deliveredBatch, senderChecked, valueBatch, type SenderCheckedMerger } from '../support/messages.js';
import { backendUrl, scratchPerTest, type BackendName } from '../unit/db/scratch-databases.js';

const SITE_ID = 101;
const SHAPE: PipelineShape = {
  name: 'notes',
  algorithm: 'md5',
  header: {
    key: ['id'],
    columns: [
      { name: 'id', type: 'integer', nullable: false, kind: 'int64' },
      { name: 'body', type: 'text', nullable: true, kind: 'text' },
    ],
  },
  detail: null,
};

/** A batch of one header as the central's consumer hands it on (the JSON escapes a lone surrogate as `\udxxx`). */
function delivered(body: string, version = 1): DecodedMessage<'batch'> {
  return deliveredBatch(valueBatch(SITE_ID, SHAPE, [[1, body]], version));
}

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql'];

describe.each(BACKENDS)('text the central cannot hold on %s', (backend) => {
  const url = backendUrl(backend);
  const openDb = scratchPerTest(backend);

  async function merger(): Promise<{ db: Database; merger: SenderCheckedMerger }> {
    const db = await openDb('central');
    await registerSite(db, { siteId: SITE_ID, pipeline: 'notes', headerTable: 'c_notes' });
    return { db, merger: senderChecked(db, new BatchMerger(db, new TargetTables(db))) };
  }

  async function stored(db: Database): Promise<unknown> {
    // (a batch refused before the central looked at its tables leaves them uncreated)
    if (!(await db.describeTable('c_notes'))) return undefined;
    const rows = await db.query<{ body: unknown }>(`SELECT body FROM c_notes WHERE id_efector = ?`, [SITE_ID]);
    return rows[0]?.body;
  }

  it.skipIf(reportSkip(`text values on ${backend}`, url))(
    'a lone surrogate is refused with the column named, never stored as U+FFFD',
    async () => {
      const { db, merger: m } = await merger();
      const batch = delivered('before \ud800 after');
      // Refused after its sender was verified, so the central counts it against its session.
      await expect(verifySender(db, batch)).resolves.toMatchObject({ siteRows: [{ id_efector: SITE_ID }] });
      const err = await m.merge(batch).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MessageRejectedError);
      expect((err as MessageRejectedError).reason).toBe('bad-content');
      expect((err as MessageRejectedError).message).toMatch(/column body .*lone UTF-16 surrogate/);
      expect(await stored(db)).toBeUndefined();
    },
  );

  it.skipIf(reportSkip(`text values on ${backend}`, url))(
    'a surrogate pair, combining accents, right-to-left text and NUL are stored exactly where the database holds them',
    async () => {
      const { db, merger: m } = await merger();
      const text = 'emoji 😀 e\u0301 שלום مرحبا';
      await expect(m.merge(delivered(text))).resolves.toMatchObject({ status: 'applied' });
      expect(await stored(db)).toBe(text);
      const nul = delivered('a\u0000b', 2);
      if (backend === 'postgres') {
        await expect(m.merge(nul)).rejects.toThrow(/column body .*NUL/);
      } else {
        await expect(m.merge(nul)).resolves.toMatchObject({ status: 'applied' });
        expect(await stored(db)).toBe('a\u0000b');
      }
    },
  );
});
