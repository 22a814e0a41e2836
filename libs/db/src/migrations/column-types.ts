import type { QueryRunner, TableColumnOptions } from 'typeorm';
import { dialectFor, type Dialect, type DialectName } from '../dialect';

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
