import { MessageRejectedError, type ColumnSpec, type PipelineShape } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';

/** The site id column every central target table carries: several sites may share one table. */
export const SITE_COLUMN = 'id_efector';

/**
 * Makes sure a site's target tables (named by its `EstadoSyncGeneral` row) can take a pipeline's
 * rows: creates them when missing, checks their columns when present. Results are cached.
 */
export class TargetTables {
  private readonly checked = new Map<string, Promise<void>>();
  private readonly primaryKeys = new Map<string, readonly string[]>();

  constructor(private readonly db: Database) {}

  ensure(headerTable: string, detailTable: string | null, shape: PipelineShape): Promise<void> {
    const key = `${headerTable}|${detailTable ?? ''}|${JSON.stringify(shape)}`;
    let p = this.checked.get(key);
    if (!p) {
      p = this.doEnsure(headerTable, detailTable, shape);
      this.checked.set(key, p);
      p.catch(() => this.checked.delete(key));
    }
    return p;
  }

  /** Forgets what was checked (after an operator changed tables). */
  reset(): void {
    this.checked.clear();
    this.primaryKeys.clear();
  }

  /**
   * Whether an ensured table's primary key is exactly the site column plus `key`, so rows can be
   * upserted by it. A legacy table without that key takes delete + insert instead.
   */
  keyedBy(table: string, key: readonly string[]): boolean {
    const pk = this.primaryKeys.get(table);
    const want = [SITE_COLUMN, ...key];
    return !!pk && pk.length === want.length && want.every((c) => pk.includes(c));
  }

  private async doEnsure(headerTable: string, detailTable: string | null, shape: PipelineShape): Promise<void> {
    await this.ensureTable(headerTable, shape.header.columns, shape.header.key, []);
    if (shape.detail) {
      if (!detailTable) {
        throw new MessageRejectedError(
          'bad-content',
          `pipeline ${shape.name} sends details but EstadoSyncGeneral.tabla_detalle is empty for this site`,
        );
      }
      const joinCols = Object.keys(shape.detail.join);
      await this.ensureTable(detailTable, shape.detail.columns, shape.detail.key, joinCols);
    }
  }

  private async ensureTable(
    table: string,
    columns: ColumnSpec[],
    key: string[],
    indexColumns: string[],
  ): Promise<void> {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(table)) {
      throw new MessageRejectedError(
        'bad-content',
        `EstadoSyncGeneral names an invalid table ${JSON.stringify(table)}`,
      );
    }
    for (const c of columns) {
      if (c.name === SITE_COLUMN) {
        throw new MessageRejectedError('bad-content', `site column ${SITE_COLUMN} cannot be synced as a data column`);
      }
    }
    const d = this.db.dialect;
    let info = await this.db.describeTable(table);
    if (!info) {
      const defs = [
        { name: SITE_COLUMN, type: 'INT', nullable: false },
        ...columns.map((c) => ({
          name: c.name,
          type: d.columnType(c, key.includes(c.name) || indexColumns.includes(c.name)),
          nullable: c.nullable && !key.includes(c.name),
        })),
      ];
      await this.db.query(d.createTableIfMissing(table, defs, [SITE_COLUMN, ...key]));
      if (indexColumns.length) {
        await this.db.query(
          d.createIndexIfMissing(table, `IX_${table}_header`.slice(0, 120), [SITE_COLUMN, ...indexColumns]),
        );
      }
      info = await this.db.describeTable(table);
      if (!info) throw new Error(`table ${table} could not be created`);
    }
    this.primaryKeys.set(table, info.primaryKey);
    const have = new Set(info.columns.map((c) => c.name));
    if (!have.has(SITE_COLUMN)) {
      throw new MessageRejectedError('bad-content', `central table ${table} has no ${SITE_COLUMN} column`);
    }
    // A column the site added: add it here too (nullable, so existing rows stay valid).
    for (const c of columns.filter((x) => !have.has(x.name))) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(c.name)) {
        throw new MessageRejectedError(
          'bad-content',
          `central table ${table} lacks column ${JSON.stringify(c.name)}, which is not a plain name`,
        );
      }
      await this.db.query(`ALTER TABLE ${d.quote(table)} ADD ${d.quote(c.name)} ${d.columnType(c, false)}`);
    }
  }
}
