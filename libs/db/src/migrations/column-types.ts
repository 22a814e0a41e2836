import { TableIndex, type QueryRunner, type Table, type TableColumnOptions } from 'typeorm';
import { dialectFor, type Dialect, type DialectName } from '../dialects';

export function dialectOf(qr: QueryRunner): Dialect {
  const t = qr.connection.options.type;
  const name: DialectName =
    t === 'better-sqlite3'
      ? 'sqlite'
      : t === 'postgres'
        ? 'postgres'
        : t === 'mssql'
          ? 'mssql'
          : t === 'mysql' || t === 'mariadb'
            ? 'mysql'
            : (() => {
                throw new Error(`unsupported database type ${t}`);
              })();
  return dialectFor(name);
}

/** Column builders that pick each dialect's type for the same meaning. */
export function columns(d: Dialect) {
  const text = (name: string, length?: number, nullable = false): TableColumnOptions => ({
    name,
    type: d.textType(length),
    isNullable: nullable,
  });
  return {
    text,
    int: (name: string, nullable = false, dflt?: number): TableColumnOptions => ({
      name,
      type: 'int',
      isNullable: nullable,
      ...(dflt !== undefined ? { default: dflt } : {}),
    }),
    bigint: (name: string, nullable = false): TableColumnOptions => ({
      name,
      type: d.bigintType(),
      isNullable: nullable,
    }),
    bool: (name: string, dflt: boolean): TableColumnOptions => ({
      name,
      type: d.booleanType(),
      isNullable: false,
      default: d.name === 'postgres' ? String(dflt) : dflt ? 1 : 0,
    }),
    ts: (name: string, nullable = true): TableColumnOptions => ({
      name,
      type: d.timestampType(),
      isNullable: nullable,
    }),
    id: (name = 'id'): TableColumnOptions => ({
      name,
      type: d.name === 'sqlite' ? 'integer' : 'int',
      isPrimary: true,
      isGenerated: true,
      generationStrategy: 'increment',
    }),
  };
}

/**
 * Creates `table`, or, where a legacy table of that name already exists (EstadoSyncGeneral at a
 * production central, LAB_SyncStatus at a site), adds only the columns it lacks, as nullable,
 * leaving its existing columns and rows alone.
 */
export async function createOrExtendTable(qr: QueryRunner, table: Table): Promise<'created' | 'extended'> {
  const existing = await qr.getTable(table.name);
  if (!existing) {
    await qr.createTable(table);
    return 'created';
  }
  const have = new Set(existing.columns.map((c) => c.name.toLowerCase()));
  for (const col of table.columns) {
    if (have.has(col.name.toLowerCase()) || col.isGenerated) continue;
    const added = col.clone();
    added.isNullable = true;
    added.isPrimary = false;
    await qr.addColumn(existing, added);
  }
  const d = dialectOf(qr);
  const q = (c: string) => d.quote(c);
  // Existing rows get the default of each added column (SQL Server leaves them NULL otherwise).
  for (const col of table.columns) {
    if (have.has(col.name.toLowerCase()) || col.isGenerated || col.default === undefined) continue;
    await qr.query(`UPDATE ${q(table.name)} SET ${q(col.name)} = ${String(col.default)} WHERE ${q(col.name)} IS NULL`);
  }
  for (const u of table.uniques) {
    // Legacy data may violate a new unique constraint: then the table works without it (a failed
    // ALTER would abort the migration's transaction on PostgreSQL, so check first).
    const cols = u.columnNames.map(q).join(', ');
    const dupes = await qr.query(`SELECT ${cols} FROM ${q(table.name)} GROUP BY ${cols} HAVING COUNT(*) > 1`);
    if (!Array.isArray(dupes) || dupes.length > 0) continue;
    // MySQL has unique indexes, not unique constraints.
    if (d.name === 'mysql')
      await qr.createIndex(table.name, new TableIndex({ name: u.name, columnNames: u.columnNames, isUnique: true }));
    else await qr.createUniqueConstraint(table.name, u);
  }
  return 'extended';
}
