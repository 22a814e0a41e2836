import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { Database } from '@sitesync/db';
import { CentralInterventions, TransferRefusedError, registerSite } from '@sitesync/central';
import { syncctl } from '../support/wait.js';

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

  it('syncctl transfers shows first the transfer id that syncctl transfer-cancel takes', async () => {
    // A folder of its own: afterEach removes the shared one.
    const own = mkdtempSync(join(tmpdir(), 'sitesync-cancel-cli-'));
    onTestFinished(() => rmSync(own, { recursive: true, force: true }));
    const url = `sqlite:${join(own, 'central.db')}`;
    const db = await Database.open(url, { role: 'central' });
    const guid = randomUUID();
    try {
      await registerSite(db, { siteId: 101, headerTable: 'h' });
      await new CentralInterventions(db).publishProcedure({ code: 'P', version: 1, name: 'P', definition: '{}' }, []);
      await db.execute(
        `INSERT INTO intervention (guid, procedure_code, procedure_version, finished, payload, state, transfer_requested, updated_at) VALUES (?, 'P', 1, 0, '{}', 'active', 0, ?)`,
        [guid, new Date().toISOString()],
      );
    } finally {
      await db.close();
    }
    const asked = await syncctl(['--db', url, 'transfer', guid, '--to', '101']);
    expect(asked.code, asked.stderr).toBe(0);
    const listed = await syncctl(['--db', url, 'transfers', '--guid', guid]);
    expect(listed.code, listed.stderr).toBe(0);
    const [header, , row] = listed.stdout.split('\n');
    expect(header!.split(/\s{2,}/)[0]).toBe('transfer id');
    const transferId = row!.split(/\s+/)[0]!;
    expect(asked.stdout).toContain(`transfer ${transferId} requested`);
    const cancelled = await syncctl(['--db', url, 'transfer-cancel', transferId]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const after = await syncctl(['--db', url, 'transfers', '--guid', guid, '--json']);
    expect(JSON.parse(after.stdout)).toMatchObject([{ transfer_id: transferId, state: 'cancelled' }]);
  });
});
