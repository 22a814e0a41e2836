import { ConfigError, type HashingFile } from '@sitesync/protocol';
import { resolvePipeline, splitSqlScript, type Database, type SqlToken, type TableInfo } from '@sitesync/db';
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
  for (const cfg of site.pipelines) await checkPipeline(ctx, cfg);
  await checkForeignKeys(ctx);
  await checkHooks(ctx, site.hooks);
  await checkStuckInterventions(ctx, 'site');
  return ctx.findings;
}

// ---------------------------------------------------------------------------------------------
// Pipelines

/** One data check of a pipeline and the columns it reads, per table. */
interface DataCheck {
  /** What it checks, as the finding that stops it says: `NULL and duplicate keys of lab_orders`. */
  name: string;
  /** Table -> the columns the check reads there. */
  reads: ReadonlyArray<{ table: string; columns: readonly string[] | undefined }>;
  run(): Promise<void>;
}

/**
 * A pipeline's tables and columns, then its data: every table and column the hashing file names
 * that the database lacks (all of them, one finding per table), then every data check whose tables
 * and columns exist. A check that cannot run is named on the finding that stops it (`notRun`):
 * a missing attribute column does not hide orphans or duplicate keys.
 */
async function checkPipeline(ctx: CheckContext, cfg: HashingFile): Promise<void> {
  const pipeline = `pipeline ${cfg.name}`;
  const base = await ctx.table(cfg.baseEntity);
  const link = cfg.linkEntities.find((l) => typeof l !== 'string');
  const detail = link ? await ctx.table(link.entity) : undefined;
  const infos = new Map<string, TableInfo | undefined>([[cfg.baseEntity, base]]);
  if (link) infos.set(link.entity, detail);

  // Per table, the missing columns the data checks read (key, join) and the other ones (attributes).
  const missing = new Map<string, { read: string[]; other: string[] }>();
  const need = (table: string, column: string, read: boolean) => {
    const info = infos.get(table);
    if (!info || hasColumn(info, column)) return;
    const m = missing.get(table) ?? { read: [], other: [] };
    const list = read ? m.read : m.other;
    if (!list.includes(column)) list.push(column);
    missing.set(table, m);
  };
  for (const k of cfg.key ?? []) need(cfg.baseEntity, k, true);
  if (link) {
    for (const [detailColumn, headerColumn] of Object.entries(link.join)) {
      need(link.entity, detailColumn, true);
      need(cfg.baseEntity, headerColumn, true);
    }
    for (const k of link.key ?? []) need(link.entity, k, true);
  }
  // An unqualified attribute may be in either table: missing from both, it is named on the header's.
  let unqualified = false;
  for (const a of cfg.attributes ?? []) {
    const dot = a.lastIndexOf('.');
    const table = dot > 0 ? a.slice(0, dot) : undefined;
    const column = dot > 0 ? a.slice(dot + 1) : a;
    if (table !== undefined && infos.has(table)) need(table, column, false);
    else if (table === undefined && base && (!link || detail)) {
      if (!hasColumn(base, column) && !(detail && hasColumn(detail, column))) {
        need(cfg.baseEntity, column, false);
        unqualified ||= detail !== undefined;
      }
    }
  }

  // The findings that stop a data check, by table.
  const stoppers = new Map<string, Finding>();
  for (const [table, info] of infos) {
    if (info) continue;
    const f: Finding = {
      kind: 'missing-table',
      where: table,
      table,
      columns: [],
      problem: `${pipeline} names table ${table}, which does not exist`,
      count: 1,
      keys: [table],
      fix: 'create the table (or run the legacy job that fills it), or correct baseEntity/linkEntities',
    };
    ctx.add(f);
    stoppers.set(table, f);
  }
  for (const [table, { read, other }] of missing) {
    const columns = [...read, ...other];
    const alsoDetail = unqualified && table === cfg.baseEntity && link ? ` (nor in ${link.entity})` : '';
    const f: Finding = {
      kind: 'missing-column',
      where: table,
      table,
      columns,
      problem: `${pipeline} names columns of ${table} that do not exist: ${columns.join(', ')}${alsoDetail}`,
      count: columns.length,
      keys: columns.map((c) => `${table}.${c}`).slice(0, ctx.maxKeys),
      fix: 'add the columns, or remove them from key/join/attributes in the hashing file',
    };
    ctx.add(f);
    // Attributes are not read by the data checks: only a missing key or join column stops one.
    if (read.length) stoppers.set(table, f);
  }

  const checks: DataCheck[] = [];
  const headerKey = cfg.key ?? (base?.primaryKey.length ? base.primaryKey : undefined);
  checks.push({
    name: `NULL and duplicate keys of ${cfg.baseEntity}`,
    reads: [{ table: cfg.baseEntity, columns: headerKey }],
    run: () => checkKeys(ctx, cfg.baseEntity, headerKey!, `${pipeline} header`),
  });
  if (link) {
    const detailKey = link.key ?? (detail?.primaryKey.length ? detail.primaryKey : undefined);
    const detailColumns = Object.keys(link.join);
    const headerColumns = Object.values(link.join);
    checks.push(
      {
        name: `NULL and duplicate keys of ${link.entity}`,
        reads: [{ table: link.entity, columns: detailKey }],
        run: () => checkKeys(ctx, link.entity, detailKey!, `${pipeline} detail`),
      },
      {
        name: `details of ${link.entity} without their header in ${cfg.baseEntity}`,
        reads: [
          { table: link.entity, columns: detailColumns },
          { table: cfg.baseEntity, columns: headerColumns },
        ],
        run: () =>
          checkOrphans(ctx, {
            detail: link.entity,
            header: cfg.baseEntity,
            detailColumns,
            headerColumns,
            shown: unique([...(detailKey ?? []), ...detailColumns]),
            pipeline: cfg.name,
          }),
      },
    );
  }
  for (const check of checks) {
    const stopped = check.reads.map((r) => stoppers.get(r.table)).find((f) => f !== undefined);
    if (stopped) {
      stopped.notRun = [...(stopped.notRun ?? []), check.name];
      continue;
    }
    const keyless = check.reads.find((r) => r.columns === undefined);
    if (keyless) {
      ctx.add({
        kind: 'invalid-pipeline',
        where: keyless.table,
        table: keyless.table,
        columns: [],
        problem: `${pipeline}: table ${keyless.table} has no primary key and the hashing file names no key for it`,
        count: 1,
        keys: [],
        fix: `set "key" (for a detail table: "key" of its linkEntities entry) in the hashing file, or add a primary key`,
        notRun: [check.name],
      });
      continue;
    }
    await check.run();
  }
  if (!stoppers.size && !missing.size) await checkResolves(ctx, cfg);
}

/** What `resolvePipeline` refuses besides missing tables and columns (a hash field hashed, a join that is not the key, ...). */
async function checkResolves(ctx: CheckContext, cfg: HashingFile): Promise<void> {
  try {
    await resolvePipeline(ctx.db, cfg, `pipeline ${cfg.name}`);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // Already reported above, with the check that needs it.
    if (/has no primary key/.test(err.message)) return;
    ctx.add({
      kind: 'invalid-pipeline',
      where: cfg.baseEntity,
      table: cfg.baseEntity,
      columns: [],
      problem: err.message,
      count: 1,
      keys: [],
      fix: 'correct the hashing file (see docs/architecture.md for its keys)',
    });
  }
}

async function checkKeys(ctx: CheckContext, table: string, key: readonly string[], role: string): Promise<void> {
  const t = ctx.q(table);
  const cols = key.map((c) => ctx.q(c));
  const nulls = await ctx.sample(`FROM ${t} WHERE ${cols.map((c) => `${c} IS NULL`).join(' OR ')}`, [], key);
  if (nulls.count) {
    ctx.add({
      kind: 'null-keys',
      where: table,
      table,
      columns: [...key],
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
      table,
      columns: [...key],
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
      table: null,
      columns: [],
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
