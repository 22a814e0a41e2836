import { parse as parseCsv } from 'csv-parse/sync';
import type { BundleFile } from './bundle-reader';

/** A scalar of an import row: JSON gives all of these, CSV gives strings and nulls. */
export type ImportValue = string | number | boolean | null;
export type ImportRow = Record<string, ImportValue>;

/** One data file of an `NNN.imports/` entry: the rows for one table. */
export interface ImportData {
  /** The file's path within the entry (`T100.csv`). */
  file: string;
  /** The table as the file names it (the file name without `.json`/`.csv`; may be `schema.table`). */
  table: string;
  format: 'json' | 'csv';
  /** Every column named by any row, in order of first appearance. */
  columns: string[];
  rows: ImportRow[];
}

/** A data file that cannot be read; the message says where. */
export class ImportFileError extends Error {
  override name = 'ImportFileError';
}

const DATA_FILE = /^(.+)\.(json|csv)$/i;

/**
 * Reads one data file. JSON: an array of objects whose values are strings, numbers, booleans or
 * null. CSV (RFC 4180): a header row of column names, then one record per row; an unquoted empty
 * field is NULL and a quoted one (`""`) the empty string, as in PostgreSQL's CSV format.
 */
export function parseImportFile(file: BundleFile): ImportData {
  if (file.path.includes('/')) throw new ImportFileError('sub-folders are not allowed in an imports entry');
  const m = DATA_FILE.exec(file.path);
  if (!m) throw new ImportFileError('a data file is <table>.json or <table>.csv');
  const format = m[2]!.toLowerCase() as 'json' | 'csv';
  const text = Buffer.from(file.data)
    .toString('utf8')
    .replace(/^\uFEFF/, '');
  const rows = format === 'json' ? jsonRows(text) : csvRows(text);
  const columns = new Set<string>();
  for (const r of rows) for (const c of Object.keys(r)) columns.add(c);
  return { file: file.path, table: m[1]!, format, columns: [...columns], rows };
}

function jsonRows(text: string): ImportRow[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new ImportFileError(`invalid JSON: ${(cause as Error).message}`);
  }
  if (!Array.isArray(data)) throw new ImportFileError('a JSON data file holds an array of row objects');
  return data.map((row: unknown, i) => {
    if (typeof row !== 'object' || row === null || Array.isArray(row))
      throw new ImportFileError(`row ${i + 1} is not an object`);
    for (const [k, v] of Object.entries(row)) {
      if (v !== null && typeof v === 'object')
        throw new ImportFileError(`row ${i + 1}, column ${k}: nested objects and arrays are not column values`);
    }
    return row as ImportRow;
  });
}

function csvRows(text: string): ImportRow[] {
  try {
    return parseCsv(text, {
      columns: (header: string[]) => {
        const seen = new Set<string>();
        for (const h of header) {
          if (!h) throw new ImportFileError('the header row has an empty column name');
          if (seen.has(h)) throw new ImportFileError(`the header row names ${h} twice`);
          seen.add(h);
        }
        return header;
      },
      skip_empty_lines: true,
      cast: (value, ctx) => (!ctx.header && !ctx.quoting && value === '' ? null : value),
    }) as ImportRow[];
  } catch (cause) {
    if (cause instanceof ImportFileError) throw cause;
    throw new ImportFileError(`invalid CSV: ${(cause as Error).message}`);
  }
}
