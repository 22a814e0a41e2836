import { ConfigError } from '@sitesync/protocol';
import {
  INEXACT_KEYS_ACCEPTED_COLUMN,
  SITE_DISABLED_AT_COLUMN,
  SITE_TABLE,
  TOMBSTONE_FLOOR_COLUMN,
  type Queryable,
} from '@sitesync/db';
import { describeInexactColumn, inexactKeyColumns, type InexactKeyColumn } from './target-tables';

/** One row of `EstadoSyncGeneral`: a site's pipeline, its target tables and sync state. */
export interface SiteRow {
  id_efector: number;
  pipeline: string;
  tabla_encabezado: string;
  tabla_detalle: string | null;
  broker_user: string | null;
  last_version: number | null;
  /** The newest version among this pipeline's purged tombstones (see retention); null: none purged. */
  tombstone_floor: number | null;
  /** Set while the site is disabled (`syncctl sites disable`): its messages are dead-lettered as `site-disabled`. */
  disabled_at: unknown;
}

const SITE_ROW_COLUMNS =
  `id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, last_version, ` +
  `${TOMBSTONE_FLOOR_COLUMN}, ${SITE_DISABLED_AT_COLUMN}`;

/** Versions come back as strings where the column is BIGINT (PostgreSQL, MariaDB). */
function siteRowOf(r: SiteRow): SiteRow {
  const num = (v: number | null) => (v === null ? null : Number(v));
  return { ...r, last_version: num(r.last_version), tombstone_floor: num(r.tombstone_floor) };
}

export async function findSiteRows(q: Queryable, siteId: number): Promise<SiteRow[]> {
  const rows = await q.query<SiteRow>(
    `SELECT ${SITE_ROW_COLUMNS} FROM ${q.dialect.quote(SITE_TABLE)} WHERE id_efector = ?`,
    [siteId],
  );
  return rows.map(siteRowOf);
}

/** True when the site is disabled: any of its rows has `disabled_at` set (disable and enable set them all). */
export function isSiteDisabled(rows: ReadonlyArray<Pick<SiteRow, 'disabled_at'>>): boolean {
  return rows.some((r) => r.disabled_at !== null && r.disabled_at !== undefined);
}

/**
 * Disables or enables a site: sets or clears `disabled_at` on all its rows. Returns how many rows
 * changed state; throws a ConfigError when the site has no row. The central reads the flag on every
 * message, so the change takes effect at the next message without a restart.
 */
export async function setSiteDisabled(q: Queryable, siteId: number, disabled: boolean): Promise<number> {
  const t = q.dialect.quote(SITE_TABLE);
  const c = q.dialect.quote(SITE_DISABLED_AT_COLUMN);
  const rows = await q.query(`SELECT id_efector FROM ${t} WHERE id_efector = ?`, [siteId]);
  if (!rows.length)
    throw new ConfigError(`site ${siteId} is not registered at the central (no EstadoSyncGeneral row)`, 'siteId');
  return disabled
    ? q.execute(`UPDATE ${t} SET ${c} = ? WHERE id_efector = ? AND ${c} IS NULL`, [q.dialect.now(), siteId])
    : q.execute(`UPDATE ${t} SET ${c} = NULL WHERE id_efector = ? AND ${c} IS NOT NULL`, [siteId]);
}

/** The broker user allowed to speak for a site: its row's `broker_user`, else `site-<id>`. */
export function expectedUser(row: Pick<SiteRow, 'broker_user' | 'id_efector'>): string {
  return row.broker_user ?? `site-${row.id_efector}`;
}

export interface SiteRegistration {
  siteId: number;
  /** @default 'main' */
  pipeline?: string;
  headerTable: string;
  detailTable?: string | null;
  /** Broker user that publishes for the site. @default `site-<id>` */
  brokerUser?: string;
  /**
   * Registers the site although an existing target table's key columns ignore case or trailing
   * spaces (recorded in the row's `inexact_keys_accepted`, which `db check` honours): keys of the
   * site that are one key there are refused batch by batch. @default false
   */
  acceptInexactKeys?: boolean;
}

/** Adds a site's `EstadoSyncGeneral` row (what `syncctl sites add` does); refuses a duplicate. */
export async function registerSite(q: Queryable, r: SiteRegistration): Promise<Required<SiteRegistration>> {
  const full = {
    siteId: r.siteId,
    pipeline: r.pipeline ?? 'main',
    headerTable: r.headerTable,
    detailTable: r.detailTable ?? null,
    brokerUser: r.brokerUser ?? `site-${r.siteId}`,
    acceptInexactKeys: r.acceptInexactKeys ?? false,
  };
  for (const [key, name] of [
    ['headerTable', full.headerTable],
    ['detailTable', full.detailTable],
  ] as const) {
    if (name !== null && !/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) {
      throw new ConfigError(`${key}: ${JSON.stringify(name)} is not a table name (letters, digits and _ only)`, key);
    }
  }
  const t = q.dialect.quote(SITE_TABLE);
  const exists = await q.query(`SELECT id_efector FROM ${t} WHERE id_efector = ? AND pipeline = ?`, [
    full.siteId,
    full.pipeline,
  ]);
  if (exists.length) throw new ConfigError(`site ${full.siteId} pipeline ${full.pipeline} already exists`, 'siteId');
  const inexact = await checkTargetKeys(q, full);
  // Recorded only when it mattered: a central not yet migrated has no such column.
  const accepted = inexact.length ? `, ${q.dialect.quote(INEXACT_KEYS_ACCEPTED_COLUMN)}` : '';
  await q.execute(
    `INSERT INTO ${t} (id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, status, header_count, detail_count, deletion_count${accepted}) ` +
      `VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0${accepted ? ', ?' : ''})`,
    [
      full.siteId,
      full.pipeline,
      full.headerTable,
      full.detailTable,
      full.brokerUser,
      'new',
      ...(accepted ? [q.dialect.bool(true)] : []),
    ],
  );
  return full;
}

/**
 * The existing target tables' key columns that would merge keys a site keeps apart ('abc', 'ABC',
 * 'abc '); refused with a ConfigError naming each unless `acceptInexactKeys`.
 */
export async function checkTargetKeys(
  q: Queryable,
  r: Pick<SiteRegistration, 'headerTable' | 'detailTable' | 'acceptInexactKeys'>,
): Promise<InexactKeyColumn[]> {
  const inexact: InexactKeyColumn[] = [];
  for (const table of [r.headerTable, r.detailTable]) if (table) inexact.push(...(await inexactKeyColumns(q, table)));
  if (inexact.length && !r.acceptInexactKeys) {
    throw new ConfigError(
      `existing target table key column(s) ${inexact.map(describeInexactColumn).join(', ')} would merge keys ` +
        `the site keeps apart ('abc', 'ABC'): give them a binary collation (${q.dialect.keyCollation}), ` +
        `or accept that batches with such keys are refused (--accept-case-insensitive-keys)`,
      'headerTable',
    );
  }
  return inexact;
}
