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
  return `${year}-${m[2]}-${m[3]}T${m[4]}.${fraction(m[5])}Z`;
}

/** Fractional-second digits as the wire writes them: at least three, no trailing zero beyond. */
function fraction(digits: string | undefined): string {
  return (digits ?? '').replace(/0+$/, '').padEnd(3, '0');
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
  return `${t.toISOString().slice(0, -4)}${fraction(m[7])}Z`;
}
