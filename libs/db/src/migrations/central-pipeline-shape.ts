import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { dialectOf } from './column-types';

/** The `EstadoSyncGeneral` column holding the pipeline shape (JSON) the site last sent. */
export const PIPELINE_SHAPE_COLUMN = 'pipeline_shape';

/**
 * Records, per site and pipeline, the shape (columns and their types) the site last sent, so that
 * `syncctl db check` can compare the target tables' live column types with the site's: the central
 * keeps no other record of them.
 */
export class CentralPipelineShape1733500000000 implements MigrationInterface {
  name = 'CentralPipelineShape1733500000000';

  async up(qr: QueryRunner): Promise<void> {
    const d = dialectOf(qr);
    const site = await qr.getTable('EstadoSyncGeneral');
    if (!site || site.columns.some((c) => c.name.toLowerCase() === PIPELINE_SHAPE_COLUMN)) return;
    // unbounded: a pipeline of many columns outgrows MariaDB's TEXT (64 KB)
    const type = d.name === 'mysql' ? 'longtext' : d.textType();
    await qr.addColumn(site, new TableColumn({ name: PIPELINE_SHAPE_COLUMN, type, isNullable: true }));
  }

  async down(qr: QueryRunner): Promise<void> {
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site?.columns.some((c) => c.name === PIPELINE_SHAPE_COLUMN)) await qr.dropColumn(site, PIPELINE_SHAPE_COLUMN);
  }
}
