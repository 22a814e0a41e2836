import type { MigrationInterface, QueryRunner } from 'typeorm';
import { dialectOf } from './column-types';

const INDEX = 'IX_sync_row_state_unacked';

/**
 * An index of the side table's rows still waiting for an acknowledgement. Every session with
 * change tracking reads them ("sent but not acknowledged yet"); without it that read walks every
 * row of the pipeline, which is most of a small session on a large site. Partial where the
 * dialect has partial indexes, so it stays as small as the set of pending rows.
 */
export class SiteUnackedIndex1733000000000 implements MigrationInterface {
  name = 'SiteUnackedIndex1733000000000';

  async up(qr: QueryRunner): Promise<void> {
    const d = dialectOf(qr);
    const q = (c: string) => d.quote(c);
    const on = `${q(INDEX)} ON ${q('sync_row_state')}`;
    await qr.query(
      d.name === 'mysql'
        ? `CREATE INDEX ${on} (${q('pipeline')}, ${q('pending_batch')})`
        : `CREATE INDEX ${on} (${q('pipeline')}, ${q('header_key')}) WHERE ${q('pending_batch')} IS NOT NULL`,
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    await qr.dropIndex('sync_row_state', INDEX);
  }
}
