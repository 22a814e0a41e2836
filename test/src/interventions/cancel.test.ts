import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Database } from '@sitesync/db';
import { CentralInterventions, TransferRefusedError, registerSite } from '@sitesync/central';

describe('operator requests on the central', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sitesync-cancel-'));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a transfer not yet delivered can be cancelled, unlocking the intervention; the log says who asked', async () => {
    const db = await Database.open(`sqlite:${join(dir, 'central.db')}`, { role: 'central' });
    try {
      await registerSite(db, { siteId: 101, headerTable: 'h' });
      const svc = new CentralInterventions(db);
      await svc.publishProcedure({ code: 'P', version: 1, name: 'P', definition: '{}' }, []);
      const guid = randomUUID();
      await db.execute(
        `INSERT INTO intervention (guid, procedure_code, procedure_version, finished, payload, state, transfer_requested, updated_at) VALUES (?, 'P', 1, 0, '{}', 'active', 0, ?)`,
        [guid, new Date().toISOString()],
      );
      const id = await svc.requestTransferOut(guid, 101, 'ana (syncctl)');
      await expect(svc.requestTransferOut(guid, 101)).rejects.toThrow(/already being transferred/);
      await svc.cancelTransferOut(id, 'ana (syncctl)');
      const [t] = await svc.listTransfers({ guid });
      expect(t).toMatchObject({
        state: 'cancelled',
        requested_by: 'ana (syncctl)',
        reason: 'cancelled by ana (syncctl)',
      });
      expect(await db.query(`SELECT state FROM intervention WHERE guid = ?`, [guid])).toEqual([{ state: 'active' }]);
      await expect(svc.cancelTransferOut(id)).rejects.toBeInstanceOf(TransferRefusedError);
      // A finished intervention does not move; an unknown destination is refused.
      await db.execute(`UPDATE intervention SET finished = 1 WHERE guid = ?`, [guid]);
      await expect(svc.requestTransferOut(guid, 101)).rejects.toThrow(/finished/);
      await expect(svc.requestTransferOut(guid, 999)).rejects.toThrow(/site 999 is not registered/);
    } finally {
      await db.close();
    }
  });
});
