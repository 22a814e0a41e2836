import { ConfigError, PipelineShapeSchema, type ColumnSpec, type HashingFile } from '@sitesync/protocol';
import {
  columnFit,
  describeSite,
  INEXACT_KEYS_ACCEPTED_COLUMN,
  PIPELINE_SHAPE_COLUMN,
  resolvePipeline,
  splitSqlScript,
  type Database,
  type ResolvedPipeline,
  type SqlToken,
  type TableInfo,
  SITE_TABLE,
} from '@sitesync/db';
import type { AddedForeignKey } from './upgrade-scripts';
import { describeInexactColumn, inexactKeyColumns, SITE_COLUMN } from '@sitesync/central';

/**
 * Pre-checks (`syncctl db check`, and the first step of `syncctl db upgrade`): every inconsistency
 * in a site or central database that would break an upgrade or a sync, each with the offending keys
 * and what to do about it. Read-only: nothing here writes.
 */

export type FindingKind =
  | 'missing-table'
  | 'missing-column'
  | 'invalid-pipeline'
  | 'orphan-details'
  | 'duplicate-keys'
  | 'inexact-keys'
  | 'narrow-column'
  | 'null-keys'
  | 'foreign-key'
  | 'missing-procedure'
  | 'missing-site-row'
  | 'stuck-interventions';

export interface Finding {
  kind: FindingKind;
  /** Where it was found: a table, `pipeline <name>`, `hook <name>`, ... */
  where: string;
  /** What is wrong, in a sentence. */
  problem: string;
  /** How many offending rows, keys or names in all. */
  count: number;
  /** The first offending keys or names (at most `maxKeys`), e.g. `order_id=7`. */
  keys: string[];
  /** What the operator can do about it. */
  fix: string;
}

/** Keys listed per finding. */
export const DEFAULT_MAX_KEYS = 20;
/** An intervention in transit for longer than this is reported as stuck (the central re-sends after 30 s). */
export const DEFAULT_STUCK_AFTER_SECONDS = 3600;

export interface CheckOptions {
  /** @default DEFAULT_MAX_KEYS */
  maxKeys?: number;
  /** @default DEFAULT_STUCK_AFTER_SECONDS */
  stuckAfterSeconds?: number;
  /** Foreign keys an upgrade's scripts will add; existing rows are checked against them. @default [] */
  foreignKeys?: readonly AddedForeignKey[];
  /** @default new Date() */
  now?: Date;
}

/** What a site check needs from the peripheral config. */
export interface SiteCheckInput {
  pipelines: readonly HashingFile[];
  hooks: Readonly<Partial<Record<'before' | 'legacy' | 'after', string>>>;
}

/** What a central check needs besides its database. */
export interface CentralCheckInput {
  /** Sites that must have an `EstadoSyncGeneral` row besides those the database refers to. @default [] */
  sites?: readonly number[];
}

/** Checks a site database against its peripheral config. */
export async function checkSiteDatabase(
  db: Database,
  site: SiteCheckInput,
  opts: CheckOptions = {},
): Promise<Finding[]> {
  const ctx = new CheckContext(db, opts);
  for (const cfg of site.pipelines) {
    const pipeline = await resolveForCheck(ctx, cfg);
    if (pipeline) await checkPipelineData(ctx, pipeline);
  }
  await checkForeignKeys(ctx);
  await checkHooks(ctx, site.hooks);
  await checkStuckInterventions(ctx, 'site');
  return ctx.findings;
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

/** The database, the options and the findings so far, with the catalogue lookups cached. */
class CheckContext {
  readonly findings: Finding[] = [];
  readonly maxKeys: number;
  readonly stuckAfterSeconds: number;
  readonly foreignKeys: readonly AddedForeignKey[];
  readonly now: Date;
  private readonly tables = new Map<string, Promise<TableInfo | undefined>>();

  constructor(
    readonly db: Database,
    opts: CheckOptions,
  ) {
    this.maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.stuckAfterSeconds = opts.stuckAfterSeconds ?? DEFAULT_STUCK_AFTER_SECONDS;
    this.foreignKeys = opts.foreignKeys ?? [];
    this.now = opts.now ?? new Date();
  }

  q(name: string): string {
    return this.db.dialect.quote(name);
  }

  table(name: string): Promise<TableInfo | undefined> {
    let t = this.tables.get(name);
    if (!t) {
      t = this.db.describeTable(name);
      this.tables.set(name, t);
    }
    return t;
  }

  add(f: Finding): void {
    this.findings.push(f);
  }

  /** A timestamp to compare with stored ones: SQLite keeps ISO text (see `Dialect.now`). */
  timestamp(d: Date): unknown {
    return this.db.dialect.name === 'sqlite' ? d.toISOString() : d;
  }

  /**
   * The number of rows `fromWhere` selects and the first `maxKeys` of them (`columns`, ordered by
   * them), formatted as keys.
   */
  async sample(
    fromWhere: string,
    params: readonly unknown[],
    columns: readonly string[],
    alias = '',
  ): Promise<{ count: number; keys: string[] }> {
    const d = this.db.dialect;
    const [row] = await this.db.query<{ n: unknown }>(`SELECT COUNT(*) AS n ${fromWhere}`, params);
    const count = Number(row?.n ?? 0);
    if (count === 0) return { count, keys: [] };
    const prefix = alias ? `${alias}.` : '';
    const list = columns.map((c) => `${prefix}${this.q(c)}`).join(', ');
    const rows = await this.db.query<Record<string, unknown>>(
      d.selectLimit(`${list} ${fromWhere} ORDER BY ${list}`, this.maxKeys),
      params,
    );
    return { count, keys: rows.map((r) => formatKey(r, columns)) };
  }
}

/** `order_id=7, line=2`: a row's key as the operator would type it in a WHERE clause. */
export function formatKey(row: Record<string, unknown>, columns: readonly string[]): string {
  return columns.map((c) => `${c}=${formatValue(row[c] ?? rowValueIgnoringCase(row, c))}`).join(', ');
}

/** Some drivers fold result column names (MariaDB keeps them, PostgreSQL keeps quoted ones). */
function rowValueIgnoringCase(row: Record<string, unknown>, column: string): unknown {
  const key = Object.keys(row).find((k) => k.toLowerCase() === column.toLowerCase());
  return key === undefined ? null : row[key];
}

function formatValue(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'string') return /^[\w.:-]+$/.test(v) ? v : JSON.stringify(v);
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Pipelines (site)

/**
 * Every table and column the hashing file names that the database lacks (all of them, where
 * `resolvePipeline` stops at the first), then the pipeline resolved for the data checks.
 */
async function resolveForCheck(ctx: CheckContext, cfg: HashingFile): Promise<ResolvedPipeline | undefined> {
  const where = `pipeline ${cfg.name}`;
  const missingTables: string[] = [];
  const missingColumns: string[] = [];
  const base = await ctx.table(cfg.baseEntity);
  if (!base) missingTables.push(cfg.baseEntity);
  const link = cfg.linkEntities.find((l) => typeof l !== 'string');
  const detail = link ? await ctx.table(link.entity) : undefined;
  if (link && !detail) missingTables.push(link.entity);

  const need = (info: TableInfo | undefined, table: string, column: string) => {
    if (info && !hasColumn(info, column)) missingColumns.push(`${table}.${column}`);
  };
  for (const k of cfg.key ?? []) need(base, cfg.baseEntity, k);
  if (link) {
    for (const [detailColumn, headerColumn] of Object.entries(link.join)) {
      need(detail, link.entity, detailColumn);
      need(base, cfg.baseEntity, headerColumn);
    }
    for (const k of link.key ?? []) need(detail, link.entity, k);
  }
  for (const a of cfg.attributes ?? []) {
    const dot = a.lastIndexOf('.');
    const table = dot > 0 ? a.slice(0, dot) : undefined;
    const column = dot > 0 ? a.slice(dot + 1) : a;
    if (table === cfg.baseEntity) need(base, table, column);
    else if (link && table === link.entity) need(detail, table, column);
    else if (table === undefined && base && (!link || detail)) {
      if (!hasColumn(base, column) && !(detail && hasColumn(detail, column))) missingColumns.push(column);
    }
  }

  if (missingTables.length) {
    ctx.add({
      kind: 'missing-table',
      where,
      problem: 'the hashing file names tables that do not exist',
      count: missingTables.length,
      keys: missingTables.slice(0, ctx.maxKeys),
      fix: 'create the tables (or run the legacy job that fills them), or correct baseEntity/linkEntities',
    });
  }
  if (missingColumns.length) {
    ctx.add({
      kind: 'missing-column',
      where,
      problem: 'the hashing file names columns that do not exist',
      count: missingColumns.length,
      keys: missingColumns.slice(0, ctx.maxKeys),
      fix: 'add the columns, or remove them from key/join/attributes in the hashing file',
    });
  }
  if (missingTables.length || missingColumns.length) return undefined;
  try {
    return await resolvePipeline(ctx.db, cfg, where);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    ctx.add({
      kind: 'invalid-pipeline',
      where,
      problem: err.message,
      count: 1,
      keys: [],
      fix: 'correct the hashing file (see docs/architecture.md for its keys)',
    });
    return undefined;
  }
}

function hasColumn(info: TableInfo, column: string): boolean {
  return info.columns.some((c) => c.name === column);
}

/** Orphan details, duplicate and null keys in a pipeline's tables. */
async function checkPipelineData(ctx: CheckContext, p: ResolvedPipeline): Promise<void> {
  await checkKeys(ctx, p.header.table, p.header.key, `pipeline ${p.name} header`);
  if (!p.detail) return;
  await checkKeys(ctx, p.detail.table, p.detail.key, `pipeline ${p.name} detail`);
  await checkOrphans(ctx, {
    detail: p.detail.table,
    header: p.header.table,
    detailColumns: p.detail.joinColumns,
    headerColumns: p.header.key,
    shown: unique([...p.detail.key, ...p.detail.joinColumns]),
    pipeline: p.name,
  });
}

async function checkKeys(ctx: CheckContext, table: string, key: readonly string[], role: string): Promise<void> {
  const t = ctx.q(table);
  const cols = key.map((c) => ctx.q(c));
  const nulls = await ctx.sample(`FROM ${t} WHERE ${cols.map((c) => `${c} IS NULL`).join(' OR ')}`, [], key);
  if (nulls.count) {
    ctx.add({
      kind: 'null-keys',
      where: table,
      problem: `${nulls.count} row(s) of the ${role} have a NULL in the key (${key.join(', ')}); they cannot be sent`,
      count: nulls.count,
      keys: nulls.keys,
      fix: `fill the key of those rows or delete them: SELECT * FROM ${table} WHERE ${key.map((c) => `${c} IS NULL`).join(' OR ')}`,
    });
  }
  // Grouped in a derived table so the count and the sample read the same set.
  const grouped =
    `FROM (SELECT ${cols.join(', ')}, COUNT(*) AS ${ctx.q('copies')} FROM ${t} ` +
    `WHERE ${cols.map((c) => `${c} IS NOT NULL`).join(' AND ')} GROUP BY ${cols.join(', ')} HAVING COUNT(*) > 1) dup`;
  const dups = await ctx.sample(grouped, [], [...key, 'copies']);
  if (dups.count) {
    ctx.add({
      kind: 'duplicate-keys',
      where: table,
      problem: `${dups.count} key(s) of the ${role} (${key.join(', ')}) appear on more than one row`,
      count: dups.count,
      keys: dups.keys,
      fix: `keep one row per key (or correct "key" in the hashing file), then add a primary key or unique index on (${key.join(', ')})`,
    });
  }
}

interface OrphanCheck {
  detail: string;
  header: string;
  /** Detail columns that hold the header key, in the order of `headerColumns`. */
  detailColumns: readonly string[];
  headerColumns: readonly string[];
  /** Detail columns shown for each orphan. */
  shown: readonly string[];
  pipeline: string;
}

async function checkOrphans(ctx: CheckContext, o: OrphanCheck): Promise<void> {
  const join = o.detailColumns.map((c, i) => `h.${ctx.q(o.headerColumns[i]!)} = x.${ctx.q(c)}`).join(' AND ');
  const fromWhere = `FROM ${ctx.q(o.detail)} x WHERE NOT EXISTS (SELECT 1 FROM ${ctx.q(o.header)} h WHERE ${join})`;
  const orphans = await ctx.sample(fromWhere, [], o.shown, 'x');
  if (!orphans.count) return;
  ctx.add({
    kind: 'orphan-details',
    where: o.detail,
    problem: `${orphans.count} detail row(s) of pipeline ${o.pipeline} have no header in ${o.header}`,
    count: orphans.count,
    keys: orphans.keys,
    fix: `restore the missing headers in ${o.header}, or delete the orphan rows from ${o.detail}`,
  });
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

// ---------------------------------------------------------------------------------------------
// Foreign keys the upgrade adds

async function checkForeignKeys(ctx: CheckContext): Promise<void> {
  for (const fk of ctx.foreignKeys) {
    const child = await ctx.table(fk.table);
    const parent = await ctx.table(fk.referencedTable);
    // A table the upgrade creates holds no rows that could violate the key yet.
    if (!child || !parent) continue;
    const cols = fk.columns.map((c) => liveColumn(child, c));
    const refCols = fk.referencedColumns.map((c) => liveColumn(parent, c));
    if (cols.includes(undefined) || refCols.includes(undefined)) continue;
    const childCols = cols as string[];
    const join = childCols.map((c, i) => `p.${ctx.q(refCols[i]!)} = x.${ctx.q(c)}`).join(' AND ');
    const fromWhere =
      `FROM ${ctx.q(child.name)} x WHERE ${childCols.map((c) => `x.${ctx.q(c)} IS NOT NULL`).join(' AND ')} ` +
      `AND NOT EXISTS (SELECT 1 FROM ${ctx.q(parent.name)} p WHERE ${join})`;
    const shown = unique([...child.primaryKey, ...childCols]);
    const bad = await ctx.sample(fromWhere, [], shown, 'x');
    if (!bad.count) continue;
    const key = `${child.name} (${childCols.join(', ')}) REFERENCES ${parent.name} (${refCols.join(', ')})`;
    ctx.add({
      kind: 'foreign-key',
      where: child.name,
      problem: `${bad.count} row(s) violate FOREIGN KEY ${key}, which ${fk.script} adds`,
      count: bad.count,
      keys: bad.keys,
      fix: `add the missing rows to ${parent.name}, or correct or delete those rows of ${child.name}`,
    });
  }
}

/** The live spelling of a column named in a script (unquoted names are case-insensitive). */
function liveColumn(info: TableInfo, name: string): string | undefined {
  return (
    info.columns.find((c) => c.name === name)?.name ??
    info.columns.find((c) => c.name.toLowerCase() === name.toLowerCase())?.name
  );
}

// ---------------------------------------------------------------------------------------------
// Hooks (site)

/** A routine a hook calls, as written: `dbo.sp_sync` is `['dbo', 'sp_sync']`. */
interface CalledRoutine {
  parts: string[];
  /** Quoted names keep their case on PostgreSQL. */
  quoted: boolean;
}

async function checkHooks(ctx: CheckContext, hooks: SiteCheckInput['hooks']): Promise<void> {
  for (const [name, sql] of Object.entries(hooks)) {
    if (!sql) continue;
    const missing: string[] = [];
    for (const routine of calledRoutines(sql, ctx.db.dialect.name)) {
      if (!(await routineExists(ctx, routine))) missing.push(routine.parts.join('.'));
    }
    if (!missing.length) continue;
    const sqlite = ctx.db.dialect.name === 'sqlite';
    ctx.add({
      kind: 'missing-procedure',
      where: `hook ${name}`,
      problem: sqlite
        ? `the hook calls procedures, which SQLite does not have: ${sql}`
        : `the hook calls procedures that do not exist: ${sql}`,
      count: missing.length,
      keys: missing.slice(0, ctx.maxKeys),
      fix: `create the procedures in the site database, or correct hooks.${name} in the site config`,
    });
  }
}

/** The routines a hook's SQL calls: `EXEC[UTE] name`, `CALL name`, and on PostgreSQL `SELECT name(...)`. */
export function calledRoutines(sql: string, dialect: Database['dialect']['name']): CalledRoutine[] {
  let statements;
  try {
    statements = splitSqlScript(sql, dialect);
  } catch {
    return []; // An unreadable hook fails the session with the database's own message.
  }
  const out: CalledRoutine[] = [];
  for (const { tokens } of statements) {
    for (let i = 0; i < tokens.length; i++) {
      const word = tokens[i]!.kind === 'word' ? tokens[i]!.value.toUpperCase() : '';
      let at = i + 1;
      if (word === 'EXEC' || word === 'EXECUTE') {
        // EXEC @rc = dbo.p: the return-value variable comes first.
        if (tokens[at]?.value.startsWith('@') && tokens[at + 1]?.value === '=') at += 2;
      } else if (word === 'SELECT' && dialect === 'postgres') {
        const name = readRoutineName(tokens, at);
        if (!name || tokens[name.next]?.value !== '(') continue;
      } else if (word !== 'CALL') continue;
      const name = readRoutineName(tokens, at);
      if (name) out.push({ parts: name.parts, quoted: name.quoted });
    }
  }
  return out;
}

function readRoutineName(
  tokens: readonly SqlToken[],
  at: number,
): { parts: string[]; quoted: boolean; next: number } | undefined {
  const isName = (t: SqlToken | undefined) =>
    (t?.kind === 'word' && !t.value.startsWith('@')) || t?.kind === 'identifier';
  if (!isName(tokens[at])) return undefined;
  const parts = [tokens[at]!.value];
  let quoted = tokens[at]!.kind === 'identifier';
  let next = at + 1;
  while (tokens[next]?.value === '.' && isName(tokens[next + 1])) {
    parts.push(tokens[next + 1]!.value);
    quoted ||= tokens[next + 1]!.kind === 'identifier';
    next += 2;
  }
  return { parts, quoted, next };
}

async function routineExists(ctx: CheckContext, r: CalledRoutine): Promise<boolean> {
  const db = ctx.db;
  const name = r.parts[r.parts.length - 1]!;
  const schema = r.parts.length > 1 ? r.parts[r.parts.length - 2]! : null;
  switch (db.dialect.name) {
    case 'sqlite':
      return false;
    case 'postgres': {
      // Unquoted names fold to lower case on PostgreSQL.
      const fold = (s: string) => (r.quoted ? s : s.toLowerCase());
      const rows = schema
        ? await db.query(
            `SELECT 1 AS ok FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = ? AND n.nspname = ?`,
            [fold(name), fold(schema)],
          )
        : await db.query(
            `SELECT 1 AS ok FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace ` +
              `WHERE p.proname = ? AND n.nspname = ANY(current_schemas(true))`,
            [fold(name)],
          );
      return rows.length > 0;
    }
    case 'mysql': {
      const rows = await db.query(
        `SELECT 1 AS ok FROM information_schema.ROUTINES WHERE ROUTINE_NAME = ? AND ROUTINE_SCHEMA = COALESCE(?, DATABASE())`,
        [name, schema],
      );
      return rows.length > 0;
    }
    case 'mssql': {
      const full = r.parts.map((p) => `[${p.replace(/]/g, ']]')}]`).join('.');
      const rows = await db.query<{ id: unknown }>(`SELECT OBJECT_ID(?) AS id`, [full]);
      return rows[0]?.id !== null && rows[0]?.id !== undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Central: EstadoSyncGeneral and its target tables

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
  const missing = new Set<string>();
  const noSiteColumn = new Set<string>();
  const pairs = new Map<string, { header: string; detail: string; pipeline: string }>();
  for (const r of rows) {
    for (const table of [r.tabla_encabezado, r.tabla_detalle]) {
      if (!table) continue;
      const info = await ctx.table(table);
      // Tables are created at a site's first batch: only a site that synced needs them.
      if (!info && r.last_version !== null) missing.add(`${table} (id_efector=${Number(r.id_efector)})`);
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
  if (missing.size) {
    ctx.add({
      kind: 'missing-table',
      where: SITE_TABLE,
      problem: `target tables named in ${SITE_TABLE} are gone, although their sites already synced`,
      count: missing.size,
      keys: [...missing].slice(0, ctx.maxKeys),
      fix: `restore the tables, or correct tabla_encabezado/tabla_detalle and clear last_version to have the site re-send everything`,
    });
  }
  if (noSiteColumn.size) {
    ctx.add({
      kind: 'missing-column',
      where: SITE_TABLE,
      problem: `target tables lack the ${SITE_COLUMN} column the merge needs`,
      count: noSiteColumn.size,
      keys: [...noSiteColumn].slice(0, ctx.maxKeys),
      fix: `add ${SITE_COLUMN} (and make it part of the primary key), or name other tables in ${SITE_TABLE}`,
    });
  }
  for (const pair of pairs.values()) await checkCentralOrphans(ctx, pair);
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
  const found = new Map<string, { problem: string; fix: string; sites: string[] }>();
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
                problem: `${where} is ${l.sqlType}, narrower than the site's ${describeSite(c)}: the central widens it to ${fit.type} when it next merges a batch of this pipeline after a start`,
                fix: `nothing (or restart the central agent); to do it now: ${alter(fit.type)}`,
                sites: [site],
              }
            : {
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
  const found: string[] = [];
  for (const [table, ok] of accepted) {
    if (ok || !(await ctx.table(table))) continue;
    found.push(...(await inexactKeyColumns(ctx.db, table)).map(describeInexactColumn));
  }
  if (!found.length) return;
  ctx.add({
    kind: 'inexact-keys',
    where: SITE_TABLE,
    problem: `target table key columns compare keys inexactly: keys a site keeps apart ('abc', 'ABC') would be one row, so batches carrying them are refused`,
    count: found.length,
    keys: found.slice(0, ctx.maxKeys),
    fix:
      `give the columns a binary collation (${ctx.db.dialect.keyCollation ?? 'an exact one'}; MariaDB: ALTER TABLE ... MODIFY <column> ` +
      `<type> CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL), or accept it per site: ` +
      `UPDATE ${SITE_TABLE} SET ${INEXACT_KEYS_ACCEPTED_COLUMN} = 1 WHERE id_efector = <site> (what sites add --accept-case-insensitive-keys records)`,
  });
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

// ---------------------------------------------------------------------------------------------
// Interventions in transit

/** Transfer-log states that are waiting for the other side (see TransferState and the site agent). */
const OPEN_TRANSFER_STATES = {
  central: ['accepted', 'requested', 'awaiting-procedure', 'sent'],
  site: ['sent'],
} as const;

async function checkStuckInterventions(ctx: CheckContext, role: 'central' | 'site'): Promise<void> {
  const cutoff = ctx.timestamp(new Date(ctx.now.getTime() - ctx.stuckAfterSeconds * 1000));
  const keys: string[] = [];
  let count = 0;
  if (await ctx.table('intervention')) {
    const r = await ctx.sample(
      `FROM ${ctx.q('intervention')} WHERE ${ctx.q('state')} <> ? AND ${ctx.q('updated_at')} < ?`,
      ['active', cutoff],
      ['guid', 'state', 'transfer_id'],
    );
    count += r.count;
    keys.push(...r.keys);
  }
  if (await ctx.table('intervention_transfer')) {
    const states = OPEN_TRANSFER_STATES[role];
    const r = await ctx.sample(
      `FROM ${ctx.q('intervention_transfer')} WHERE ${ctx.q('state')} IN (${states.map(() => '?').join(', ')}) ` +
        `AND ${ctx.q('updated_at')} < ?`,
      [...states, cutoff],
      ['transfer_id', 'guid', 'state'],
    );
    count += r.count;
    keys.push(...r.keys);
  }
  if (!count) return;
  ctx.add({
    kind: 'stuck-interventions',
    where: role === 'central' ? 'intervention, intervention_transfer' : 'intervention, intervention_transfer (site)',
    problem: `${count} intervention(s) or transfer(s) have been in transit for over ${formatSeconds(ctx.stuckAfterSeconds)}`,
    count,
    keys: keys.slice(0, ctx.maxKeys),
    fix:
      'start the agents on both ends and let the transfers finish (`syncctl transfers --guid <guid>`), ' +
      'or cancel a transfer out with `syncctl transfer-cancel <transferId>`, before upgrading',
  });
}

function formatSeconds(s: number): string {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
