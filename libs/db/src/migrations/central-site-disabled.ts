import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import { dialectOf } from './column-types';

/** The `EstadoSyncGeneral` column set while an operator has disabled the site (`syncctl sites disable`). */
export const SITE_DISABLED_AT_COLUMN = 'disabled_at';

/**
 * A site can be disabled without being removed: `disabled_at` on each of its `EstadoSyncGeneral`
 * rows (nullable, so the hospitals' reports and their inserts keep working). While it is set, the
 * central dead-letters every message of the site as `site-disabled`.
 */
export class CentralSiteDisabled1733700000000 implements MigrationInterface {
  name = 'CentralSiteDisabled1733700000000';

  async up(qr: QueryRunner): Promise<void> {
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site && !site.columns.some((c) => c.name.toLowerCase() === SITE_DISABLED_AT_COLUMN)) {
      await qr.addColumn(
        site,
        new TableColumn({ name: SITE_DISABLED_AT_COLUMN, type: dialectOf(qr).timestampType(), isNullable: true }),
      );
    }
  }

  async down(qr: QueryRunner): Promise<void> {
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site?.columns.some((c) => c.name === SITE_DISABLED_AT_COLUMN))
      await qr.dropColumn(site, SITE_DISABLED_AT_COLUMN);
  }
}
