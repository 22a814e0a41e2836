import { ConfigError } from '@sitesync/protocol';
import type { Queryable } from '@sitesync/db';

/** One row of `EstadoSyncGeneral`: a site's pipeline, its target tables and sync state. */
export interface SiteRow {
  id_efector: number;
  pipeline: string;
  tabla_encabezado: string;
  tabla_detalle: string | null;
  broker_user: string | null;
  last_version: number | null;
}

export const SITE_TABLE = 'EstadoSyncGeneral';

export async function findSiteRow(q: Queryable, siteId: number, pipeline: string): Promise<SiteRow | undefined> {
  const rows = await q.query<SiteRow>(
    `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, last_version FROM ${q.dialect.quote(SITE_TABLE)} ` +
      `WHERE id_efector = ? AND pipeline = ?`,
    [siteId, pipeline],
  );
  const r = rows[0];
  return r ? { ...r, last_version: r.last_version === null ? null : Number(r.last_version) } : undefined;
}

export async function findSiteRows(q: Queryable, siteId: number): Promise<SiteRow[]> {
  return q.query<SiteRow>(
    `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, last_version FROM ${q.dialect.quote(SITE_TABLE)} WHERE id_efector = ?`,
    [siteId],
  );
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
}

/** Adds a site's `EstadoSyncGeneral` row (what `syncctl sites add` does); refuses a duplicate. */
export async function registerSite(q: Queryable, r: SiteRegistration): Promise<Required<SiteRegistration>> {
  const full = {
    siteId: r.siteId,
    pipeline: r.pipeline ?? 'main',
    headerTable: r.headerTable,
    detailTable: r.detailTable ?? null,
    brokerUser: r.brokerUser ?? `site-${r.siteId}`,
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
  await q.execute(
    `INSERT INTO ${t} (id_efector, pipeline, tabla_encabezado, tabla_detalle, broker_user, status, header_count, detail_count, deletion_count) ` +
      `VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0)`,
    [full.siteId, full.pipeline, full.headerTable, full.detailTable, full.brokerUser, 'new'],
  );
  return full;
}
