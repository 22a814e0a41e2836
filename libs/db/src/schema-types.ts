import { COLUMN_TYPE_OF_KIND, type ColumnKind, type ColumnSpec } from '@sitesync/protocol';
import type { DialectName } from './dialects';

/** What the catalogue says of a column (TypeORM's `TableColumn`, or its type name alone). */
export interface CatalogColumn {
  type: string;
  length?: string | undefined;
  precision?: number | null | undefined;
  scale?: number | undefined;
}

/** A column's type as the pipeline shape carries it: the coarse `type` and the full `kind`. */
export type ColumnTypeSpec = Pick<ColumnSpec, 'type' | 'kind' | 'length' | 'precision' | 'scale'>;

/** The kind of a driver's column type name (lowercase, `tinyint(1)` with its length). */
function kindOf(t: string, dialect: DialectName | undefined): ColumnKind {
  // SQL Server's `timestamp` is rowversion: 8 opaque bytes, not a point in time.
  if (dialect === 'mssql' && (t === 'timestamp' || t === 'rowversion')) return 'binary';
  if (t === 'bit' || t.startsWith('bool') || t === 'tinyint(1)') return 'boolean';
  if (t === 'interval' || t === 'point') return 'text';
  if (t === 'uuid' || t === 'uniqueidentifier') return 'uuid';
  if (/int|serial/.test(t)) return 'int64';
  if (/numeric|decimal|money/.test(t)) return 'decimal';
  if (/real|double|float/.test(t)) return 'float64';
  if (t === 'date') return 'date';
  if (t === 'time' || t === 'time without time zone') return 'time';
  // MySQL's TIMESTAMP is stored as an instant (converted through the session's zone), like timestamptz.
  if (t === 'timestamp with time zone' || t === 'timestamptz' || t === 'datetimeoffset') return 'timestamptz';
  if (dialect === 'mysql' && t === 'timestamp') return 'timestamptz';
  // (PostgreSQL's `time with time zone` is text: a time of day with an offset has no type elsewhere)
  if (/date|time/.test(t)) return t === 'time with time zone' || t === 'timetz' ? 'text' : 'timestamp';
  if (/blob|binary|bytea|image/.test(t)) return 'binary';
  return 'text';
}

/**
 * A column's type for the pipeline shape, from the catalogue: the kind, and for text, binary and
 * decimal columns the length, precision and scale they are declared with. SQLite enforces none of
 * those (a VARCHAR(20) holds any text), so there they are left out: the central must not narrow.
 */
export function columnSpecOf(c: CatalogColumn, dialect?: DialectName): ColumnTypeSpec {
  // (a length of 1 is part of the name, as before: MySQL's TINYINT(1) is its boolean)
  const name = (c.type + (c.length === '1' ? '(1)' : '')).toLowerCase();
  const kind = kindOf(name, dialect);
  const spec: ColumnTypeSpec = { type: COLUMN_TYPE_OF_KIND[kind], kind };
  if (dialect === 'sqlite') return spec;
  const length = Number(c.length);
  if ((kind === 'text' || kind === 'binary') && Number.isInteger(length) && length > 0) spec.length = length;
  if (kind === 'decimal' && typeof c.precision === 'number' && c.precision > 0) {
    spec.precision = c.precision;
    spec.scale = c.scale ?? 0;
  }
  return spec;
}

/** Maps a driver's column type name to the wire column type. */
export function wireColumnType(dbType: string, dialect?: DialectName): ColumnSpec['type'] {
  return columnSpecOf({ type: dbType }, dialect).type;
}
