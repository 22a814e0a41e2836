import { TableColumn, type MigrationInterface, type QueryRunner } from 'typeorm';
import type { Dialect } from '../dialects';
import { dialectOf } from './column-types';

/** The central's own columns that hold a site's keys, with their type (see CentralInit). */
const KEY_COLUMNS: ReadonlyArray<{ table: string; column: string; length: number }> = [
  { table: 'sync_ledger', column: 'header_key', length: 400 },
];

/** The `EstadoSyncGeneral` column that records an operator's `--accept-case-insensitive-keys`. */
export const INEXACT_KEYS_ACCEPTED_COLUMN = 'inexact_keys_accepted';

/** The statements that give the central's own key columns the dialect's binary key collation. */
export function exactKeyStatements(d: Dialect): string[] {
  return KEY_COLUMNS.flatMap((k) => d.exactKeyColumn(k.table, k.column, d.textType(k.length)));
}

/**
 * Keys compare exactly in the central's own tables: the ledger's `header_key` gets the binary key
 * collation on MariaDB and SQL Server (their defaults ignore case, so the ledger lookup of `["ABC"]`
 * found `["abc"]`). PostgreSQL and SQLite compare exactly already. Also adds the column that records
 * a site whose legacy target tables the operator accepted with case-insensitive keys.
 */
export class CentralExactKeys1733400000000 implements MigrationInterface {
  name = 'CentralExactKeys1733400000000';

  async up(qr: QueryRunner): Promise<void> {
    const d = dialectOf(qr);
    for (const sql of exactKeyStatements(d)) await qr.query(sql);
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site && !site.columns.some((c) => c.name.toLowerCase() === INEXACT_KEYS_ACCEPTED_COLUMN)) {
      await qr.addColumn(
        site,
        new TableColumn({
          name: INEXACT_KEYS_ACCEPTED_COLUMN,
          type: d.booleanType(),
          isNullable: true,
        }),
      );
    }
  }

  async down(qr: QueryRunner): Promise<void> {
    // The collation stays: a finer comparison holds every key the coarser one did.
    const site = await qr.getTable('EstadoSyncGeneral');
    if (site?.columns.some((c) => c.name === INEXACT_KEYS_ACCEPTED_COLUMN))
      await qr.dropColumn(site, INEXACT_KEYS_ACCEPTED_COLUMN);
  }
}
