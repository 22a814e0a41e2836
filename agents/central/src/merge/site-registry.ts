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
