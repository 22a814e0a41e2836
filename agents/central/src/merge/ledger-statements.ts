import { jsonRows, type Dialect, type Statement } from '@sitesync/db';

/**
 * The version-guarded upsert of ledger rows: `rows` are [siteId, pipeline, headerKey, version, hash, deleted].
 * A newer version wins; within one version a deletion wins over an upsert (a row deleted while its
 * session was scanning is sent twice: first as an upsert, then as a deletion).
 */
export interface LedgerUpsert {
  table: string;
  rows: ReadonlyArray<readonly [number, string, string, number, string | null, boolean]>;
}

const LEDGER_COLUMNS = ['id_efector', 'pipeline', 'header_key', 'version', 'row_hash', 'deleted', 'updated_at'];

/**
 * True when `upsertLedger`'s statement returns the rows it wrote (`header_key`, `deleted`): the
 * changes this batch won, without a second query.
 */
export function ledgerReturnsWinners(d: Dialect): boolean {
  return d.name === 'sqlite' || d.name === 'postgres';
}

/** The statement that writes `u` into the ledger, in `d`'s form (see {@link LedgerUpsert}). */
export function upsertLedger(d: Dialect, u: LedgerUpsert): Statement {
  switch (d.name) {
    case 'sqlite':
      return onConflictLedger(d, u);
    case 'postgres':
      return postgresLedger(d, u);
    case 'mssql':
      return mergeLedger(d, u);
    case 'mysql':
      return duplicateKeyLedger(d, u);
  }
}

/**
 * SQLite and PostgreSQL: `ON CONFLICT DO UPDATE ... WHERE older`, returning the rows written
 * (inserted, or updated because this version is newer): exactly the changes the batch won.
 */
function ledgerConflict(d: Dialect, table: string): string {
  const t = d.quote(table);
  return (
    `ON CONFLICT (id_efector, pipeline, header_key) DO UPDATE SET ` +
    `version = excluded.version, row_hash = excluded.row_hash, deleted = excluded.deleted, updated_at = excluded.updated_at ` +
    `WHERE ${t}.version < excluded.version OR (${t}.version = excluded.version AND excluded.deleted = ${d.boolLiteral(true)} AND ${t}.deleted = ${d.boolLiteral(false)}) ` +
    `RETURNING header_key, deleted`
  );
}

function onConflictLedger(d: Dialect, u: LedgerUpsert): Statement {
  const now = d.now(); // one time for the statement's rows, not a Date per row
  const ins = d.insertRows(
    u.table,
    LEDGER_COLUMNS,
    u.rows.map((r) => [r[0], r[1], r[2], r[3], r[4], d.bool(r[5]), now]),
  );
  return { sql: `${ins.sql} ${ledgerConflict(d, u.table)}`, params: ins.params };
}

/** PostgreSQL: the rows of one site and pipeline in one statement, whatever their number (see `writeMany`). */
function postgresLedger(d: Dialect, u: LedgerUpsert): Statement {
  const first = u.rows[0];
  if (!first || u.rows.some((r) => r[0] !== first[0] || r[1] !== first[1])) return onConflictLedger(d, u);
  const cols = LEDGER_COLUMNS.map((c) => d.quote(c)).join(', ');
  const json = jsonRows(u.rows.map((r) => [r[2], r[3], r[4], r[5]]));
  const rows =
    json === undefined
      ? 'unnest(?::text[], ?::bigint[], ?::text[], ?::boolean[]) AS u(k, v, h, d)'
      : `(SELECT r->>0 AS k, (r->>1)::bigint AS v, r->>2 AS h, (r->>3)::boolean AS d FROM jsonb_array_elements(?::jsonb) AS r) AS u`;
  return {
    sql:
      `INSERT INTO ${d.quote(u.table)} (${cols}) ` +
      `SELECT ?::integer, ?::text, k, v, h, d, ?::timestamptz FROM ${rows} ` +
      ledgerConflict(d, u.table),
    params: [
      first[0],
      first[1],
      d.now(),
      ...(json === undefined
        ? [u.rows.map((r) => r[2]), u.rows.map((r) => r[3]), u.rows.map((r) => r[4]), u.rows.map((r) => r[5])]
        : [json]),
    ],
  };
}

/** SQL Server: MERGE WITH (HOLDLOCK): without it concurrent MERGEs on one key deadlock or hit duplicate keys. */
function mergeLedger(d: Dialect, u: LedgerUpsert): Statement {
  const cols = LEDGER_COLUMNS;
  const tuple = `(${cols.map(() => '?').join(', ')})`;
  const now = d.now();
  return {
    sql:
      `MERGE ${d.quote(u.table)} WITH (HOLDLOCK) AS t USING (VALUES ${u.rows.map(() => tuple).join(', ')}) ` +
      `AS s (${cols.join(', ')}) ON t.id_efector = s.id_efector AND t.pipeline = s.pipeline AND t.header_key = s.header_key ` +
      `WHEN MATCHED AND (t.version < s.version OR (t.version = s.version AND s.deleted = 1 AND t.deleted = 0)) THEN UPDATE SET version = s.version, row_hash = s.row_hash, deleted = s.deleted, updated_at = s.updated_at ` +
      `WHEN NOT MATCHED THEN INSERT (${cols.join(', ')}) VALUES (${cols.map((c) => `s.${c}`).join(', ')});`,
    params: u.rows.flatMap((r) => [r[0], r[1], r[2], r[3], r[4], r[5], now]),
  };
}

/** MariaDB/MySQL: ON DUPLICATE KEY UPDATE evaluates left to right, so `version` is assigned last. */
function duplicateKeyLedger(d: Dialect, u: LedgerUpsert): Statement {
  const now = d.now();
  const ins = d.insertRows(
    u.table,
    LEDGER_COLUMNS,
    u.rows.map((r) => [r[0], r[1], r[2], r[3], r[4], d.bool(r[5]), now]),
  );
  const newer = '(version < VALUES(version) OR (version = VALUES(version) AND VALUES(deleted) = 1 AND deleted = 0))';
  return {
    sql:
      `${ins.sql} ON DUPLICATE KEY UPDATE row_hash = IF(${newer}, VALUES(row_hash), row_hash), ` +
      `deleted = IF(${newer}, VALUES(deleted), deleted), updated_at = IF(${newer}, VALUES(updated_at), updated_at), ` +
      `version = IF(${newer}, VALUES(version), version)`,
    params: ins.params,
  };
}
