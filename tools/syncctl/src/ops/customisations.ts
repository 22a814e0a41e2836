import { isTransientError } from '@sitesync/protocol';
import type { Database, DialectName } from '@sitesync/db';

/**
 * Customisations a site (or the central team) made on the tables sitesync works with: extra
 * indexes and triggers. An upgrade may rebuild those tables (SQLite rebuilds a table to change a
 * column; a release's schema script may recreate one), which drops them silently. So the upgrade
 * records their definitions before the schema step and re-creates the missing ones after it, as
 * the legacy updater did with its `zActualizador_Scripts_Clientes` table.
 *
 * Not customisations: primary keys and unique constraints, the indexes sitesync's migrations and
 * target tables create, and sitesync's change-tracking triggers (see change-tracking.ts).
 */

export type CustomisationKind = 'index' | 'trigger';

export interface Customisation {
  kind: CustomisationKind;
  name: string;
  table: string;
  /** The statement that creates it, as the database's catalogue gives it. */
  definition: string;
}

/** Where recorded definitions are kept: created without a migration, like `sync_journal`. */
export const CUSTOMISATION_TABLE = 'sync_customisation';

/** Names sitesync gives its own indexes and triggers (migrations, TypeORM, target tables, change tracking). */
const OWN_NAME = /^(PK_|UQ_|REL_|FK_|IDX_|IX_sync_|IX_intervention_|sync_trg_|sqlite_autoindex_)/i;

export function isOwnObject(name: string, table: string): boolean {
  return OWN_NAME.test(name) || name === `IX_${table}_header`.slice(0, 120);
}

/**
 * Identifies a customisation across catalogue reads. With its table: PostgreSQL names triggers per
 * table, so two tables may each have a trigger of one name.
 */
export function customisationKey(c: Pick<Customisation, 'kind' | 'table' | 'name'>): string {
  return `${c.kind}|${c.table.toLowerCase()}|${c.name.toLowerCase()}`;
}

/** The customisations currently on `tables` (names as the catalogue spells them). */
export async function readCustomisations(db: Database, tables: readonly string[]): Promise<Customisation[]> {
  if (!tables.length) return [];
  const wanted = new Set(tables.map((t) => t.toLowerCase()));
  const all = await CATALOGUE[db.dialect.name](db);
  return all
    .filter((c) => wanted.has(c.table.toLowerCase()) && !isOwnObject(c.name, c.table))
    .sort((a, b) => a.kind.localeCompare(b.kind) || a.table.localeCompare(b.table) || a.name.localeCompare(b.name));
}

type CatalogueReader = (db: Database) => Promise<Customisation[]>;

const CATALOGUE: Record<DialectName, CatalogueReader> = {
  sqlite: readSqlite,
  postgres: readPostgres,
  mysql: readMysql,
  mssql: readMssql,
};

async function readSqlite(db: Database): Promise<Customisation[]> {
  // Indexes behind PRIMARY KEY / UNIQUE constraints have no SQL of their own.
  const rows = await db.query<{ type: string; name: string; tbl_name: string; sql: string }>(
    `SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL`,
  );
  return rows.map((r) => ({ kind: r.type as CustomisationKind, name: r.name, table: r.tbl_name, definition: r.sql }));
}

async function readPostgres(db: Database): Promise<Customisation[]> {
  const indexes = await db.query<{ name: string; table_name: string; definition: string }>(
    `SELECT ic.relname AS name, tc.relname AS table_name, pg_get_indexdef(i.indexrelid) AS definition ` +
      `FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid ` +
      `JOIN pg_namespace n ON n.oid = tc.relnamespace ` +
      `WHERE n.nspname = current_schema() AND NOT i.indisprimary ` +
      `AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`,
  );
  const triggers = await db.query<{ name: string; table_name: string; definition: string }>(
    `SELECT t.tgname AS name, c.relname AS table_name, pg_get_triggerdef(t.oid) AS definition ` +
      `FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace ` +
      `WHERE n.nspname = current_schema() AND NOT t.tgisinternal`,
  );
  return [
    ...indexes.map((r) => ({ kind: 'index' as const, name: r.name, table: r.table_name, definition: r.definition })),
    ...triggers.map((r) => ({ kind: 'trigger' as const, name: r.name, table: r.table_name, definition: r.definition })),
  ];
}

interface MysqlIndexColumn {
  table_name: string;
  index_name: string;
  non_unique: unknown;
  index_type: string;
  column_name: string;
  sub_part: unknown;
}

async function readMysql(db: Database): Promise<Customisation[]> {
  const q = (s: string) => db.dialect.quote(s);
  const cols = await db.query<MysqlIndexColumn>(
    `SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, NON_UNIQUE AS non_unique, INDEX_TYPE AS index_type, ` +
      `COLUMN_NAME AS column_name, SUB_PART AS sub_part FROM information_schema.STATISTICS ` +
      `WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY' ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
  );
  // A UNIQUE constraint is an index on MariaDB too; skip the ones declared as constraints.
  const constraints = await db.query<{ table_name: string; name: string }>(
    `SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name FROM information_schema.TABLE_CONSTRAINTS ` +
      `WHERE TABLE_SCHEMA = DATABASE() AND CONSTRAINT_TYPE IN ('UNIQUE', 'FOREIGN KEY')`,
  );
  const isConstraint = new Set(constraints.map((c) => `${c.table_name}|${c.name}`));
  const byIndex = new Map<string, MysqlIndexColumn[]>();
  for (const c of cols) {
    const key = `${c.table_name}|${c.index_name}`;
    if (isConstraint.has(key)) continue;
    byIndex.set(key, [...(byIndex.get(key) ?? []), c]);
  }
  const out: Customisation[] = [];
  for (const parts of byIndex.values()) {
    const first = parts[0]!;
    const kind = first.index_type === 'FULLTEXT' ? 'FULLTEXT ' : Number(first.non_unique) === 0 ? 'UNIQUE ' : '';
    const list = parts.map((p) => `${q(p.column_name)}${p.sub_part === null ? '' : `(${Number(p.sub_part)})`}`);
    out.push({
      kind: 'index',
      name: first.index_name,
      table: first.table_name,
      definition: `CREATE ${kind}INDEX ${q(first.index_name)} ON ${q(first.table_name)} (${list.join(', ')})`,
    });
  }
  const triggers = await db.query<{ name: string; table_name: string }>(
    `SELECT TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS table_name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()`,
  );
  for (const t of triggers) {
    const [row] = await db.query<Record<string, string>>(`SHOW CREATE TRIGGER ${q(t.name)}`);
    const sql = row?.['SQL Original Statement'];
    if (!sql) continue;
    // DEFINER names the user who created it; re-creating as that user needs SUPER, as the upgrading user it does not.
    out.push({
      kind: 'trigger',
      name: t.name,
      table: t.table_name,
      definition: sql.replace(/^CREATE\s+DEFINER\s*=\s*\S+\s+/i, 'CREATE '),
    });
  }
  return out;
}

interface MssqlIndexColumn {
  table_name: string;
  index_name: string;
  is_unique: unknown;
  type_desc: string;
  filter_definition: string | null;
  column_name: string;
  is_descending_key: unknown;
  is_included_column: unknown;
}

async function readMssql(db: Database): Promise<Customisation[]> {
  const q = (s: string) => db.dialect.quote(s);
  const cols = await db.query<MssqlIndexColumn>(
    `SELECT t.name AS table_name, i.name AS index_name, i.is_unique, i.type_desc, i.filter_definition, ` +
      `c.name AS column_name, ic.is_descending_key, ic.is_included_column ` +
      `FROM sys.indexes i JOIN sys.tables t ON t.object_id = i.object_id ` +
      `JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id ` +
      `JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id ` +
      `WHERE t.schema_id = SCHEMA_ID() AND i.type > 0 AND i.is_primary_key = 0 AND i.is_unique_constraint = 0 ` +
      `ORDER BY t.name, i.name, ic.is_included_column, ic.key_ordinal, ic.index_column_id`,
  );
  const byIndex = new Map<string, MssqlIndexColumn[]>();
  for (const c of cols) {
    const key = `${c.table_name}|${c.index_name}`;
    byIndex.set(key, [...(byIndex.get(key) ?? []), c]);
  }
  const out: Customisation[] = [];
  for (const parts of byIndex.values()) {
    const first = parts[0]!;
    const keys = parts.filter((p) => !p.is_included_column);
    const included = parts.filter((p) => p.is_included_column);
    out.push({
      kind: 'index',
      name: first.index_name,
      table: first.table_name,
      definition:
        `CREATE ${first.is_unique ? 'UNIQUE ' : ''}${first.type_desc === 'CLUSTERED' ? 'CLUSTERED' : 'NONCLUSTERED'} ` +
        `INDEX ${q(first.index_name)} ON ${q(first.table_name)} ` +
        `(${keys.map((p) => `${q(p.column_name)}${p.is_descending_key ? ' DESC' : ''}`).join(', ')})` +
        (included.length ? ` INCLUDE (${included.map((p) => q(p.column_name)).join(', ')})` : '') +
        (first.filter_definition ? ` WHERE ${first.filter_definition}` : ''),
    });
  }
  const triggers = await db.query<{ name: string; table_name: string; definition: string | null }>(
    `SELECT tr.name, t.name AS table_name, OBJECT_DEFINITION(tr.object_id) AS definition ` +
      `FROM sys.triggers tr JOIN sys.tables t ON t.object_id = tr.parent_id WHERE t.schema_id = SCHEMA_ID()`,
  );
  for (const t of triggers) {
    // OBJECT_DEFINITION is NULL for encrypted triggers: nothing to record, nothing we could restore.
    if (t.definition) out.push({ kind: 'trigger', name: t.name, table: t.table_name, definition: t.definition });
  }
  return out;
}

/** What happened to a recorded customisation after the schema step. */
export interface RestoreOutcome extends Customisation {
  /** `present`: still there; `restored`: re-created; `not-applicable`: could not be re-created (see reason). */
  outcome: 'present' | 'restored' | 'not-applicable';
  reason: string | null;
}

/**
 * Re-creates each of `recorded` that is missing now. One that no longer applies (its table or a
 * column it names is gone, or its definition fails for another reason) is reported with the
 * database's own reason, and the others are still restored: it is the operator's decision whether
 * to adapt it to the new schema.
 */
export async function restoreCustomisations(
  db: Database,
  recorded: readonly Customisation[],
): Promise<RestoreOutcome[]> {
  const tables = [...new Set(recorded.map((c) => c.table))];
  const present = new Set((await readCustomisations(db, tables)).map(customisationKey));
  const out: RestoreOutcome[] = [];
  // Indexes before triggers: a trigger's body may rely on an index for its lookups.
  for (const c of [...recorded].sort((a, b) => a.kind.localeCompare(b.kind))) {
    if (present.has(customisationKey(c))) {
      out.push({ ...c, outcome: 'present', reason: null });
      continue;
    }
    if (!(await db.describeTable(c.table))) {
      out.push({ ...c, outcome: 'not-applicable', reason: `table ${c.table} no longer exists` });
      continue;
    }
    try {
      await db.transaction((tx) => tx.runVerbatim(c.definition));
      out.push({ ...c, outcome: 'restored', reason: null });
    } catch (err) {
      // A lost connection or a deadlock says nothing about the definition: fail the step (it is
      // resumed with --continue) instead of recording the customisation as gone for good.
      if (isTransientError(err)) throw err;
      out.push({ ...c, outcome: 'not-applicable', reason: (err as Error).message });
    }
  }
  return out;
}

interface StoredRow {
  kind: string;
  name: string;
  table_name: string;
  definition: string;
  outcome: string | null;
  reason: string | null;
}

async function ensureCustomisationTable(db: Database): Promise<void> {
  const d = db.dialect;
  await db.query(
    d.createTableIfMissing(
      CUSTOMISATION_TABLE,
      [
        { name: 'run_id', type: d.textType(64), nullable: false },
        { name: 'kind', type: d.textType(10), nullable: false },
        { name: 'name', type: d.textType(255), nullable: false },
        { name: 'table_name', type: d.textType(255), nullable: false },
        { name: 'definition', type: d.textType(), nullable: false },
        { name: 'outcome', type: d.textType(20), nullable: true },
        { name: 'reason', type: d.textType(), nullable: true },
      ],
      ['run_id', 'kind', 'table_name', 'name'],
    ),
  );
}

/**
 * Keeps the definitions recorded by upgrade run `runId`, replacing what that run recorded before
 * (the recording step is repeated only when it failed), in one transaction.
 */
export async function storeCustomisations(db: Database, runId: string, list: readonly Customisation[]): Promise<void> {
  await ensureCustomisationTable(db);
  const t = db.dialect.quote(CUSTOMISATION_TABLE);
  await db.transaction(async (tx) => {
    await tx.execute(`DELETE FROM ${t} WHERE run_id = ?`, [runId]);
    for (const c of list) {
      await tx.execute(`INSERT INTO ${t} (run_id, kind, name, table_name, definition) VALUES (?, ?, ?, ?, ?)`, [
        runId,
        c.kind,
        c.name,
        c.table,
        c.definition,
      ]);
    }
  });
}

/** The definitions run `runId` recorded, with their restore outcome once known. */
export async function storedCustomisations(
  db: Database,
  runId: string,
): Promise<Array<Customisation & { outcome: RestoreOutcome['outcome'] | null; reason: string | null }>> {
  await ensureCustomisationTable(db);
  const rows = await db.query<StoredRow>(
    `SELECT kind, name, table_name, definition, outcome, reason FROM ${db.dialect.quote(CUSTOMISATION_TABLE)} ` +
      `WHERE run_id = ? ORDER BY kind, table_name, name`,
    [runId],
  );
  return rows.map((r) => ({
    kind: r.kind as CustomisationKind,
    name: r.name,
    table: r.table_name,
    definition: r.definition,
    outcome: (r.outcome as RestoreOutcome['outcome'] | null) ?? null,
    reason: r.reason ?? null,
  }));
}

/** Records how each customisation of run `runId` came through the upgrade. */
export async function storeRestoreOutcomes(
  db: Database,
  runId: string,
  outcomes: readonly RestoreOutcome[],
): Promise<void> {
  const t = db.dialect.quote(CUSTOMISATION_TABLE);
  await db.transaction(async (tx) => {
    for (const o of outcomes) {
      await tx.execute(
        `UPDATE ${t} SET outcome = ?, reason = ? WHERE run_id = ? AND kind = ? AND table_name = ? AND name = ?`,
        [o.outcome, o.reason, runId, o.kind, o.table, o.name],
      );
    }
  });
}
