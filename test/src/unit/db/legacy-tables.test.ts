import { afterEach, describe, expect, it } from 'vitest';
import { Database } from '@sitesync/db';
import { registerSite } from '@sitesync/central';
import { backendUrl, createScratch, type BackendName, type Scratch } from './scratch-databases.js';
import { reportSkip } from '../../support/services.js';

const BACKENDS: BackendName[] = ['sqlite', 'postgres', 'mysql', 'mssql'];

describe.each(BACKENDS)('legacy tables already present on %s', (backend) => {
  const url = backendUrl(backend);
  let scratch: Scratch | undefined;
  afterEach(async () => {
    await scratch?.drop();
    scratch = undefined;
  });

  it.skipIf(reportSkip(`legacy tables on ${backend}`, url))(
    'migrations keep a legacy EstadoSyncGeneral and its rows, adding only the columns sitesync needs',
    async () => {
      scratch = await createScratch(backend);
      const raw = await Database.open(scratch.url, { role: 'central', migrate: false });
      const q = (s: string) => raw.dialect.quote(s);
      const ts = raw.dialect.timestampType();
      // The table as the hospitals' legacy cron jobs created it: no id, no sitesync columns.
      await raw.query(
        `CREATE TABLE ${q('EstadoSyncGeneral')} (id_efector INT NOT NULL, tabla_encabezado VARCHAR(128), tabla_detalle VARCHAR(128), ` +
          `ultimo_update_efector_inicio ${ts}, ultimo_update_efector_fin ${ts}, ultimo_sync_fecha_inicio ${ts}, ` +
          `ultimo_sync_fecha_fin ${ts}, ultimo_sync_registros INT)`,
      );
      await raw.execute(
        `INSERT INTO ${q('EstadoSyncGeneral')} (id_efector, tabla_encabezado, tabla_detalle, ultimo_sync_registros) VALUES (?, ?, ?, ?)`,
        [7, 'enc_hospital_7', 'det_hospital_7', 1234],
      );
      await raw.close();

      const db = await Database.open(scratch.url, { role: 'central' });
      try {
        const info = (await db.describeTable('EstadoSyncGeneral'))!;
        const names = info.columns.map((c) => c.name);
        for (const c of [
          'id_efector',
          'tabla_encabezado',
          'pipeline',
          'status',
          'broker_user',
          'last_version',
          'header_count',
        ]) {
          expect(names).toContain(c);
        }
        const rows = await db.query<Record<string, unknown>>(
          `SELECT id_efector, tabla_encabezado, ultimo_sync_registros, pipeline FROM ${db.dialect.quote('EstadoSyncGeneral')}`,
        );
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ tabla_encabezado: 'enc_hospital_7' });
        expect(Number(rows[0]!.ultimo_sync_registros)).toBe(1234);
        expect(rows[0]!.pipeline).toBe('main');
        await registerSite(db, { siteId: 8, headerTable: 'enc_hospital_8' });
        await expect(registerSite(db, { siteId: 7, headerTable: 'x' })).rejects.toThrow(/already exists/);
      } finally {
        await db.close();
      }
    },
  );
});
