import { hashHeaders, type Database, type HeaderHashes, type ResolvedPipeline, type TableInfo } from '@sitesync/db';
import { ConfigError, SortedHashes, type ColumnSpec, type HashAlgorithm, type PipelineShape } from '@sitesync/protocol';
import { findSiteRows, SITE_COLUMN } from '@sitesync/central';

/** One side of a pipeline: how many headers and details, and a digest of every (key, hash). */
export interface SideSummary {
  headers: number;
  details: number;
  /** sha256 over the sorted lines `<header key> <row hash>`: equal digests mean equal data. */
  digest: string;
}

export interface PipelineVerification {
  pipeline: string;
  site: SideSummary;
  central: SideSummary;
  /** Header keys the site has and the central lacks. */
  missingCentrally: string[];
  /** Header keys the central has for this site and the site no longer has. */
  extraCentrally: string[];
  /** Header keys on both sides whose header or details differ. */
  different: string[];
  /** missingCentrally + extraCentrally + different, before `maxKeys` cut the lists. */
  differences: number;
}

export interface VerifyOptions {
  /** Keys listed per kind of difference (the counts are always complete). @default 50 */
  maxKeys?: number;
  /** @default 1000 */
  pageSize?: number;
}

function digestOf(hashes: Map<string, string>): string {
  return new SortedHashes(hashes).summary({ lo: null, hi: null }).digest;
}

/** What hashing a pipeline's rows needs, from a resolved pipeline (the site's file) or a shape (what a site sent). */
export interface PipelineColumns {
  name: string;
  algorithm: HashAlgorithm;
  header: { key: readonly string[]; columns: readonly string[]; specs: readonly ColumnSpec[] };
  detail: { columns: readonly string[]; joinColumns: readonly string[]; specs: readonly ColumnSpec[] } | null;
}

export function columnsOfPipeline(p: ResolvedPipeline): PipelineColumns {
  return { name: p.name, algorithm: p.config.algorithm, header: p.header, detail: p.detail };
}

/** The columns of a pipeline shape as a site sends it (in a batch, or in its first verify reply). */
export function columnsOfShape(shape: PipelineShape): PipelineColumns {
  const detail = shape.detail;
  return {
    name: shape.name,
    algorithm: shape.algorithm,
    header: { key: shape.header.key, columns: shape.header.columns.map((c) => c.name), specs: shape.header.columns },
    detail: detail
      ? {
          columns: detail.columns.map((c) => c.name),
          // the detail columns holding the header key, in header-key order
          joinColumns: shape.header.key.map((hk) => Object.entries(detail.join).find(([, h]) => h === hk)![0]),
          specs: detail.columns,
        }
      : null,
  };
}

/**
 * Reconciles one site with the central, pipeline by pipeline: every header of the site (with its
 * details, through the pipeline's hashing) against the rows the central holds for that site in the
 * pipeline's `tabla_encabezado` / `tabla_detalle`, hashed the same way. For the cut-over from the
 * legacy sync: run both, compare, then switch the legacy job off (docs/deploy.md).
 */
export async function verifySite(
  siteDb: Database,
  centralDb: Database,
  siteId: number,
  pipelines: readonly ResolvedPipeline[],
  opts: VerifyOptions = {},
): Promise<PipelineVerification[]> {
  const maxKeys = opts.maxKeys ?? 50;
  const pageSize = opts.pageSize ?? 1000;
  const rows = await findSiteRows(centralDb, siteId);
  const out: PipelineVerification[] = [];
  for (const p of pipelines) {
    const row = rows.find((r) => r.pipeline === p.name);
    if (!row) {
      throw new ConfigError(`site ${siteId} has no EstadoSyncGeneral row for pipeline ${p.name}`, 'pipeline');
    }
    const site = await hashHeaders(
      siteDb,
      { header: p.header, detail: p.detail, ...(p.config.filter ? { headerFilter: p.config.filter } : {}) },
      p.config.algorithm,
      pageSize,
    );
    const central = await centralHeaderHashes(
      centralDb,
      siteId,
      columnsOfPipeline(p),
      row.tabla_encabezado,
      row.tabla_detalle,
      pageSize,
    );
    const missingCentrally: string[] = [];
    const different: string[] = [];
    for (const [key, hash] of site.hashes) {
      const c = central.hashes.get(key);
      if (c === undefined) missingCentrally.push(key);
      else if (c !== hash) different.push(key);
    }
    const extraCentrally = [...central.hashes.keys()].filter((k) => !site.hashes.has(k));
    out.push({
      pipeline: p.name,
      site: { headers: site.hashes.size, details: site.details, digest: digestOf(site.hashes) },
      central: { headers: central.hashes.size, details: central.details, digest: digestOf(central.hashes) },
      missingCentrally: missingCentrally.sort().slice(0, maxKeys),
      extraCentrally: extraCentrally.sort().slice(0, maxKeys),
      different: different.sort().slice(0, maxKeys),
      differences: missingCentrally.length + extraCentrally.length + different.length,
    });
  }
  return out;
}

/** The central's own type of each column, to read it exactly (see `HeaderSource.dbTypes`). */
function dbTypesOf(info: TableInfo, columns: readonly string[]): string[] {
  return columns.map((c) => info.columns.find((x) => x.name === c)?.dbType ?? '');
}

/**
 * The central's copy of one site's headers in a pipeline's target tables, hashed as the site hashes
 * its own (see hashHeaders). Every column is checked against the live table first.
 */
export async function centralHeaderHashes(
  db: Database,
  siteId: number,
  p: PipelineColumns,
  headerTable: string,
  detailTable: string | null,
  pageSize = 1000,
): Promise<HeaderHashes> {
  const header = await db.describeTable(headerTable);
  // Nothing merged yet: the central holds no row of this site.
  if (!header) return { hashes: new Map(), details: 0 };
  const lacking = (have: { columns: Array<{ name: string }> }, want: readonly string[]) =>
    want.filter((c) => !have.columns.some((x) => x.name === c));
  const missing = lacking(header, p.header.columns);
  let detail = null;
  if (p.detail) {
    if (!detailTable)
      throw new ConfigError(`EstadoSyncGeneral names no tabla_detalle for pipeline ${p.name}`, 'tabla_detalle');
    const info = await db.describeTable(detailTable);
    if (info) {
      missing.push(...lacking(info, p.detail.columns).map((c) => `${detailTable}.${c}`));
      detail = {
        table: detailTable,
        joinColumns: p.detail.joinColumns,
        columns: p.detail.columns,
        specs: p.detail.specs,
        dbTypes: dbTypesOf(info, p.detail.columns),
      };
    }
  }
  if (missing.length) {
    throw new ConfigError(
      `the central tables lack column(s) ${missing.join(', ')} of pipeline ${p.name}: has this site synced since its pipeline changed?`,
      'pipeline',
    );
  }
  return hashHeaders(
    db,
    {
      header: {
        table: headerTable,
        key: p.header.key,
        columns: p.header.columns,
        specs: p.header.specs,
        dbTypes: dbTypesOf(header, p.header.columns),
      },
      detail,
      scope: { sql: `${db.dialect.quote(SITE_COLUMN)} = ?`, params: [siteId] },
    },
    p.algorithm,
    pageSize,
  );
}
