import { ConfigError, type HashingFile } from '@sitesync/protocol';
import {
  resolvePipeline,
  splitSqlScript,
  type Database,
  type ResolvedPipeline,
  type SqlToken,
  type TableInfo,
} from '@sitesync/db';
import { CheckContext, checkOrphans, hasColumn, unique, type CheckOptions, type Finding } from './check-context';
import { checkForeignKeys, checkStuckInterventions } from './shared-checks';

/** A site database's pre-checks: its pipelines' tables, columns and data, and the routines its hooks call. */

/** What a site check needs from the peripheral config. */
export interface SiteCheckInput {
  pipelines: readonly HashingFile[];
  hooks: Readonly<Partial<Record<'before' | 'legacy' | 'after', string>>>;
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

// ---------------------------------------------------------------------------------------------
// Pipelines

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

// ---------------------------------------------------------------------------------------------
// Hooks

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
