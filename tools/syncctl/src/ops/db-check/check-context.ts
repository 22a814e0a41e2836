import type { Database, TableInfo } from '@sitesync/db';
import type { AddedForeignKey } from '../upgrade-scripts';

/**
 * Pre-checks (`syncctl db check`, and the first step of `syncctl db upgrade`): every inconsistency
 * in a site or central database that would break an upgrade or a sync, each with the offending keys
 * and what to do about it. Read-only: nothing here writes. This module holds what the checks share:
 * the findings, the options and the context they run in; site-checks.ts and central-checks.ts the
 * checks of each role, shared-checks.ts those both run.
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
  /** Where it was found: its table, or `hook <name>` for a hook's. */
  where: string;
  /** The table it is about; null only for a hook's finding, which is about no table. */
  table: string | null;
  /** The columns of `table` it is about (the missing ones, the key, the join, ...); empty for a missing table. */
  columns: string[];
  /** What is wrong, in a sentence. */
  problem: string;
  /** How many offending rows, keys or names in all. */
  count: number;
  /** The first offending keys or names (at most `maxKeys`), e.g. `order_id=7`. */
  keys: string[];
  /** What the operator can do about it. */
  fix: string;
  /** Checks that could not run because of this finding (their table or columns are missing). */
  notRun?: string[];
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

/** The database, the options and the findings so far, with the catalogue lookups cached. */
export class CheckContext {
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

/** Whether the table has the column, spelt exactly. */
export function hasColumn(info: TableInfo, column: string): boolean {
  return info.columns.some((c) => c.name === column);
}

export interface OrphanCheck {
  detail: string;
  header: string;
  /** Detail columns that hold the header key, in the order of `headerColumns`. */
  detailColumns: readonly string[];
  headerColumns: readonly string[];
  /** Detail columns shown for each orphan. */
  shown: readonly string[];
  pipeline: string;
}

/** Detail rows without their header (a site's pipeline, or a central target table pair). */
export async function checkOrphans(ctx: CheckContext, o: OrphanCheck): Promise<void> {
  const join = o.detailColumns.map((c, i) => `h.${ctx.q(o.headerColumns[i]!)} = x.${ctx.q(c)}`).join(' AND ');
  const fromWhere = `FROM ${ctx.q(o.detail)} x WHERE NOT EXISTS (SELECT 1 FROM ${ctx.q(o.header)} h WHERE ${join})`;
  const orphans = await ctx.sample(fromWhere, [], o.shown, 'x');
  if (!orphans.count) return;
  ctx.add({
    kind: 'orphan-details',
    where: o.detail,
    table: o.detail,
    columns: [...o.detailColumns],
    problem: `${orphans.count} detail row(s) of pipeline ${o.pipeline} have no header in ${o.header}`,
    count: orphans.count,
    keys: orphans.keys,
    fix: `restore the missing headers in ${o.header}, or delete the orphan rows from ${o.detail}`,
  });
}

export function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}
