import { MessageRejectedError, isTransientError, type ColumnSpec, type PipelineShape } from '@sitesync/protocol';
import {
  columnFit,
  isExactComparison,
  loosenings,
  type Database,
  type KeyComparison,
  type LiveColumnType,
  type Queryable,
} from '@sitesync/db';

/** The site id column every central target table carries: several sites may share one table. */
export const SITE_COLUMN = 'id_efector';

/** A column of a target table whose collation merges keys a site keeps apart. */
export interface InexactKeyColumn {
  table: string;
  column: string;
  collation: string;
  comparison: KeyComparison;
}

/** The collation of each text column of `table`, from the catalogue (empty where every column compares exactly). */
export async function columnCollations(
  q: Queryable,
  table: string,
): Promise<Map<string, { collation: string; isKey: boolean }>> {
  const stmt = q.dialect.columnCollations(table);
  const out = new Map<string, { collation: string; isKey: boolean }>();
  if (!stmt) return out;
  for (const r of await q.query<{ name: string; coll: string; is_key: unknown }>(stmt.sql, stmt.params))
    out.set(r.name, { collation: r.coll, isKey: Number(r.is_key) === 1 });
  return out;
}

/**
 * The primary key columns of an existing table (the site column aside) whose collation merges keys
 * that the central's own key collation keeps apart: a legacy table that ignores case (or, on
 * MariaDB, trailing spaces). Empty when the table does not exist.
 */
export async function inexactKeyColumns(q: Queryable, table: string): Promise<InexactKeyColumn[]> {
  const d = q.dialect;
  const best = d.keyComparison(d.keyCollation);
  const out: InexactKeyColumn[] = [];
  for (const [column, c] of await columnCollations(q, table)) {
    if (!c.isKey || column === SITE_COLUMN) continue;
    const comparison = d.keyComparison(c.collation);
    if (loosenings(comparison, best).length) out.push({ table, column, collation: c.collation, comparison });
  }
  return out;
}

/** `lab_orders.code (collation utf8mb4_general_ci: ignores case, accents)`, for operators. */
export function describeInexactColumn(c: InexactKeyColumn): string {
  return `${c.table}.${c.column} (collation ${c.collation}: ignores ${loosenings(c.comparison).join(', ')})`;
}

/**
 * Makes sure a site's target tables (named by its `EstadoSyncGeneral` row) can take a pipeline's
 * rows: creates them and their index when missing, checks their columns and index when present.
 * Results are cached for the life of the process, so the checks run once per start.
 */
export class TargetTables {
  private readonly checked = new Map<string, Promise<void>>();
  private readonly primaryKeys = new Map<string, readonly string[]>();
  private readonly collations = new Map<string, ReadonlyMap<string, { collation: string }>>();
  /** Each ensured table's columns as its catalogue describes them (their live types). */
  private readonly liveColumns = new Map<string, ReadonlyMap<string, ColumnSpec>>();
  /** Each ensured table's columns that are narrower than the site's and stay so (see `narrowColumns`). */
  private readonly narrow = new Map<string, ReadonlyMap<string, LiveColumnType>>();

  /**
   * `onIndexError`: an index the central could not add to a table (the table is used without it).
   * `onWidened`: columns widened to the site's type (`name: old -> new`), or, with `err`, that could
   * not be (the table is used as it is, and values it cannot hold are refused).
   */
  constructor(
    private readonly db: Database,
    private readonly onIndexError: (table: string, index: string, err: unknown) => void = () => undefined,
    private readonly onWidened: (table: string, columns: string[], err?: unknown) => void = () => undefined,
  ) {}

  /** `shapeText`: the shape as JSON, when the caller has it already (the merge computes it once a batch). */
  ensure(
    headerTable: string,
    detailTable: string | null,
    shape: PipelineShape,
    shapeText = JSON.stringify(shape),
  ): Promise<void> {
    const key = `${headerTable}|${detailTable ?? ''}|${shapeText}`;
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
    this.collations.clear();
    this.liveColumns.clear();
    this.narrow.clear();
  }

  /**
   * The columns of an ensured table narrower than the site's that were not widened (another type
   * family, a key column, a server's limit, a failed ALTER), with their live types: the merge
   * checks each value for them (see `narrowValue`). Empty for a table the central created.
   */
  narrowColumns(table: string): ReadonlyMap<string, LiveColumnType> {
    return this.narrow.get(table) ?? new Map();
  }

  /**
   * The columns among `columns` of an ensured table that compare text inexactly (a legacy table's
   * case-insensitive or pad-space collation): keys equal under it are one row there.
   */
  inexactColumns(table: string, columns: readonly string[]): InexactKeyColumn[] {
    const coll = this.collations.get(table);
    if (!coll) return [];
    const out: InexactKeyColumn[] = [];
    for (const column of columns) {
      const collation = coll.get(column)?.collation;
      if (collation === undefined) continue;
      const comparison = this.db.dialect.keyComparison(collation);
      if (!isExactComparison(comparison)) out.push({ table, column, collation, comparison });
    }
    return out;
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

  /**
   * `spec` as an ensured table's column really is: a column an earlier release created from the
   * coarse type keeps that type (a site's `timestamp` in a TIMESTAMPTZ column), and a value must be
   * converted for it, not for the type the site now describes. `spec` itself for a column not seen.
   */
  liveSpec(table: string, spec: ColumnSpec): ColumnSpec {
    return this.liveColumns.get(table)?.get(spec.name) ?? spec;
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
    // Each piece is checked and created on its own, at every start, so that a crash between two of
    // them (the table and its index are separate statements, and MariaDB has no transactional DDL)
    // heals on the next batch instead of leaving the table without its index for good.
    let info = await this.db.describeTable(table);
    const existed = !!info;
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
      info = await this.db.describeTable(table);
      if (!info) throw new Error(`table ${table} could not be created`);
    }
    // A table an earlier release created keeps its narrow columns: widen those that can be without
    // loss, note the others for the merge's value check.
    if (existed && (await this.widenColumns(table, columns))) {
      info = await this.db.describeTable(table);
      if (!info) throw new Error(`table ${table} vanished while its columns were widened`);
    }
    this.primaryKeys.set(table, info.primaryKey);
    this.collations.set(table, await columnCollations(this.db, table));
    this.liveColumns.set(table, new Map(info.columns.map((c) => [c.name, c])));
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
    // The central's own index goes only on a table shaped as the central creates it: keyed by the
    // site column plus the key, with the join columns. A legacy table without that key is the
    // operator's and never got one from the central: it stays as it is. The catalogue cannot say who
    // created a table, so one the operator created with exactly that shape gets the index too.
    const index = `IX_${table}_header`.slice(0, 120);
    if (
      indexColumns.length &&
      this.keyedBy(table, key) &&
      indexColumns.every((c) => have.has(c)) &&
      !info.indexes.includes(index)
    ) {
      try {
        await this.db.query(d.createIndexIfMissing(table, index, [SITE_COLUMN, ...indexColumns]));
      } catch (err) {
        // Without it the per-header delete scans the table: slower, not wrong. A table the central
        // may not alter (a user without the right) still takes its rows; a transient error retries.
        if (isTransientError(err)) throw err;
        this.onIndexError(table, index, err);
      }
    }
  }

  /**
   * Widens in place each column of `table` narrower than the site's within its type family (see
   * `columnFit`), in one statement where the dialect allows; records the narrow columns left as
   * they are. True when a column was altered.
   */
  private async widenColumns(table: string, columns: readonly ColumnSpec[]): Promise<boolean> {
    const d = this.db.dialect;
    const types = await this.db.columnTypes(table);
    const narrow = new Map<string, LiveColumnType>();
    this.narrow.set(table, narrow);
    const widen: Array<{ live: LiveColumnType; type: string }> = [];
    for (const c of columns) {
      const live = types.get(c.name);
      if (!live) continue;
      const fit = columnFit(d, live, c);
      if (fit.fit === 'widen') widen.push({ live, type: fit.type });
      else if (fit.fit === 'narrow') narrow.set(c.name, live);
    }
    if (!widen.length) return false;
    const described = widen.map((w) => `${w.live.name}: ${w.live.sqlType} -> ${w.type}`);
    try {
      for (const sql of d.widenColumns(table, widen)) await this.db.query(sql);
    } catch (err) {
      // A view or an index on the column, or a user without ALTER: the table still takes every
      // value it can hold exactly; the others are refused by name.
      if (isTransientError(err)) throw err;
      for (const w of widen) narrow.set(w.live.name, w.live);
      this.onWidened(table, described, err);
      return false;
    }
    this.onWidened(table, described);
    return true;
  }
}
