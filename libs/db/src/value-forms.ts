/**
 * Wire forms of dates and times that no driver may convert through the process's time zone.
 *
 * A timestamp without time zone travels as its wall clock written like `Date.toISOString()`
 * (`YYYY-MM-DDTHH:mm:ss.sssZ`), the form MySQL/MariaDB (driver time zone `Z`) and SQL Server
 * (tedious, UTC) sites have always sent and PostgreSQL sites sent when their agent ran in UTC, so
 * correct values keep their hashes; digits beyond the millisecond are kept when the value has them.
 * A date travels as its midnight in that form (`YYYY-MM-DDT00:00:00.000Z`) for the same reason.
 */

/**
 * PostgreSQL's ISO text of a `timestamp` (`1901-12-13 23:59:59.123`, `10000-01-01 00:00:00`,
 * `0044-03-15 00:00:00 BC`), which is also MySQL/MariaDB's text of a DATETIME (`…59.123000`).
 */
const PG_TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?( BC)?$/;

/**
 * PostgreSQL's text of a `timestamp without time zone` (or MariaDB's of a DATETIME) as its wire form
 * (see above), never through a `Date`. Years outside 1-9999 take `toISOString`'s extended form
 * (`+010000-…`, `-000043-…`); `infinity` stays as it is.
 */
export function pgTimestampToWire(text: string): string {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) return text;
  let year = m[1]!;
  if (m[6] !== undefined || year.length > 4) {
    const y = m[6] !== undefined ? 1 - Number(year) : Number(year);
    year = (y < 0 ? '-' : '+') + String(Math.abs(y)).padStart(6, '0');
  }
  return `${year}-${m[2]}-${m[3]}T${m[4]}.${wireFraction(m[5])}Z`;
}

/** PostgreSQL's (or MariaDB's) text of a `date` (`1901-12-13`) as its wire form: its midnight (see above). */
export function pgDateToWire(text: string): string {
  return pgTimestampToWire(text.endsWith(' BC') ? `${text.slice(0, -3)} 00:00:00 BC` : `${text} 00:00:00`);
}

/** A wall clock in wire form (`…T23:59:59.123456Z`) or plain (`… 23:59:59`), as MySQL/MariaDB reads a DATETIME/DATE literal. */
const ISO_WALL_CLOCK = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d:\d\d(?:\.\d+)?))?Z?$/;

/**
 * A timestamp or date wire value as MySQL/MariaDB takes it for a DATETIME or DATE column, without
 * a `Date` (which would cut it to milliseconds, and read a text without zone in the process's time
 * zone): `2024-05-02T23:59:59.123456Z` -> `2024-05-02 23:59:59.123456`. Undefined for any other
 * form (one with an offset: the caller converts that instant to UTC).
 */
export function mysqlWallClock(v: string): string | undefined {
  const m = ISO_WALL_CLOCK.exec(v);
  if (!m) return undefined;
  return m[2] === undefined ? m[1] : `${m[1]} ${m[2]}`;
}

/** PostgreSQL's ISO text of a `timestamptz`, in the session's zone: `1901-12-13 19:43:11.123456-04:16:48`. */
const PG_INSTANT =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?( BC)?$/;

/**
 * PostgreSQL's text of a `timestamp with time zone` as its wire form: the instant in UTC, written
 * like `Date.toISOString()` (the form a `Date` gave before, so millisecond values keep their hash),
 * with the digits beyond the millisecond that a `Date` would drop. Any other text (`infinity`, a
 * year a `Date` cannot hold) stays as it is.
 */
export function pgInstantToWire(text: string): string {
  const m = PG_INSTANT.exec(text);
  if (!m) return text;
  const year = m[12] !== undefined ? 1 - Number(m[1]) : Number(m[1]);
  const sign = m[8] === '-' ? -1 : 1;
  const offsetSeconds = sign * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  const t = new Date(0);
  t.setUTCFullYear(year, Number(m[2]) - 1, Number(m[3]));
  t.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]) - offsetSeconds, 0);
  if (Number.isNaN(t.getTime())) return text;
  return `${t.toISOString().slice(0, -4)}${wireFraction(m[7])}Z`;
}

/**
 * Fractional seconds as the wire keeps them: at least the milliseconds, and the digits beyond
 * only when they are not zero (`1` -> `100`, `1230000` -> `123`, `1234500` -> `12345`).
 */
function wireFraction(digits: string | undefined): string {
  return (digits ?? '').replace(/0+$/, '').padEnd(3, '0');
}

/** SQL Server's text of a `datetime2`, `datetime` or `smalldatetime` (style 121: `2024-05-02 23:59:59.1234567`). */
const MSSQL_TIMESTAMP = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d*))?$/;

/**
 * SQL Server's text of a timestamp without time zone (`CONVERT(VARCHAR, c, 121)`) as its wire form
 * (see above), never through a `Date`: `2024-05-02 23:59:59.1234500` -> `2024-05-02T23:59:59.12345Z`.
 * Any other text stays as it is.
 */
export function mssqlTimestampToWire(text: string): string {
  const m = MSSQL_TIMESTAMP.exec(text);
  return m ? `${m[1]}T${m[2]}.${wireFraction(m[3])}Z` : text;
}

/** SQL Server's text of a `date` (style 23: `0044-03-15`) as its wire form: its midnight. */
export function mssqlDateToWire(text: string): string {
  return /^\d{4}-\d\d-\d\d$/.test(text) ? `${text}T00:00:00.000Z` : text;
}

/**
 * SQL Server's text of a `time` (`23:59:59.1230000`) as the text PostgreSQL sends for a time:
 * fractional digits without trailing zeros, none at all when they are all zero (`12:00:00`).
 */
export function mssqlTimeToWire(text: string): string {
  const m = /^(\d\d:\d\d:\d\d)(?:\.(\d*))?$/.exec(text);
  if (!m) return text;
  const fraction = (m[2] ?? '').replace(/0+$/, '');
  return fraction ? `${m[1]}.${fraction}` : m[1]!;
}

/** SQL Server's text of a `datetimeoffset` (style 121: `2024-05-02 23:59:59.1234567 -03:30`). */
const MSSQL_INSTANT = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d*))? ?(?:([+-])(\d\d):(\d\d)|Z)$/;

/**
 * SQL Server's text of a `datetimeoffset` as its wire form: the instant in UTC written like
 * `Date.toISOString()`, with the digits beyond the millisecond when they are not zero (an offset
 * is whole minutes, so they never change). Years 1-9999 of the site may become year 0 or 10000 in
 * UTC: `toISOString` writes those in its extended form.
 */
export function mssqlInstantToWire(text: string): string {
  const m = MSSQL_INSTANT.exec(text);
  if (!m) return text;
  const fraction = wireFraction(m[7]);
  const offset = m[8] === undefined ? 0 : (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10]));
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]) - offset, Number(m[6]), Number(fraction.slice(0, 3)));
  return `${d.toISOString().slice(0, -4)}${fraction}Z`;
}

/**
 * SQL Server's text of a `decimal`, `numeric` (`CAST(c AS VARCHAR)`) or `money` (`CONVERT(VARCHAR,
 * c, 2)`) as the text PostgreSQL gives a numeric: every digit of the scale, and a zero before the
 * point (`-.5000` -> `-0.5000`, should the server leave it out).
 */
export function mssqlDecimalToWire(text: string): string {
  return text.replace(/^(-?)\./, '$10.');
}

/** A wall clock in wire form (`…T23:59:59.1234567Z`, `…T23:59:59`), as SQL Server reads it for a DATETIME2, DATETIME or DATE. */
const WIRE_WALL_CLOCK = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?Z?$/;

/**
 * A timestamp or date wire value as SQL Server takes it, as text and without a `Date` (which the
 * mssql driver sends as a DATETIME: milliseconds rounded to 1/300 s):
 * - `timestamp` (and an unknown kind): the wall clock in ISO 8601 without zone,
 *   `2024-05-02T23:59:59.123` or with up to 7 fractional digits when the value has them (three
 *   digits for millisecond values, so a legacy DATETIME column converts them too);
 * - `date`: `2024-05-02` for a midnight, else as for a timestamp;
 * - `timestamptz`: that wall clock as UTC (`…+00:00`), for a DATETIMEOFFSET column.
 * ISO 8601 with a `T` is read the same under every language and DATEFORMAT setting. Undefined for any
 * other form (an offset other than `Z`, a year outside 1-9999: the caller decides).
 */
export function mssqlDateTimeParam(
  v: string,
  kind: 'date' | 'timestamp' | 'timestamptz' | undefined,
): string | undefined {
  const m = WIRE_WALL_CLOCK.exec(v);
  if (!m) return undefined;
  const fraction = wireFraction(m[3]);
  if (kind === 'date' && m[2] === '00:00:00' && /^0+$/.test(fraction)) return m[1];
  const wall = `${m[1]}T${m[2]}.${fraction}`;
  return kind === 'timestamptz' ? `${wall}+00:00` : wall;
}
