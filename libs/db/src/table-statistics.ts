import type { Database } from './database';

/** Rows a table must gain before its statistics are first refreshed by us. */
const MIN_GROWTH = 10_000;

interface Tracked {
  /** The columns whose statistics the merges' statements depend on. */
  columns: string[];
  /** Rows the table held at its last refresh (or when first seen), as the server estimates them. */
  base: number;
  /** Rows written since then (inserted or updated: an upper bound of the growth). */
  written: number;
  refreshing: boolean;
  /** This user may not refresh the table (reported once). */
  notOwned?: boolean;
}

/**
 * Keeps the planner's statistics of a table current while the agents fill it fast, on the dialects
 * that need it (see `Dialect.refreshStatistics`): the central's target tables as merges fill them,
 * the site's row state after large sessions. Without it, a table created by a first load is planned
 * as if it were empty until autovacuum's next look (never, where autovacuum is off): "delete the
 * lines these headers lost" then scans every line of the site instead of the named headers' ones,
 * and each batch of the load costs more than the one before; the site's "rows not acknowledged yet"
 * reads every row of the pipeline instead of its partial index. A table is refreshed once the rows written since its last
 * refresh reach its size then (at least {@link MIN_GROWTH}): a handful of times while it grows
 * from nothing, then rarely. The refresh runs beside the merges, never inside their transactions.
 * Only the columns the merges filter on are analyzed (the site column, keys and join columns): a
 * sixth of the time of the whole table at 80k detail rows (14 against 85-100 ms), which over a
 * first load was a fifth of the server's time. The others are left to autovacuum, as before.
 */
export class TableStatistics {
  private readonly tables = new Map<string, Tracked>();
  /** Refreshes running now (each settles, never rejects). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly db: Database,
    private readonly onError: (table: string, err: unknown) => void = () => undefined,
  ) {}

  /** Counts rows a committed merge wrote to `table`, whose statements filter on `columns`. */
  wrote(table: string, rows: number, columns: readonly string[]): void {
    if (rows <= 0 || this.db.dialect.refreshStatistics(table, columns) === undefined) return;
    let t = this.tables.get(table);
    if (!t) this.tables.set(table, (t = { columns: [...columns], base: 0, written: 0, refreshing: false }));
    // Sites with other keys may share a table, and a shape may change: every column counts.
    else for (const c of columns) if (!t.columns.includes(c)) t.columns.push(c);
    t.written += rows;
    if (t.refreshing || t.notOwned || t.written < Math.max(MIN_GROWTH, t.base)) return;
    t.refreshing = true;
    const run = this.refresh(table, t).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /**
   * Resolves once the refreshes running now have ended: an agent closing its database waits for
   * them (a site run once by cron closes right after its session, which would cut the refresh of
   * its first load short, with a warning, every time).
   */
  async settled(): Promise<void> {
    await Promise.all([...this.running]);
  }

  private async refresh(table: string, t: Tracked): Promise<void> {
    const stmts = this.db.dialect.refreshStatistics(table, t.columns)!;
    const state = async () =>
      (await this.db.query<{ n: unknown; owned: unknown }>(stmts.state.sql, stmts.state.params))[0];
    try {
      // The server skips a table this user does not own with a warning, not an error: say so once.
      const before = await state();
      if (before && !before.owned) {
        t.notOwned = true;
        throw new Error(`the database user does not own ${table}, so it cannot refresh its statistics`);
      }
      await this.db.query(stmts.refresh);
      t.base = Math.max(0, Number((await state())?.n ?? 0));
    } catch (err) {
      try {
        this.onError(table, err);
      } catch {
        // a failing reporter must not become an unhandled rejection
      }
    } finally {
      // After a failure too: the next try waits for as many rows again, not for the next batch.
      t.written = 0;
      t.refreshing = false;
    }
  }
}
