import type { ColumnSpec } from '@sitesync/protocol';
import type { DialectName } from './dialect';

/** Maps a driver's column type name to the wire column type. */
export function wireColumnType(dbType: string, dialect?: DialectName): ColumnSpec['type'] {
  const t = dbType.toLowerCase();
  // SQL Server's `timestamp` is rowversion: 8 opaque bytes, not a point in time.
  if (dialect === 'mssql' && (t === 'timestamp' || t === 'rowversion')) return 'binary';
  if (t === 'bit' || t.startsWith('bool') || t === 'tinyint(1)') return 'boolean';
  if (t === 'interval' || t === 'point') return 'text';
  if (/int|serial/.test(t)) return 'integer';
  if (/real|double|float|numeric|decimal|money/.test(t)) return 'number';
  if (/date|time/.test(t)) return 'timestamp';
  if (/blob|binary|bytea|image/.test(t)) return 'binary';
  return 'text';
}
