import type { Dialect, DialectName } from './dialect';
import { MssqlDialect } from './mssql';
import { MysqlDialect } from './mysql';
import { PostgresDialect } from './postgres';
import { SqliteDialect } from './sqlite';

export * from './dialect';
export { numberPlaceholders } from './sql-text';
export { jsonRows } from './postgres';

const DIALECTS: Record<DialectName, () => Dialect> = {
  sqlite: () => new SqliteDialect(),
  postgres: () => new PostgresDialect(),
  mssql: () => new MssqlDialect(),
  mysql: () => new MysqlDialect(),
};

/** A new instance of the named dialect. */
export function dialectFor(name: DialectName): Dialect {
  return DIALECTS[name]();
}
