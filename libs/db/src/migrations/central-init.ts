import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columns, createOrExtendTable, dialectOf } from './column-types';

/**
 * Central tables: `EstadoSyncGeneral` (legacy names kept; new columns in English), the inbox of
 * processed message ids, the per-row version ledger, and the per-session accounting.
 */
export class CentralInit1732500000000 implements MigrationInterface {
  name = 'CentralInit1732500000000';

  async up(qr: QueryRunner): Promise<void> {
    const c = columns(dialectOf(qr));
    await createOrExtendTable(
      qr,
      new Table({
        name: 'EstadoSyncGeneral',
        columns: [
          c.id(),
          c.int('id_efector'),
          { ...c.text('pipeline', 64), default: "'main'" },
          c.text('tabla_encabezado', 128),
          c.text('tabla_detalle', 128, true),
          c.ts('ultimo_update_efector_inicio'),
          c.ts('ultimo_update_efector_fin'),
          c.ts('ultimo_sync_fecha_inicio'),
          c.ts('ultimo_sync_fecha_fin'),
          c.int('ultimo_sync_registros', true),
          c.int('header_count', false, 0),
          c.int('detail_count', false, 0),
          c.int('deletion_count', false, 0),
          { ...c.text('status', 20), default: "'new'" },
          c.text('last_error', 2000, true),
          c.ts('last_seen'),
          c.text('broker_user', 128, true),
          c.text('last_session_id', 36, true),
          c.bigint('last_version', true),
        ],
        uniques: [{ name: 'UQ_EstadoSyncGeneral_site_pipeline', columnNames: ['id_efector', 'pipeline'] }],
      }),
    );
    await qr.createTable(
      new Table({
        name: 'sync_inbox',
        columns: [
          { ...c.text('message_id', 36), isPrimary: true },
          c.int('id_efector'),
          c.text('message_type', 40),
          c.text('session_id', 36, true),
          c.text('pipeline', 64, true),
          c.int('headers', false, 0),
          c.int('details', false, 0),
          c.int('deletions', false, 0),
          c.ts('processed_at', false),
        ],
      }),
    );
    await qr.createIndex('sync_inbox', new TableIndex({ name: 'IX_sync_inbox_session', columnNames: ['session_id'] }));
    await qr.createTable(
      new Table({
        name: 'sync_ledger',
        columns: [
          { ...c.int('id_efector'), isPrimary: true },
          { ...c.text('pipeline', 64), isPrimary: true },
          { ...c.text('header_key', 400), isPrimary: true },
          c.bigint('version'),
          c.text('row_hash', 64, true),
          c.bool('deleted', false),
          c.ts('updated_at', false),
        ],
      }),
    );
    await qr.createTable(
      new Table({
        name: 'sync_session',
        columns: [
          { ...c.text('session_id', 36), isPrimary: true },
          c.int('id_efector'),
          c.bigint('version'),
          c.ts('site_started_at'),
          c.ts('site_finished_at'),
          c.int('expected_batches', true),
          c.int('expected_headers', true),
          c.int('expected_details', true),
          c.int('expected_deletions', true),
          c.text('status', 20),
          c.ts('acked_at'),
          c.ts('created_at', false),
        ],
      }),
    );
    // Batches dead-lettered by the central: they count against their session until replayed.
    await qr.createTable(
      new Table({
        name: 'sync_rejected',
        columns: [
          { ...c.text('message_id', 36), isPrimary: true },
          c.text('session_id', 36, true),
          c.int('id_efector'),
          c.text('reason', 40),
          c.ts('rejected_at', false),
        ],
      }),
    );
    await qr.createIndex(
      'sync_rejected',
      new TableIndex({ name: 'IX_sync_rejected_session', columnNames: ['session_id'] }),
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    for (const t of ['sync_rejected', 'sync_session', 'sync_ledger', 'sync_inbox', 'EstadoSyncGeneral'])
      await qr.dropTable(t, true);
  }
}
