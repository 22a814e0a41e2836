import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columns, createOrExtendTable, dialectOf } from './column-types';

/**
 * Site tables: the `LAB_SyncStatus` run log, the side table holding SourceHash/TargetHash/IsSync per
 * pipeline and header key, the session lock, and the version counter.
 */
export class SiteInit1732500000000 implements MigrationInterface {
  name = 'SiteInit1732500000000';

  async up(qr: QueryRunner): Promise<void> {
    const c = columns(dialectOf(qr));
    await createOrExtendTable(
      qr,
      new Table({
        name: 'LAB_SyncStatus',
        columns: [
          c.id(),
          c.text('session_id', 36),
          c.bigint('version'),
          c.ts('started_at', false),
          c.ts('finished_at'),
          c.text('status', 20),
          c.int('batches_sent', false, 0),
          c.int('headers_sent', false, 0),
          c.int('details_sent', false, 0),
          c.int('deletions_sent', false, 0),
          c.int('headers_acked', false, 0),
          c.text('error', 2000, true),
        ],
      }),
    );
    await qr.createTable(
      new Table({
        name: 'sync_row_state',
        columns: [
          { ...c.text('pipeline', 64), isPrimary: true },
          { ...c.text('header_key', 400), isPrimary: true },
          c.text('SourceHash', 64, true),
          c.text('TargetHash', 64, true),
          c.bool('IsSync', false),
          c.text('pending_hash', 64, true),
          c.text('pending_batch', 36, true),
          c.bool('pending_delete', false),
          c.ts('updated_at', false),
        ],
      }),
    );
    await qr.createIndex(
      'sync_row_state',
      new TableIndex({ name: 'IX_sync_row_state_pending', columnNames: ['pending_batch'] }),
    );
    await qr.createTable(
      new Table({
        name: 'sync_lock',
        columns: [{ ...c.text('name', 64), isPrimary: true }, c.text('owner', 64), c.ts('expires_at', false)],
      }),
    );
    await qr.createTable(
      new Table({
        name: 'sync_counter',
        columns: [{ ...c.text('name', 64), isPrimary: true }, c.bigint('value')],
      }),
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    for (const t of ['sync_counter', 'sync_lock', 'sync_row_state', 'LAB_SyncStatus']) await qr.dropTable(t, true);
  }
}
