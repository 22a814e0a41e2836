import { Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columns, dialectOf } from './column-types';

/**
 * Secrets the central makes for itself, such as the key that signs the dead letters it makes and
 * the replays it publishes. Only the central's database user can read or write them: a site never
 * sees this database.
 */
export class CentralSecrets1733300000000 implements MigrationInterface {
  name = 'CentralSecrets1733300000000';

  async up(qr: QueryRunner): Promise<void> {
    const c = columns(dialectOf(qr));
    await qr.createTable(
      new Table({
        name: 'sync_secret',
        columns: [{ ...c.text('name', 64), isPrimary: true }, c.text('value', 200), c.ts('created_at', false)],
      }),
      true,
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.dropTable('sync_secret', true);
  }
}
