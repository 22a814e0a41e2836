import { dirtyTableName, TRACKING_TABLE, type Database, SITE_TABLE } from '@sitesync/db';
import type { CheckOptions } from './db-check/check-context';
import { checkCentralDatabase, type CentralCheckInput } from './db-check/central-checks';
import { checkSiteDatabase, type SiteCheckInput } from './db-check/site-checks';
import type { UpgradeTarget } from './db-upgrade';

/** sitesync's own tables at a site (site-init and interventions migrations, change tracking). */
const SITE_TABLES = [
  'LAB_SyncStatus',
  'sync_row_state',
  'sync_lock',
  'sync_counter',
  'procedure_version',
  'intervention',
  'intervention_transfer',
  TRACKING_TABLE,
];

/** sitesync's own tables at the central (central-init and interventions migrations). */
const CENTRAL_TABLES = [
  SITE_TABLE,
  'sync_inbox',
  'sync_ledger',
  'sync_session',
  'sync_rejected',
  'procedure_version',
  'intervention',
  'intervention_transfer',
  'site_procedure',
];

/** A site database: its pipelines' tables and sitesync's, checked against the peripheral config. */
export function siteUpgradeTarget(site: SiteCheckInput, checkOptions: CheckOptions = {}): UpgradeTarget {
  return {
    check: (db, foreignKeys) => checkSiteDatabase(db, site, { ...checkOptions, foreignKeys }),
    ownedTables: async () => {
      const pipelineTables = site.pipelines.flatMap((p) => [
        p.baseEntity,
        ...p.linkEntities.map((l) => (typeof l === 'string' ? l : l.entity)),
        dirtyTableName(p.name),
      ]);
      return [...new Set([...pipelineTables, ...SITE_TABLES])];
    },
  };
}

/** The central database: sitesync's tables and the target tables its sites' rows name. */
export function centralUpgradeTarget(central: CentralCheckInput = {}, checkOptions: CheckOptions = {}): UpgradeTarget {
  return {
    check: (db, foreignKeys) => checkCentralDatabase(db, central, { ...checkOptions, foreignKeys }),
    ownedTables: async (db: Database) => {
      const targets = (await db.describeTable(SITE_TABLE))
        ? await db.query<{ tabla_encabezado: string; tabla_detalle: string | null }>(
            `SELECT DISTINCT tabla_encabezado, tabla_detalle FROM ${db.dialect.quote(SITE_TABLE)}`,
          )
        : [];
      const named = targets.flatMap((t) => [t.tabla_encabezado, ...(t.tabla_detalle ? [t.tabla_detalle] : [])]);
      return [...new Set([...CENTRAL_TABLES, ...named])];
    },
  };
}
