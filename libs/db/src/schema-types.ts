import type { ColumnSpec } from '@sitesync/protocol';

/** Maps a driver's column type name to the wire column type. */
export function wireColumnType(dbType: string): ColumnSpec['type'] {
  const t = dbType.toLowerCase();
  if (t === 'bit' || t.startsWith('bool') || t === 'tinyint(1)') return 'boolean';
  if (/int|serial/.test(t)) return 'integer';
  if (/real|double|float|numeric|decimal|money/.test(t)) return 'number';
  if (/date|time/.test(t) && !t.includes('interval')) return 'timestamp';
  if (/blob|binary|bytea|image/.test(t)) return 'binary';
  return 'text';
}
