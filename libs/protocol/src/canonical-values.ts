import type { ColumnSpec } from './sync-messages';
import type { WireValue, WireValues } from './hashing';

/**
 * A value as its column type means it, whatever the driver returned: the central may store a
 * site's INT as BIGINT (read back as a string) or a DECIMAL as NUMERIC, and both sides must compare
 * equal when the data is. Used by `syncctl verify` (direct and over the broker) and by the site
 * agent answering a verify request, so that both ends hash identically.
 */
export function canonicalValue(v: WireValue, type: ColumnSpec['type'] | undefined): WireValue {
  if (v === null) return null;
  switch (type) {
    case 'integer':
    case 'number': {
      const n = typeof v === 'number' ? v : Number(v);
      return typeof v !== 'boolean' && v !== '' && Number.isFinite(n) && (type === 'number' || Number.isSafeInteger(n))
        ? n
        : v;
    }
    case 'boolean':
      return v === true || v === 1 || v === '1' || v === 'true';
    case 'timestamp': {
      const d = new Date(String(v));
      return Number.isNaN(d.getTime()) ? v : d.toISOString();
    }
    default:
      return v;
  }
}

/** A row's values (in the specs' order) in the one form both sides of a verify compare. */
export function canonicalRow(row: WireValues, specs: readonly ColumnSpec[]): WireValues {
  return row.map((v, i) => canonicalValue(v, specs[i]?.type));
}
