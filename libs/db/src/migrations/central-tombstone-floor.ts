import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { dialectOf } from './column-types';

/**
 * The `EstadoSyncGeneral` column holding, per site and pipeline, the newest version among the
 * ledger tombstones retention has purged. A batch of that version or older was written before
 * one of those deletions; merged, it could bring a deleted row back, so the central refuses it.
 */
export const TOMBSTONE_FLOOR_COLUMN = 'tombstone_floor';

export class CentralTombstoneFloor1733750000000 implements MigrationInterface {
  name = 'CentralTombstoneFloor1733750000000';

  async up(qr: QueryRunner): Promise<void> {
    const site = await qr.getTable('EstadoSyncGeneral');
    if (!site || site.columns.some((c) => c.name.toLowerCase() === TOMBSTONE_FLOOR_COLUMN)) return;
    const type = dialectOf(qr).bigintType();
    await qr.addColumn(site, new TableColumn({ name: TOMBSTONE_FLOOR_COLUMN, type, isNullable: true }));
  }

  async down(qr: QueryRunner): Promise<void> {
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site?.columns.some((c) => c.name === TOMBSTONE_FLOOR_COLUMN)) await qr.dropColumn(site, TOMBSTONE_FLOOR_COLUMN);
  }
}
