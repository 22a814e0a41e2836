import type { ColumnSpec, WireValue } from '@sitesync/protocol';
import type { Dialect, DialectName } from './dialects';

/** A column of an existing table as the catalogue spells its type (see `Dialect.columnTypes`). */
export interface LiveColumnType {
  name: string;
  /** The full SQL type, lowercase: `varchar(20)`, `decimal(38,10)`, `timestamp with time zone`, `nvarchar(max)`. */
  sqlType: string;
  nullable: boolean;
  isKey: boolean;
  /** The column's own collation (MariaDB, SQL Server; PostgreSQL only where not its type's default). */
  collation: string | null;
  /** Its character set (MariaDB). */
  charset: string | null;
  hasDefault: boolean;
}

/** The row `Dialect.columnTypes` returns for a column. */
export interface ColumnTypeRow {
  name: string;
  type: string;
  len?: unknown;
  prec?: unknown;
  scale?: unknown;
  nullable: unknown;
  is_key: unknown;
  coll: string | null;
  charset?: string | null;
  dflt: unknown;
}

type Family = 'text' | 'binary' | 'decimal' | 'integer' | 'float' | 'timestamp' | 'timestamptz' | 'date' | 'other';

/** What a SQL type can hold, as far as widening and value checks need to know. */
interface SqlTypeInfo {
  family: Family;
  /** char(n)/binary(n): pads its values, so it is never altered here. */
  fixed?: boolean;
  /** Most characters (text) it holds; undefined with `bytes` undefined: unbounded. */
  chars?: number;
  /** Most bytes (binary, or text types bounded in bytes, such as MariaDB's TEXT). */
  bytes?: number;
  /** Decimal: digits in all and after the point; precision undefined: unconstrained (PostgreSQL NUMERIC). */
  precision?: number;
  scale?: number;
  /** Integer: its size in bytes. */
  intBytes?: number;
  /** Timestamps: digits of a second's fraction it keeps. */
  fraction?: number;
}

/** How an existing column takes a site's column. */
export type ColumnFit =
  /** Every value of the site's column fits as it is (or the column is not one this check knows). */
  | { fit: 'holds' }
  /** Same family, narrower: altered in place to `type`, which loses nothing. */
  | { fit: 'widen'; type: string }
  /** Narrower and not altered automatically (another family, a key column, a limit of the server): `cost` says what it changes or refuses. */
  | { fit: 'narrow'; cost: string; suggested?: string };

const MYSQL_TEXT_BYTES: Record<string, number | undefined> = {
  tinytext: 255,
  text: 65_535,
  mediumtext: 16_777_215,
  longtext: undefined,
};
const MYSQL_BLOB_BYTES: Record<string, number | undefined> = {
  tinyblob: 255,
  blob: 65_535,
  mediumblob: 16_777_215,
  longblob: undefined,
};
const INT_BYTES: Record<string, number> = { tinyint: 1, smallint: 2, mediumint: 3, int: 4, integer: 4, bigint: 8 };
/** Most digits (precision, scale) each server's DECIMAL takes. */
const DECIMAL_LIMITS: Record<DialectName, { precision: number; scale: number }> = {
  mysql: { precision: 65, scale: 30 },
  mssql: { precision: 38, scale: 38 },
  postgres: { precision: 1000, scale: 1000 },
  sqlite: { precision: Infinity, scale: Infinity },
};

/** A column type row of the catalogue as a {@link LiveColumnType}. */
export function liveColumnType(r: ColumnTypeRow, dialect: DialectName): LiveColumnType {
  let sqlType = r.type.toLowerCase().trim();
  if (dialect === 'mssql') sqlType = mssqlTypeName(sqlType, Number(r.len), Number(r.prec), Number(r.scale));
  const dflt = r.dflt;
  return {
    name: r.name,
    sqlType,
    nullable: truthy(r.nullable),
    isKey: truthy(r.is_key),
    collation: r.coll ?? null,
    charset: r.charset ?? null,
    // MariaDB spells "no default" of a nullable column as the text NULL
    hasDefault:
      typeof dflt === 'boolean' ? dflt : typeof dflt === 'number' ? dflt !== 0 : dflt != null && dflt !== 'NULL',
  };
}

function truthy(v: unknown): boolean {
  return v === true || v === 'YES' || v === 't' || Number(v) === 1;
}

/** SQL Server's sys.columns parts as the type one would declare: `nvarchar(20)`, `nvarchar(max)`, `decimal(38,10)`. */
function mssqlTypeName(name: string, len: number, prec: number, scale: number): string {
  if (/^(n?varchar|n?char|varbinary|binary)$/.test(name)) {
    if (len === -1) return `${name}(max)`;
    return `${name}(${name.startsWith('n') ? len / 2 : len})`;
  }
  if (name === 'decimal' || name === 'numeric') return `${name}(${prec},${scale})`;
  if (name === 'datetime2' || name === 'datetimeoffset' || name === 'time') return `${name}(${scale})`;
  if (name === 'float') return prec <= 24 ? 'real' : 'float(53)';
  return name;
}

/** What `sqlType` (lowercase, as the catalogue or `columnType` spells it) holds on `dialect`. */
export function sqlTypeInfo(sqlType: string, dialect: DialectName): SqlTypeInfo {
  const t = sqlType
    .toLowerCase()
    .replace(/\s+character set .*$|\s+collate .*$/, '')
    .trim();
  const args = /\(([^)]*)\)/
    .exec(t)?.[1]
    ?.split(',')
    .map((s) => s.trim());
  const n = args?.[0] === 'max' ? undefined : args?.[0] !== undefined ? Number(args[0]) : undefined;
  const base = t.replace(/\s*\([^)]*\)/, '');
  if (dialect === 'mysql' && base === 'tinyint' && n === 1) return { family: 'other' };
  if (/\bunsigned\b/.test(base)) return { family: 'other' };
  switch (base) {
    case 'varchar':
    case 'nvarchar':
    case 'character varying':
      // SQL Server's varchar counts bytes; nvarchar and the others count characters
      return dialect === 'mssql' && base === 'varchar' ? { family: 'text', bytes: n } : { family: 'text', chars: n };
    case 'char':
    case 'nchar':
    case 'character':
      return { family: 'text', fixed: true, chars: n ?? 1 };
    case 'text':
      if (dialect === 'mysql') return { family: 'text', bytes: MYSQL_TEXT_BYTES.text };
      return { family: 'text', ...(dialect === 'mssql' ? { fixed: true } : {}) };
    case 'tinytext':
    case 'mediumtext':
    case 'longtext':
      return { family: 'text', bytes: MYSQL_TEXT_BYTES[base] };
    case 'ntext':
      return { family: 'text', fixed: true };
    case 'varbinary':
      return { family: 'binary', bytes: n };
    case 'binary':
      return { family: 'binary', fixed: true, bytes: n ?? 1 };
    case 'tinyblob':
    case 'blob':
    case 'mediumblob':
    case 'longblob':
      return { family: 'binary', bytes: MYSQL_BLOB_BYTES[base] };
    case 'bytea':
    case 'image':
      return { family: 'binary' };
    case 'decimal':
    case 'numeric':
      if (args === undefined)
        return dialect === 'postgres'
          ? { family: 'decimal' }
          : { family: 'decimal', precision: dialect === 'mysql' ? 10 : 18, scale: 0 };
      return { family: 'decimal', precision: n, scale: Number(args[1] ?? 0) };
    case 'tinyint':
    case 'smallint':
    case 'mediumint':
    case 'int':
    case 'integer':
    case 'bigint':
      return { family: 'integer', intBytes: INT_BYTES[base] };
    case 'double':
    case 'double precision':
    case 'float':
    case 'real':
      return { family: 'float' };
    case 'date':
      return { family: 'date' };
    case 'datetime':
      // SQL Server's datetime keeps 1/300 s: not a digit count, so left as it is
      return dialect === 'mssql' ? { family: 'other' } : { family: 'timestamp', fraction: n ?? 0 };
    case 'datetime2':
      return { family: 'timestamp', fraction: n ?? 7 };
    case 'datetimeoffset':
      return { family: 'timestamptz', fraction: n ?? 7 };
    case 'timestamp':
      // MariaDB's TIMESTAMP is an instant; PostgreSQL's plain `timestamp` a wall clock
      return dialect === 'mysql'
        ? { family: 'timestamptz', fraction: n ?? 0 }
        : { family: 'timestamp', fraction: n ?? 6 };
    case 'timestamp without time zone':
      return { family: 'timestamp', fraction: n ?? 6 };
    case 'timestamp with time zone':
    case 'timestamptz':
      return { family: 'timestamptz', fraction: n ?? 6 };
    default:
      return { family: 'other' };
  }
}

/** Bytes one character takes at most in a MariaDB character set (1 for single-byte sets). */
function bytesPerChar(charset: string | null): number {
  const c = (charset ?? 'utf8mb4').toLowerCase();
  if (c === 'utf8mb4' || c === 'utf16' || c === 'utf32') return 4;
  if (c === 'utf8' || c === 'utf8mb3') return 3;
  if (c === 'ucs2') return 2;
  return 1;
}

/** Characters a text type holds for sure; undefined: unbounded. */
function charCapacity(info: SqlTypeInfo, live: LiveColumnType | undefined, dialect: DialectName): number | undefined {
  if (info.chars !== undefined) return info.chars;
  if (info.bytes === undefined) return undefined;
  if (dialect === 'mssql') return /utf8/i.test(live?.collation ?? '') ? Math.floor(info.bytes / 4) : info.bytes;
  return Math.floor(info.bytes / bytesPerChar(live?.charset ?? null));
}

/** The site's column as this dialect's own type for it, and that type's info. */
function siteType(d: Dialect, site: ColumnSpec, isKey: boolean): { type: string; info: SqlTypeInfo } {
  const type = d.columnType(site, isKey);
  return { type, info: sqlTypeInfo(type, d.name) };
}

function siteFamily(site: ColumnSpec): Family | 'boolean' | 'time' | 'uuid' | undefined {
  switch (site.kind ?? (site.type === 'text' || site.type === 'binary' ? site.type : undefined)) {
    case 'text':
      return 'text';
    case 'binary':
      return 'binary';
    case 'decimal':
      return 'decimal';
    case 'int64':
      return 'integer';
    case 'float64':
      return 'float';
    case 'timestamp':
      return 'timestamp';
    case 'timestamptz':
      return 'timestamptz';
    case 'date':
      return 'date';
    default:
      return site.type === 'integer' ? 'integer' : undefined;
  }
}

/**
 * How the existing column `live` takes the site's column `site`: it holds every value, or it is
 * narrower within the same family and can be widened in place to the returned type (text and
 * binary to a longer or unbounded type, a decimal to enough integer digits and scale, an integer
 * to BIGINT, a timestamp to more fractional digits), or it is narrower in a way the central does
 * not change by itself (another family, a key column, a column with a default on MariaDB, a
 * server's limit), with what that costs. SQLite's types enforce nothing: there every column holds.
 */
export function columnFit(d: Dialect, live: LiveColumnType, site: ColumnSpec): ColumnFit {
  if (d.name === 'sqlite') return { fit: 'holds' };
  const want = siteFamily(site);
  if (!want) return { fit: 'holds' };
  const info = sqlTypeInfo(live.sqlType, d.name);
  if (info.family === 'other') return { fit: 'holds' };
  const wanted = siteType(d, site, live.isKey);
  const sameFamily =
    info.family === want || (d.name === 'mysql' && want === 'timestamptz' && info.family === 'timestamp');
  if (!sameFamily) return crossFamily(d, live, info, site, want, wanted.type);
  let target: string | undefined;
  let cost = '';
  switch (info.family) {
    case 'text':
    case 'binary': {
      const need = site.length;
      const have = info.family === 'text' ? charCapacity(info, live, d.name) : info.bytes;
      if (have === undefined || (need !== undefined && have >= need)) return { fit: 'holds' };
      target = wanted.type;
      cost =
        info.family === 'text'
          ? `a text longer than ${have} characters${info.bytes !== undefined ? ` (${info.bytes} bytes)` : ''} is refused`
          : `a binary value longer than ${have} bytes is refused`;
      break;
    }
    case 'decimal': {
      if (info.precision === undefined) return { fit: 'holds' };
      const lim = DECIMAL_LIMITS[d.name];
      const liveInt = info.precision - (info.scale ?? 0);
      const liveScale = info.scale ?? 0;
      if (site.precision === undefined) {
        // unconstrained at the site: PostgreSQL's NUMERIC holds it; elsewhere the widest this server's pick allows
        const pick = sqlTypeInfo(wanted.type, d.name);
        if (pick.precision === undefined) target = wanted.type;
        else {
          const i = Math.max(liveInt, pick.precision - (pick.scale ?? 0));
          const s = Math.max(liveScale, pick.scale ?? 0);
          if (i === liveInt && s === liveScale) return { fit: 'holds' };
          target = i + s <= lim.precision && s <= lim.scale ? decimalType(d, i + s, s) : undefined;
        }
      } else {
        const siteScale = site.scale ?? 0;
        const i = Math.max(liveInt, site.precision - siteScale);
        const s = Math.max(liveScale, siteScale);
        if (i === liveInt && s === liveScale) return { fit: 'holds' };
        target = i + s <= lim.precision && s <= lim.scale ? decimalType(d, i + s, s) : undefined;
      }
      cost = `a decimal with more than ${liveScale} decimals or ${liveInt} integer digits is refused (stored, it would be rounded or refused by the server)`;
      break;
    }
    case 'integer':
      if ((info.intBytes ?? 8) >= 8) return { fit: 'holds' };
      target = d.bigintType().toUpperCase();
      cost = `an integer beyond ±2^${(info.intBytes ?? 4) * 8 - 1} is refused`;
      break;
    case 'timestamp':
    case 'timestamptz': {
      const pick = wanted.info;
      if (info.fraction === undefined || pick.fraction === undefined || info.fraction >= pick.fraction)
        return { fit: 'holds' };
      target = wanted.type;
      cost = `a time with more than ${info.fraction} fractional digits of a second is refused (stored, it would be rounded)`;
      break;
    }
    default:
      return { fit: 'holds' };
  }
  if (info.fixed)
    return {
      fit: 'narrow',
      cost: `${cost}; a fixed-length ${live.sqlType} pads its values, so it is not altered automatically`,
      suggested: target,
    };
  if (!target)
    return { fit: 'narrow', cost: `${cost}; the site's ${describeSite(site)} is wider than ${d.name} allows` };
  if (live.isKey)
    return { fit: 'narrow', cost: `${cost}; a key column is not altered automatically`, suggested: target };
  if (d.name === 'mysql' && live.hasDefault)
    return {
      fit: 'narrow',
      cost: `${cost}; a column with a DEFAULT is not altered automatically (MODIFY would drop it)`,
      suggested: target,
    };
  return { fit: 'widen', type: target };
}

function decimalType(d: Dialect, precision: number, scale: number): string {
  return `${d.name === 'postgres' ? 'NUMERIC' : 'DECIMAL'}(${precision}, ${scale})`;
}

/** `double`, `decimal(12,4)`, `text(20)`: the site's column type for messages. */
export function describeSite(site: ColumnSpec): string {
  const kind = site.kind ?? site.type;
  if (kind === 'decimal' && site.precision !== undefined) return `decimal(${site.precision},${site.scale ?? 0})`;
  if (kind === 'float64') return 'double';
  if (kind === 'timestamp') return 'timestamp (wall clock, no time zone)';
  if ((kind === 'text' || kind === 'binary') && site.length !== undefined) return `${kind}(${site.length})`;
  return kind;
}

function crossFamily(
  d: Dialect,
  live: LiveColumnType,
  info: SqlTypeInfo,
  site: ColumnSpec,
  want: NonNullable<ReturnType<typeof siteFamily>>,
  suggested: string,
): ColumnFit {
  if (want === 'float' && info.family === 'decimal') {
    if (info.precision === undefined) {
      return {
        fit: 'narrow',
        cost: `a negative zero is refused (NUMERIC has none); every other double is kept as its exact shortest decimal, but reports read it as NUMERIC`,
        suggested,
      };
    }
    const s = info.scale ?? 0;
    return {
      fit: 'narrow',
      cost:
        `a double with more than ${s} decimals (0.30000000000000004), one beyond ${info.precision - s} integer digits, ` +
        `a negative zero, NaN and the infinities are refused (stored, they would be rounded to ${s} decimals or refused by the server)`,
      suggested,
    };
  }
  if (want === 'timestamp' && info.family === 'timestamptz') {
    return {
      fit: 'narrow',
      cost:
        `a wall-clock time is stored as an instant, read through the session's time zone: a report in another zone sees it shifted, ` +
        `and a time inside a daylight-saving gap of the central's session zone would be moved`,
      suggested,
    };
  }
  if (want === 'date' && (info.family === 'timestamptz' || info.family === 'timestamp')) {
    return {
      fit: 'narrow',
      cost:
        `a date is stored as its midnight: reports read a timestamp, not a date` +
        (info.family === 'timestamptz' ? `, and in another time zone a midnight of the day before or after` : ''),
      suggested,
    };
  }
  if (want === 'integer' && info.family === 'decimal') return { fit: 'holds' };
  if (want === 'decimal' && info.family === 'integer' && (site.scale ?? 0) === 0) return { fit: 'holds' };
  return {
    fit: 'narrow',
    cost: `the column is ${live.sqlType} where the site's is ${describeSite(site)}: values are converted by the server`,
    suggested,
  };
}

/**
 * Why `v` (a wire value of the site's column `site`) would not be stored exactly in the existing
 * column `live`, or undefined: a text or binary value longer than it holds, a decimal or double with
 * more decimals or integer digits, a negative zero in a DECIMAL, an integer beyond its range, a time
 * with more fractional digits. Only for a column `columnFit` did not find to hold.
 */
export function narrowValue(d: Dialect, live: LiveColumnType, v: WireValue): string | undefined {
  if (v === null || typeof v === 'boolean') return undefined;
  const info = sqlTypeInfo(live.sqlType, d.name);
  const col = `the central column's ${live.sqlType}`;
  switch (info.family) {
    case 'text': {
      if (typeof v !== 'string') return undefined;
      const chars = charCapacity(info, live, d.name);
      if (chars === undefined || v.length <= chars) return undefined;
      if (d.name === 'mssql') return `a text of ${v.length} characters, more than ${col} holds`;
      if (info.bytes !== undefined && d.name === 'mysql') {
        const bytes = bytesPerChar(live.charset) === 1 ? [...v].length : Buffer.byteLength(v, 'utf8');
        return bytes > info.bytes ? `a text of ${bytes} bytes, more than ${col} holds (${info.bytes})` : undefined;
      }
      const n = [...v].length;
      return n > chars ? `a text of ${n} characters, more than ${col} holds` : undefined;
    }
    case 'binary': {
      if (typeof v !== 'string' || info.bytes === undefined || !v.startsWith('base64:')) return undefined;
      const b64 = v.slice('base64:'.length);
      const bytes = Math.floor((b64.length * 3) / 4) - (b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0);
      return bytes > info.bytes ? `a binary value of ${bytes} bytes, more than ${col} holds` : undefined;
    }
    case 'decimal': {
      const text = typeof v === 'number' ? String(v) : v;
      if (text === '-0' || Object.is(v, -0)) return `a negative zero, which ${col} stores as 0`;
      if (text === 'NaN' || text === 'Infinity' || text === '-Infinity')
        return d.name === 'postgres' ? undefined : `${text}, which ${col} cannot hold`;
      const digits = decimalDigits(text);
      if (!digits || info.precision === undefined) return undefined;
      const scale = info.scale ?? 0;
      if (digits.fraction > scale) return `${text}, which ${col} would round to ${scale} decimals`;
      if (digits.integer > info.precision - scale)
        return `${text}, beyond the ${info.precision - scale} integer digits of ${col}`;
      return undefined;
    }
    case 'integer': {
      const bits = (info.intBytes ?? 8) * 8 - 1;
      if (bits >= 63 || (typeof v !== 'number' && !/^-?\d+$/.test(v))) return undefined;
      const n = BigInt(v);
      const max = 2n ** BigInt(bits);
      return n >= max || n < -max ? `${v}, beyond the range of ${col}` : undefined;
    }
    case 'timestamp':
    case 'timestamptz': {
      if (typeof v !== 'string' || info.fraction === undefined) return undefined;
      const frac = /[T ]\d{2}:\d{2}:\d{2}\.(\d+)/.exec(v)?.[1]?.replace(/0+$/, '') ?? '';
      return frac.length > info.fraction
        ? `${v}, which ${col} would round to ${info.fraction} fractional digits`
        : undefined;
    }
    default:
      return undefined;
  }
}

/** Significant integer digits and fraction digits of a decimal text (`1.5e-7` included); undefined if not one. */
function decimalDigits(text: string): { integer: number; fraction: number } | undefined {
  const m = /^[+-]?(\d*)(?:\.(\d*))?(?:e([+-]?\d+))?$/i.exec(text.trim());
  if (!m || (!m[1] && !m[2])) return undefined;
  const exp = Number(m[3] ?? 0);
  const all = (m[1] ?? '') + (m[2] ?? '');
  const point = (m[1] ?? '').length + exp;
  // digits left of the point, without leading zeros; right of it, without trailing zeros
  const left = point <= 0 ? '' : point >= all.length ? all + '0'.repeat(point - all.length) : all.slice(0, point);
  const right = point >= all.length ? '' : point <= 0 ? '0'.repeat(-point) + all : all.slice(point);
  return { integer: left.replace(/^0+/, '').length, fraction: right.replace(/0+$/, '').length };
}
