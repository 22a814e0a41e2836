import type { ColumnSpec } from '@sitesync/protocol';
import type { Database } from '@sitesync/db';
import type { SqlEffect, TableName } from './sql-effects';

/** A column as the bundle checks know it; `type` null when only its name is known (created by the bundle). */
export interface ModelColumn {
  name: string;
  type: ColumnSpec['type'] | null;
  nullable: boolean;
}

/** A table as it will be at some point of the bundle: live now, or created by an earlier entry. */
export interface ModelTable {
  name: string;
  /** null: the bundle changed it in a way the checks cannot follow; its imports are checked when they run. */
  columns: ModelColumn[] | null;
  primaryKey: string[] | null;
  /** The table exists now (before the bundle), under `name`. */
  live: boolean;
}

/** Live table shapes that are not in the database yet (sitesync's own tables a dry run would create). */
export type TableOverlay = ReadonlyArray<Omit<ModelTable, 'live'>>;

/**
 * The tables of the target database as the bundle's entries change them, statement by statement:
 * starts from the live schema (read lazily) and follows CREATE, DROP, ALTER and RENAME, so that an
 * import is checked against the table as it will be when the import runs.
 */
export class SchemaModel {
  /** lower-case name -> table, or null once dropped. */
  private readonly changed = new Map<string, ModelTable | null>();
  private readonly described = new Map<string, ModelTable | undefined>();
  private readonly rowCounts = new Map<string, number>();

  private constructor(
    private readonly db: Database,
    private readonly liveNames: ReadonlyMap<string, string>,
    private readonly overlay: ReadonlyMap<string, Omit<ModelTable, 'live'>>,
  ) {}

  static async load(db: Database, overlay: TableOverlay = []): Promise<SchemaModel> {
    const names = new Map((await db.tableNames()).map((n) => [n.toLowerCase(), n]));
    return new SchemaModel(db, names, new Map(overlay.map((t) => [t.name.toLowerCase(), t])));
  }

  /** The key of a name as written: `dbo.T100` finds T100 when dbo is the current schema. */
  private key(name: TableName): string {
    const full = name.join('.').toLowerCase();
    const last = name[name.length - 1]!.toLowerCase();
    if (this.changed.has(full) || this.liveNames.has(full) || this.overlay.has(full)) return full;
    return last;
  }

  /** The table `name` names at this point of the bundle, or undefined when there is none. */
  async table(name: TableName | string): Promise<ModelTable | undefined> {
    const k = this.key(typeof name === 'string' ? name.split('.') : name);
    if (this.changed.has(k)) return this.changed.get(k) ?? undefined;
    return this.liveTable(k);
  }

  private async liveTable(k: string): Promise<ModelTable | undefined> {
    const liveName = this.liveNames.get(k);
    if (!liveName) {
      const o = this.overlay.get(k);
      return o ? { ...o, live: false } : undefined;
    }
    if (!this.described.has(k)) {
      const info = await this.db.describeTable(liveName);
      this.described.set(
        k,
        info && {
          name: liveName,
          columns: info.columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable })),
          primaryKey: info.primaryKey,
          live: true,
        },
      );
    }
    return this.described.get(k);
  }

  /** Rows a live table holds now (0 for a table that does not exist yet). */
  async liveRows(name: TableName): Promise<{ table: string; rows: number } | undefined> {
    const k = this.key(name);
    const liveName = this.liveNames.get(k);
    if (!liveName) return undefined;
    if (!this.rowCounts.has(k)) {
      const q = liveName
        .split('.')
        .map((p) => this.db.dialect.quote(p))
        .join('.');
      const [row] = await this.db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${q}`);
      this.rowCounts.set(k, Number(row?.n ?? 0));
    }
    return { table: liveName, rows: this.rowCounts.get(k)! };
  }

  /** Whether the table `name` exists now, before anything of the bundle ran (for the two-bundle rule). */
  existsNow(name: TableName): boolean {
    return this.liveNames.has(this.key(name));
  }

  /** Follows one statement's effect on the tables. */
  async apply(e: SqlEffect): Promise<void> {
    switch (e.kind) {
      case 'create-table': {
        if (e.ifNotExists && (await this.table(e.table))) return;
        const name = e.table[e.table.length - 1]!;
        this.changed.set(this.key(e.table), {
          name,
          columns: e.columns && e.columns.map((c) => ({ name: c, type: null, nullable: true })),
          primaryKey: e.columns ? e.primaryKey : null,
          live: false,
        });
        return;
      }
      case 'drop-table':
        this.changed.set(this.key(e.table), null);
        return;
      case 'rename-table': {
        const t = await this.table(e.table);
        this.changed.set(this.key(e.table), null);
        if (t) this.changed.set(this.key(e.to), { ...t, name: e.to[e.to.length - 1]!, live: false });
        return;
      }
      case 'alter-table':
        return this.alter(e);
      default:
        return;
    }
  }

  private async alter(e: Extract<SqlEffect, { kind: 'alter-table' }>): Promise<void> {
    const t = await this.table(e.table);
    if (!t) return;
    let columns = t.columns && [...t.columns];
    let primaryKey = t.primaryKey;
    if (columns) {
      const dropped = new Set(e.dropColumns.map((c) => c.toLowerCase()));
      columns = columns.filter((c) => !dropped.has(c.name.toLowerCase()));
      const renamed = (name: string) =>
        e.renameColumns.find(([from]) => from.toLowerCase() === name.toLowerCase())?.[1] ?? name;
      columns = columns.map((c) => ({ ...c, name: renamed(c.name) }));
      primaryKey = primaryKey && primaryKey.map(renamed);
      for (const c of e.addColumns) columns.push({ name: c, type: null, nullable: true });
      if (e.unknownActions) {
        columns = null;
        primaryKey = null;
      }
    }
    const changed: ModelTable = { ...t, columns, primaryKey, live: false };
    if (e.renameTo) {
      this.changed.set(this.key(e.table), null);
      this.changed.set(this.key(e.renameTo), { ...changed, name: e.renameTo[e.renameTo.length - 1]! });
    } else this.changed.set(this.key(e.table), changed);
  }
}
