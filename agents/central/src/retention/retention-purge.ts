/**
 * Retention: the central's control tables lose their old, finished rows, a small batch per
 * statement (each commits alone, so no lock is held long), by one central at a time (its own row of
 * `sync_operation_lock`). What each rule keeps, and why the rest is safe to remove, is in
 * docs/operations.md, "Retention".
 */
import {
  INBOX_TABLE,
  LEDGER_TABLE,
  OperationLock,
  OperationLockedError,
  REJECTED_TABLE,
  SESSION_TABLE,
  SITE_TABLE,
  TOMBSTONE_FLOOR_COLUMN,
  type Database,
  type Queryable,
} from '@sitesync/db';

export const DEFAULT_INBOX_DAYS = 30;
export const DEFAULT_SESSION_DAYS = 90;
export const DEFAULT_REJECTED_DAYS = 90;
export const DEFAULT_TRANSFER_LOG_DAYS = 365;
export const DEFAULT_TOMBSTONE_DAYS = 365;
export const DEFAULT_RETENTION_INTERVAL_MINUTES = 60;
export const DEFAULT_RETENTION_BATCH_SIZE = 500;

/** The central's intervention transfer log (see interventions/transfers.ts). */
const TRANSFER_TABLE = 'intervention_transfer';
/** Transfer states nothing moves on from; the others are still in progress. */
export const FINISHED_TRANSFER_STATES = ['completed', 'rejected', 'conflict', 'refused', 'cancelled'] as const;
/** The lock row of the purge in `sync_operation_lock`: apart from syncctl's, so neither blocks the other. */
export const RETENTION_LOCK = 'retention-purge';
/** Batches per table and run at most: a backlog is worked off over several runs, not in one long one. */
const MAX_BATCHES_PER_RUN = 1000;
const DAY_MS = 86_400_000;

/** Rows one batch selected, and how many of them it deleted (fewer when one changed in between). */
interface Batch {
  found: number;
  deleted: number;
}

/** Days each table keeps (0 = forever), and rows per DELETE. */
export interface RetentionOptions {
  inboxDays: number;
  sessionDays: number;
  rejectedDays: number;
  transferLogDays: number;
  tombstoneDays: number;
  batchSize: number;
}

/** Rows removed by one run, per table (the transfer log as `transfers`, ledger tombstones as `tombstones`). */
export interface RetentionResult {
  inbox: number;
  sessions: number;
  rejected: number;
  transfers: number;
  tombstones: number;
}

/** The purge, run by the central on a timer; `run` returns undefined when another central holds the lock. */
export class RetentionPurge {
  constructor(
    private readonly db: Database,
    private readonly opts: RetentionOptions,
    /** Asked between batches: a closing central stops at the next one. */
    private readonly isStopping: () => boolean = () => false,
  ) {}

  async run(now = new Date()): Promise<RetentionResult | undefined> {
    let lock: OperationLock;
    try {
      lock = await OperationLock.acquire(this.db, 'retention', { name: RETENTION_LOCK });
    } catch (err) {
      if (err instanceof OperationLockedError) return undefined;
      throw err;
    }
    try {
      const o = this.opts;
      // Tombstones and the transfer log first: neither depends on the session rows removed below.
      return {
        tombstones: await this.purge(o.tombstoneDays, now, (cutoff) => this.tombstones(cutoff)),
        transfers: await this.purge(o.transferLogDays, now, (cutoff) => this.transfers(cutoff)),
        inbox: await this.purge(o.inboxDays, now, (cutoff) => this.bySession(INBOX_TABLE, 'processed_at', cutoff)),
        rejected: await this.purge(o.rejectedDays, now, (cutoff) =>
          this.bySession(REJECTED_TABLE, 'rejected_at', cutoff),
        ),
        sessions: await this.purge(o.sessionDays, now, (cutoff) => this.sessions(cutoff)),
      };
    } finally {
      await lock.release();
    }
  }

  /** Runs `batch` until it finds less than a full batch; 0 days = keep forever. */
  private async purge(keepDays: number, now: Date, batch: (cutoff: unknown) => Promise<Batch>): Promise<number> {
    if (keepDays === 0) return 0;
    const cutoff = this.db.dialect.time(new Date(now.getTime() - keepDays * DAY_MS));
    let total = 0;
    for (let i = 0; i < MAX_BATCHES_PER_RUN && !this.isStopping(); i++) {
      const { found, deleted } = await batch(cutoff);
      total += deleted;
      if (found < this.opts.batchSize) break;
    }
    return total;
  }

  /** The sessions whose rows must stay: still open, or the last one of a site's row. */
  private liveSessions(): string {
    const d = this.db.dialect;
    return (
      `SELECT session_id FROM ${SESSION_TABLE} WHERE status = 'open' UNION ` +
      `SELECT last_session_id FROM ${d.quote(SITE_TABLE)} WHERE last_session_id IS NOT NULL`
    );
  }

  /**
   * Inbox and rejected marks: old rows, except those of a live session (its accounting reads them
   * until it closes; a redelivery of a batch of a site's last session must stay a duplicate, or it
   * would add its counts to `EstadoSyncGeneral` again).
   */
  private bySession(table: string, timeColumn: string, cutoff: unknown): Promise<Batch> {
    return this.oldRows({
      table,
      key: 'message_id',
      old: `${timeColumn} < ?`,
      oldParams: [cutoff],
      unless: `session_id IS NOT NULL AND session_id IN (${this.liveSessions()})`,
    });
  }

  /**
   * Closed sessions, except a site's last one (its `EstadoSyncGeneral` row names it) and each
   * site's newest complete one (status and metrics measure the site's lag from it).
   */
  private async sessions(cutoff: unknown): Promise<Batch> {
    const newestComplete =
      `SELECT s.session_id FROM ${SESSION_TABLE} s JOIN (SELECT id_efector, MAX(site_started_at) AS m FROM ${SESSION_TABLE} ` +
      `WHERE status = 'complete' GROUP BY id_efector) n ON s.id_efector = n.id_efector AND s.site_started_at = n.m ` +
      `WHERE s.status = 'complete'`;
    const keep = (await this.db.query<{ session_id: string }>(newestComplete)).map((r) => r.session_id);
    return this.oldRows({
      table: SESSION_TABLE,
      key: 'session_id',
      old: `created_at < ? AND status <> 'open'`,
      oldParams: [cutoff],
      unless:
        `session_id IN (${this.liveSessions()})` +
        (keep.length ? ` OR session_id IN (${keep.map(() => '?').join(', ')})` : ''),
      unlessParams: keep,
    });
  }

  /**
   * Finished transfers, except each intervention's newest completed one: a transfer up is refused
   * by it when the intervention was moved on to another site since.
   */
  private transfers(cutoff: unknown): Promise<Batch> {
    const states = FINISHED_TRANSFER_STATES.map(() => '?').join(', ');
    return this.oldRows({
      table: `${TRANSFER_TABLE} t`,
      key: 'transfer_id',
      old: `updated_at < ? AND state IN (${states})`,
      oldParams: [cutoff, ...FINISHED_TRANSFER_STATES],
      unless:
        `state = 'completed' AND NOT EXISTS (SELECT 1 FROM ${TRANSFER_TABLE} n WHERE n.guid = t.guid AND n.state = 'completed' ` +
        `AND (n.updated_at > t.updated_at OR (n.updated_at = t.updated_at AND n.transfer_id > t.transfer_id)))`,
    });
  }

  /**
   * A batch of the rows of `table` (with an alias, if `unless` needs one) that are `old` and not
   * `unless`, deleted by key; the DELETE checks `old` again (a row may have moved on since).
   */
  private async oldRows(rule: {
    table: string;
    key: string;
    old: string;
    oldParams: readonly unknown[];
    unless: string;
    unlessParams?: readonly unknown[];
  }): Promise<Batch> {
    const ids = await this.db.query<Record<string, string>>(
      this.db.dialect.selectLimit(
        `${rule.key} FROM ${rule.table} WHERE ${rule.old} AND NOT (${rule.unless})`,
        this.opts.batchSize,
      ),
      [...rule.oldParams, ...(rule.unlessParams ?? [])],
    );
    return this.deleteKeys(
      rule.table.split(' ')[0]!,
      rule.key,
      ids.map((r) => r[rule.key]!),
      rule.old,
      rule.oldParams,
    );
  }

  /** Old tombstones; the DELETE checks again that the row is still one (a merge may have revived it). */
  private async tombstones(cutoff: unknown): Promise<Batch> {
    const d = this.db.dialect;
    const rows = await this.db.query<{ id_efector: unknown; pipeline: string; header_key: string }>(
      d.selectLimit(
        `id_efector, pipeline, header_key FROM ${LEDGER_TABLE} WHERE deleted = ${d.boolLiteral(true)} AND updated_at < ?`,
        this.opts.batchSize,
      ),
      [cutoff],
    );
    const groups = new Map<string, { site: number; pipeline: string; keys: string[] }>();
    for (const r of rows) {
      const site = Number(r.id_efector);
      const id = JSON.stringify([site, r.pipeline]);
      const g = groups.get(id) ?? { site, pipeline: r.pipeline, keys: [] };
      g.keys.push(r.header_key);
      groups.set(id, g);
    }
    const stillTombstone = `id_efector = ? AND pipeline = ? AND deleted = ${d.boolLiteral(true)} AND updated_at < ?`;
    let n = 0;
    for (const g of groups.values()) {
      const params = [g.site, g.pipeline, cutoff];
      // The floor rises in the transaction that deletes: no moment where a tombstone is gone and
      // an older batch would still be merged.
      n += await this.db.transaction(async (tx) => {
        const newest = await this.inChunks(tx, g.keys, params.length, async (part) => {
          const [r] = await tx.query<{ v: number | string | null }>(
            `SELECT MAX(version) AS v FROM ${LEDGER_TABLE} WHERE ${stillTombstone} AND header_key IN (${marks(part)})`,
            [...params, ...part],
          );
          return r?.v === null || r?.v === undefined ? 0 : Number(r.v);
        });
        const floor = Math.max(0, ...newest);
        if (floor > 0) {
          await tx.execute(
            `UPDATE ${d.quote(SITE_TABLE)} SET ${TOMBSTONE_FLOOR_COLUMN} = ? ` +
              `WHERE id_efector = ? AND pipeline = ? AND (${TOMBSTONE_FLOOR_COLUMN} IS NULL OR ${TOMBSTONE_FLOOR_COLUMN} < ?)`,
            [floor, g.site, g.pipeline, floor],
          );
        }
        return (await this.deleteKeys(LEDGER_TABLE, 'header_key', g.keys, stillTombstone, params, tx)).deleted;
      });
    }
    return { found: rows.length, deleted: n };
  }

  /** `each` over `keys` in chunks that fit one statement beside `otherParams` parameters. */
  private async inChunks<T>(
    q: Queryable,
    keys: readonly string[],
    otherParams: number,
    each: (part: readonly string[]) => Promise<T>,
  ): Promise<T[]> {
    const chunk = q.dialect.chunkSize(1, otherParams + 10, this.opts.batchSize);
    const out: T[] = [];
    for (let i = 0; i < keys.length; i += chunk) out.push(await each(keys.slice(i, i + chunk)));
    return out;
  }

  /** Deletes the rows of `keys` that still match `recheck` (the state may have moved since they were read). */
  private async deleteKeys(
    table: string,
    keyColumn: string,
    keys: readonly string[],
    recheck: string,
    params: readonly unknown[],
    q: Queryable = this.db,
  ): Promise<Batch> {
    const counts = await this.inChunks(q, keys, params.length, (part) =>
      q.execute(`DELETE FROM ${q.dialect.quote(table)} WHERE ${recheck} AND ${keyColumn} IN (${marks(part)})`, [
        ...params,
        ...part,
      ]),
    );
    return { found: keys.length, deleted: counts.reduce((a, b) => a + b, 0) };
  }
}

function marks(values: readonly unknown[]): string {
  return values.map(() => '?').join(', ');
}
