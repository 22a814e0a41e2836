import { PipelineShapeSchema, type ColumnSpec } from '@sitesync/protocol';
import {
  columnFit,
  describeSite,
  INEXACT_KEYS_ACCEPTED_COLUMN,
  PIPELINE_SHAPE_COLUMN,
  type Database,
  SITE_TABLE,
} from '@sitesync/db';
import { describeInexactColumn, inexactKeyColumns, SITE_COLUMN } from '@sitesync/central';
import { CheckContext, checkOrphans, hasColumn, unique, type CheckOptions, type Finding } from './check-context';
import { checkForeignKeys, checkStuckInterventions } from './shared-checks';

/**
 * A central database's pre-checks: every site it refers to has its `EstadoSyncGeneral` row, and the
 * target tables those rows name exist, hold no orphans, compare keys exactly and are wide enough.
 */

/** What a central check needs besides its database. */
export interface CentralCheckInput {
  /** Sites that must have an `EstadoSyncGeneral` row besides those the database refers to. @default [] */
  sites?: readonly number[];
}

/** Checks a central database: its sites' rows, their target tables, interventions. */
export async function checkCentralDatabase(
  db: Database,
  central: CentralCheckInput = {},
  opts: CheckOptions = {},
): Promise<Finding[]> {
  const ctx = new CheckContext(db, opts);
  await checkSiteRows(ctx, central.sites ?? []);
  await checkTargetTables(ctx);
  await checkForeignKeys(ctx);
  await checkStuckInterventions(ctx, 'central');
  return ctx.findings;
}

interface SiteRowRef {
  id_efector: unknown;
  pipeline: string;
  tabla_encabezado: string;
  tabla_detalle: string | null;
  last_version: unknown;
  /** `sites add --accept-case-insensitive-keys` (null where the column is not there yet). */
  inexact_keys_accepted: unknown;
  /** The pipeline shape (JSON) the site last sent (null before its first batch since it was recorded). */
  pipeline_shape: string | null;
}

async function siteRows(ctx: CheckContext): Promise<SiteRowRef[] | undefined> {
  const info = await ctx.table(SITE_TABLE);
  if (!info) return undefined;
  const accepted = hasColumn(info, INEXACT_KEYS_ACCEPTED_COLUMN)
    ? ctx.q(INEXACT_KEYS_ACCEPTED_COLUMN)
    : `NULL AS ${ctx.q(INEXACT_KEYS_ACCEPTED_COLUMN)}`;
  const shape = hasColumn(info, PIPELINE_SHAPE_COLUMN)
    ? ctx.q(PIPELINE_SHAPE_COLUMN)
    : `NULL AS ${ctx.q(PIPELINE_SHAPE_COLUMN)}`;
  return ctx.db.query<SiteRowRef>(
    `SELECT id_efector, pipeline, tabla_encabezado, tabla_detalle, last_version, ${accepted}, ${shape} FROM ${ctx.q(SITE_TABLE)}`,
  );
}

/**
 * Every site the central refers to (its ledger, sessions, procedure catalogue, transfer log, and
 * `--sites`) must have an `EstadoSyncGeneral` row: the merge rejects a batch from a site without
 * one, and the ledger's rows need the row of their pipeline.
 */
async function checkSiteRows(ctx: CheckContext, expected: readonly number[]): Promise<void> {
  const rows = await siteRows(ctx);
  const known = new Set((rows ?? []).map((r) => Number(r.id_efector)));
  const knownPipelines = new Set((rows ?? []).map((r) => `${Number(r.id_efector)}|${r.pipeline}`));
  const missing = new Map<string, string>();
  const note = (site: number, pipeline: string | undefined, source: string) => {
    if (pipeline === undefined ? known.has(site) : knownPipelines.has(`${site}|${pipeline}`)) return;
    const key = pipeline === undefined ? `id_efector=${site}` : `id_efector=${site}, pipeline=${pipeline}`;
    if (!missing.has(key)) missing.set(key, source);
  };
  for (const s of expected) note(s, undefined, '--sites');
  const refs: Array<[string, string, string | undefined]> = [
    ['sync_ledger', 'id_efector', 'pipeline'],
    ['sync_session', 'id_efector', undefined],
    ['site_procedure', 'id_efector', undefined],
    ['intervention_transfer', 'from_site', undefined],
    ['intervention_transfer', 'to_site', undefined],
  ];
  for (const [table, siteColumn, pipelineColumn] of refs) {
    const info = await ctx.table(table);
    if (!info || !hasColumn(info, siteColumn)) continue;
    const cols = [siteColumn, ...(pipelineColumn ? [pipelineColumn] : [])].map((c) => ctx.q(c));
    const found = await ctx.db.query<Record<string, unknown>>(
      `SELECT DISTINCT ${cols.join(', ')} FROM ${ctx.q(table)} WHERE ${cols[0]} IS NOT NULL`,
    );
    for (const r of found) {
      note(Number(r[siteColumn]), pipelineColumn ? String(r[pipelineColumn]) : undefined, table);
    }
  }
  if (!missing.size) return;
  const keys = [...missing.keys()].sort();
  ctx.add({
    kind: 'missing-site-row',
    where: SITE_TABLE,
    table: SITE_TABLE,
    columns: ['id_efector', 'pipeline'],
    problem: `${missing.size} site(s) or site pipeline(s) have no ${SITE_TABLE} row (found in ${unique([...missing.values()]).join(', ')})`,
    count: missing.size,
    keys: keys.slice(0, ctx.maxKeys),
    fix: 'add the row with `syncctl sites add <siteId> --pipeline <name> --header-table ... --detail-table ...`',
  });
}

/**
 * The target tables `EstadoSyncGeneral` names: a table a site already synced into must still
 * exist and carry the site column, and detail rows must have their header (of the same site).
 */
async function checkTargetTables(ctx: CheckContext): Promise<void> {
  const rows = await siteRows(ctx);
  if (!rows) return;
  const missing = new Map<string, string[]>(); // a gone table -> the sites that synced into it
  const noSiteColumn = new Set<string>();
  const pairs = new Map<string, { header: string; detail: string; pipeline: string }>();
  for (const r of rows) {
    for (const table of [r.tabla_encabezado, r.tabla_detalle]) {
      if (!table) continue;
      const info = await ctx.table(table);
      // Tables are created at a site's first batch: only a site that synced needs them.
      if (!info && r.last_version !== null) {
        missing.set(table, unique([...(missing.get(table) ?? []), `id_efector=${Number(r.id_efector)}`]));
      }
      if (info && !hasColumn(info, SITE_COLUMN)) noSiteColumn.add(table);
    }
    if (r.tabla_detalle) {
      pairs.set(`${r.tabla_encabezado}|${r.tabla_detalle}`, {
        header: r.tabla_encabezado,
        detail: r.tabla_detalle,
        pipeline: r.pipeline,
      });
    }
  }
  // The findings that stop an orphan check, by table.
  const stoppers = new Map<string, Finding>();
  const add = (f: Finding & { table: string }) => {
    ctx.add(f);
    stoppers.set(f.table, f);
  };
  for (const [table, sites] of missing) {
    add({
      kind: 'missing-table',
      where: table,
      table,
      columns: [],
      problem: `target table ${table}, named in ${SITE_TABLE}, is gone, although its sites already synced into it`,
      count: sites.length,
      keys: sites.slice(0, ctx.maxKeys),
      fix: `restore the table, or correct tabla_encabezado/tabla_detalle and clear last_version to have the site re-send everything`,
    });
  }
  for (const table of noSiteColumn) {
    add({
      kind: 'missing-column',
      where: table,
      table,
      columns: [SITE_COLUMN],
      problem: `target table ${table} lacks the ${SITE_COLUMN} column the merge needs`,
      count: 1,
      keys: [`${table}.${SITE_COLUMN}`],
      fix: `add ${SITE_COLUMN} (and make it part of the primary key), or name other tables in ${SITE_TABLE}`,
    });
  }
  for (const pair of pairs.values()) {
    const stopper = stoppers.get(pair.header) ?? stoppers.get(pair.detail);
    if (stopper)
      stopper.notRun = [...(stopper.notRun ?? []), `details of ${pair.detail} without their header in ${pair.header}`];
    else await checkCentralOrphans(ctx, pair);
  }
  await checkKeyCollations(ctx, rows);
  await checkColumnTypes(ctx, rows);
}

/**
 * Target table columns narrower than the site's column (by the shape each site last sent, recorded
 * in its `EstadoSyncGeneral` row): in another type family (a double in a DECIMAL, a wall clock or a
 * date in a TIMESTAMPTZ), which the central never changes by itself because reports may read the
 * column, with what it costs; and in the same family, which the central widens at its next batch
 * from that site after a start. A site that sent no batch since the shape was recorded is not checked.
 */
async function checkColumnTypes(ctx: CheckContext, rows: readonly SiteRowRef[]): Promise<void> {
  const d = ctx.db.dialect;
  const found = new Map<string, { table: string; column: string; problem: string; fix: string; sites: string[] }>();
  for (const r of rows) {
    if (!r.pipeline_shape) continue;
    let parsed;
    try {
      parsed = PipelineShapeSchema.safeParse(JSON.parse(r.pipeline_shape));
    } catch {
      continue;
    }
    if (!parsed.success) continue;
    const shape = parsed.data;
    const site = `id_efector=${Number(r.id_efector)}, pipeline=${r.pipeline}`;
    const tables: Array<[string | null, readonly ColumnSpec[]]> = [
      [r.tabla_encabezado, shape.header.columns],
      [r.tabla_detalle, shape.detail?.columns ?? []],
    ];
    for (const [table, columns] of tables) {
      if (!table || !columns.length || !(await ctx.table(table))) continue;
      const live = await ctx.db.columnTypes(table);
      for (const c of columns) {
        const l = live.get(c.name);
        if (!l) continue;
        const fit = columnFit(d, l, c);
        if (fit.fit === 'holds') continue;
        const where = `${table}.${c.name}`;
        const key = `${where}|${describeSite(c)}`;
        const seen = found.get(key);
        if (seen) {
          seen.sites.push(site);
          continue;
        }
        const alter = (type: string) => d.widenColumns(table, [{ live: l, type }]).join('; ');
        found.set(
          key,
          fit.fit === 'widen'
            ? {
                table,
                column: c.name,
                problem: `${where} is ${l.sqlType}, narrower than the site's ${describeSite(c)}: the central widens it to ${fit.type} when it next merges a batch of this pipeline after a start`,
                fix: `nothing (or restart the central agent); to do it now: ${alter(fit.type)}`,
                sites: [site],
              }
            : {
                table,
                column: c.name,
                problem: `${where} is ${l.sqlType} where the site's column is ${describeSite(c)}: ${fit.cost}`,
                fix: fit.suggested
                  ? `check the reports and jobs that read ${where}, then change its type: ${alter(fit.suggested)} (see docs/operations.md, "Changing a target column's type")`
                  : `name a target table whose column holds the site's values, or narrow the site's column`,
                sites: [site],
              },
        );
      }
    }
  }
  for (const [key, f] of found) {
    ctx.add({
      kind: 'narrow-column',
      where: key.slice(0, key.indexOf('|')),
      table: f.table,
      columns: [f.column],
      problem: f.problem,
      count: f.sites.length,
      keys: f.sites.slice(0, ctx.maxKeys),
      fix: f.fix,
    });
  }
}

/**
 * Target tables whose key columns compare text inexactly (a legacy table's case-insensitive or
 * pad-space collation): keys a site keeps apart would be one row there. A table every site row of
 * which was registered with `--accept-case-insensitive-keys` is not reported.
 */
async function checkKeyCollations(ctx: CheckContext, rows: readonly SiteRowRef[]): Promise<void> {
  const accepted = new Map<string, boolean>();
  for (const r of rows) {
    const ok = Boolean(Number(r.inexact_keys_accepted ?? 0));
    for (const table of [r.tabla_encabezado, r.tabla_detalle]) {
      if (table) accepted.set(table, (accepted.get(table) ?? true) && ok);
    }
  }
  for (const [table, ok] of accepted) {
    if (ok || !(await ctx.table(table))) continue;
    const inexact = await inexactKeyColumns(ctx.db, table);
    if (!inexact.length) continue;
    ctx.add({
      kind: 'inexact-keys',
      where: table,
      table,
      columns: inexact.map((c) => c.column),
      problem: `key columns of target table ${table} compare keys inexactly: keys a site keeps apart ('abc', 'ABC') would be one row, so batches carrying them are refused`,
      count: inexact.length,
      keys: inexact.map(describeInexactColumn).slice(0, ctx.maxKeys),
      fix:
        `give the columns a binary collation (${ctx.db.dialect.keyCollation ?? 'an exact one'}; MariaDB: ALTER TABLE ... MODIFY <column> ` +
        `<type> CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL), or accept it per site: ` +
        `UPDATE ${SITE_TABLE} SET ${INEXACT_KEYS_ACCEPTED_COLUMN} = 1 WHERE id_efector = <site> (what sites add --accept-case-insensitive-keys records)`,
    });
  }
}

/**
 * Central detail rows without their header. The join is not stored centrally, so it is taken as
 * the header's primary key (site column + header key) where the detail table has those columns.
 */
async function checkCentralOrphans(
  ctx: CheckContext,
  pair: { header: string; detail: string; pipeline: string },
): Promise<void> {
  const header = await ctx.table(pair.header);
  const detail = await ctx.table(pair.detail);
  if (!header || !detail || !header.primaryKey.includes(SITE_COLUMN)) return;
  if (!header.primaryKey.every((c) => hasColumn(detail, c))) return;
  await checkOrphans(ctx, {
    detail: detail.name,
    header: header.name,
    detailColumns: header.primaryKey,
    headerColumns: header.primaryKey,
    shown: unique([...header.primaryKey, ...detail.primaryKey]),
    pipeline: pair.pipeline,
  });
}
